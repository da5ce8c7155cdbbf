"""The product as a person meets it: `python -m localslack.launch` (what `make run` runs) in a child process,
the local workspace's page in a real browser (Debian's headless Chromium driven by Playwright).

The launcher starts the workspace, then the real bot against it with the embedded backend; the tests only
click, type and drop files on the page, and read what it shows. Screenshots go to
`test-artifacts/screenshots/`. Without Chromium these tests skip, unless TUNEHOUSE_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import MODEL_CACHE

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 240


class Product:
    """`python -m localslack.launch` on a free port with its own data dir, as `make run` starts it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process: subprocess.Popen | None = None
        self.output: list[str] = []
        self.url = ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.upper().startswith(("SLACK_", "OPENAI_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"))}
        env.update(TUNEHOUSE_MODEL_CACHE_DIR=str(MODEL_CACHE), PYTHONUNBUFFERED="1")
        env.pop("TUNEHOUSE_DATA_DIR", None)
        return env

    def start(self) -> Product:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.output = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localslack.launch", "--port", "0", "--data-dir", str(self.data_dir / "data"),
             "--manifest", str(ROOT / "manifest.yml"), "--no-open"],
            cwd=self.data_dir, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            found = next((re.match(r"Open (http://\S+)", line) for line in self.output if line.startswith("Open ")), None)
            if found:
                self.url = found.group(1)
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"the launcher exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError(f"the launcher did not print `Open http://…` within {READY_TIMEOUT_S} s:\n{self.log()}")

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.output[-60:])

    def stop(self) -> int:
        """Ctrl+C, as a person stops `make run`."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def local(self, method: str, path: str, **kwargs) -> dict:
        with httpx.Client(trust_env=False, timeout=30) as client:
            response = client.request(method, f"{self.url}/_local/{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    def web_api(self, method: str, **arguments) -> dict:
        """A Web API call with the bot's token, as the bot makes it."""
        token = json.loads((self.data_dir / "data" / "workspace" / "state.json").read_text())["credentials"]["bot_token"]
        with httpx.Client(trust_env=False, timeout=30) as client:
            return client.post(f"{self.url}/api/{method}", json=arguments,
                               headers={"authorization": f"Bearer {token}"}).json()

    def channel_id(self, name: str) -> str:
        return next(c["id"] for c in self.local("GET", "workspace")["channels"] if c.get("name") == name)


@pytest.fixture(scope="module")
def product(tmp_path_factory, default_model_dir) -> Iterator[Product]:
    running = Product(tmp_path_factory.mktemp("make-run")).start()
    yield running
    running.stop()


@pytest.fixture
def page(browser, product):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(product.url)
    page.locator("#messages .intro").wait_for()
    page.evaluate("window.__loadedOnce = true")  # gone if the page ever reloads
    yield page
    assert page.evaluate("window.__loadedOnce === true"), "the page reloaded"
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
