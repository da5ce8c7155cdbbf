"""The real bot, as a process, against the local Slack over real HTTP and WebSocket.

`local_slack` is localslack's server in this process (the tests act as its people and read what they
see); `bot` is `python -m bot` in a child process, reaching it only through SLACK_API_URL and Socket Mode,
with the embedded backend it starts itself, exactly as a user runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..conftest import MODEL_CACHE

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120


@dataclass
class BotProcess:
    """`python -m bot` with the local Slack's tokens, in its own data dir; killable and restartable."""

    slack: object
    data_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "bot.log"

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.upper().startswith(("OPENAI_", "SLACK_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"))
        }
        env.update(
            SLACK_BOT_TOKEN=self.slack.bot_token,
            SLACK_APP_TOKEN=self.slack.app_token,
            SLACK_API_URL=self.slack.api_url,
            TUNEHOUSE_DATA_DIR=str(self.data_dir),
            TUNEHOUSE_MODEL_CACHE_DIR=str(MODEL_CACHE),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> BotProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", *self.args], cwd=self.data_dir, env=self.env(),
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bot exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if " ready" in self.log()[offset:]:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the bot did not say ready within {READY_TIMEOUT_S} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, as a crash; the embedded backend it started goes with its process group."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def add_tiny_model(data_dir: Path, model_dir: Path) -> None:
    """Register the 2-layer test model (real tokenizer, random weights) as `tiny` in the embedded backend the
    bot will start in `data_dir`: jobs on it train in milliseconds a step, through the same code."""
    subprocess.run(
        [sys.executable, "-m", "tunehouse", "models", "add", "tiny", str(model_dir), "--data-dir", str(data_dir / "backend")],
        check=True, capture_output=True, env={**os.environ, "TUNEHOUSE_MODEL_CACHE_DIR": str(MODEL_CACHE)},
    )


@pytest.fixture(scope="module")
def local_slack(tmp_path_factory) -> Iterator:
    from localslack import LocalSlack

    slack = LocalSlack(manifest=ROOT / "manifest.yml")
    slack.start()
    yield slack
    slack.stop()


@pytest.fixture(scope="module")
def bot(local_slack, tmp_path_factory) -> Iterator[BotProcess]:
    process = BotProcess(local_slack, tmp_path_factory.mktemp("bot-data")).start()
    yield process
    process.stop()
