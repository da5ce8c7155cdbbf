"""The fine-tuning backend, as the `openai` SDK sees it: OpenAI (or Azure, or any compatible server), or the
embedded tunehouse server that the bot starts itself when no OpenAI settings are given.

The bot talks to either only through the SDK, so the two are interchangeable.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import openai
from openai import OpenAI

from tunehouse.processes import die_with_parent

from .settings import BotSettings

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
OPENAI = "openai"
EMBEDDED_START_TIMEOUT_S = 180


@dataclass
class Backend:
    client: OpenAI
    kind: str
    """`embedded` (our own server, CPU training, estimated time) or `openai` (anything else: estimated cost)."""
    base_url: str
    process: subprocess.Popen | None = field(default=None, repr=False)
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def stop(self) -> None:
        self.stopping.set()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def refusal_text(error: openai.APIStatusError) -> str:
    """The backend's own words for a refusal (the SDK's message starts with `Error code: 400 - `)."""
    body = error.body if isinstance(error.body, dict) else {}
    return str(body.get("message") or error.message)


def connect_backend(settings: BotSettings) -> Backend:
    if not settings.uses_embedded_backend:
        client = OpenAI(
            api_key=settings.secret("openai_api_key") or "unused", base_url=settings.openai_base_url, max_retries=3
        )
        log.info("backend: OpenAI-compatible API at %s", client.base_url)
        return Backend(client=client, kind=OPENAI, base_url=str(client.base_url))
    return start_embedded_backend(settings.data_dir / "backend", warm_model=settings.base_model)


def start_embedded_backend(data_dir: Path, warm_model: str | None = None) -> Backend:
    """`tunehouse serve` on a free loopback port, in its own process (its training runs in child processes),
    started again on the same port whenever it dies: jobs resume from the backend's own data."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    backend = Backend(
        client=OpenAI(api_key="sk-local", base_url=base_url, max_retries=3), kind=EMBEDDED, base_url=base_url,
        process=_serve(data_dir, port),
    )
    atexit.register(backend.stop)
    try:
        _wait_until_healthy(backend.process, port, data_dir)
    except RuntimeError:
        backend.stop()
        raise
    log.info("backend: embedded tunehouse at %s (data in %s)", backend.base_url, data_dir)
    if warm_model:
        threading.Thread(target=_warm_up, args=(backend.client, warm_model), name="backend-warm-up", daemon=True).start()
    threading.Thread(target=_keep_serving, args=(backend, port, data_dir), name="backend-watch", daemon=True).start()
    return backend


def _serve(data_dir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tunehouse", "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=open(data_dir / "server.log", "ab"),
        env={**os.environ, "TUNEHOUSE_DATA_DIR": str(data_dir)},
        preexec_fn=partial(die_with_parent, signal.SIGTERM),  # the backend ends with the bot, SIGKILL too
    )


def _wait_until_healthy(process: subprocess.Popen, port: int, data_dir: Path) -> None:
    deadline = time.monotonic() + EMBEDDED_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the embedded backend exited with {process.returncode}; see {data_dir / 'server.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"the embedded backend did not answer within {EMBEDDED_START_TIMEOUT_S} s; see {data_dir / 'server.log'}")


def _keep_serving(backend: Backend, port: int, data_dir: Path) -> None:
    """While the bot runs, a backend that exits (killed for memory, crashed) is started again, waiting
    longer after each start that does not come up. Meanwhile jobs are polled with back-off and questions
    are told that the backend cannot be reached."""
    pause = 1.0
    while True:
        code = backend.process.wait()
        if backend.stopping.wait(pause):
            return
        log.error("the embedded backend exited with %s; starting it again (its log: %s)", code, data_dir / "server.log")
        backend.process = _serve(data_dir, port)
        try:
            _wait_until_healthy(backend.process, port, data_dir)
        except RuntimeError as failure:
            log.error("%s", failure)
            backend.process.kill()
            pause = min(pause * 2, 60.0)
            continue
        log.info("backend: embedded tunehouse at %s again", backend.base_url)
        pause = 1.0


def _warm_up(client: OpenAI, model: str) -> None:
    """The embedded backend loads its model on the first request (seconds on a busy CPU): ask a one-token
    question now, so the first person to mention the bot does not wait for the load."""
    try:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
        )
    except Exception as error:  # a failed warm-up only means the first answer is slower
        log.warning("warming up the embedded backend: %s", error)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
