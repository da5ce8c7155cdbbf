"""`make run`: the bot against Slack when it has Slack's tokens, otherwise the whole product on this machine.

- `SLACK_BOT_TOKEN` and `SLACK_APP_TOKEN` set (in the environment or `.env`): the bot runs against the real
  Slack (`python -m bot`, in this process's place).
- Neither set: the local workspace starts on http://127.0.0.1:8000 (its state in `<data dir>/workspace`,
  so a restart shows the history), the bot starts against it exactly as against Slack (`SLACK_API_URL`,
  Socket Mode, the workspace's own tokens) with its embedded backend, and once the bot says it is ready
  this prints `Open http://127.0.0.1:8000`. Ctrl+C (or SIGTERM) stops the bot, then the workspace.

The bot knows nothing of this module; this module only starts processes.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import webbrowser
from functools import partial
from pathlib import Path

from tunehouse.processes import die_with_parent

READY_TIMEOUT_S = 300
STOP_TIMEOUT_S = 20
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def slack_tokens(env_file: Path) -> dict[str, str]:
    """SLACK_BOT_TOKEN / SLACK_APP_TOKEN as the bot will read them (the environment, else `.env`)."""
    from bot.settings import BotSettings

    settings = BotSettings(_env_file=env_file)
    found = {"SLACK_BOT_TOKEN": settings.secret("slack_bot_token"), "SLACK_APP_TOKEN": settings.secret("slack_app_token")}
    return {name: value for name, value in found.items() if value}


def find_manifest(given: str | None) -> Path | None:
    if given:
        return Path(given)
    for candidate in (Path.cwd() / "manifest.yml", Path(__file__).resolve().parents[1] / "manifest.yml"):
        if candidate.is_file():
            return candidate
    return None


def bot_environment(slack, data_dir: Path) -> dict[str, str]:
    """The bot's environment: the workspace's tokens and URL, no proxy between it and loopback."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update(
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_APP_TOKEN=slack.app_token,
        SLACK_API_URL=slack.api_url,
        TUNEHOUSE_DATA_DIR=str(data_dir),
        NO_PROXY=",".join(filter(None, ["127.0.0.1", "localhost", os.environ.get("NO_PROXY")])),
        PYTHONUNBUFFERED="1",
    )
    return env


class Bot:
    """`python -m bot` in its own session (Ctrl+C reaches it only through `stop()`), its output echoed."""

    def __init__(self, env: dict[str, str], log_path: Path, quiet: bool) -> None:
        self.ready = threading.Event()
        self.log_path = log_path
        self.tail: list[str] = []
        self.quiet = quiet
        self.dashboard: str | None = None  # the embedded backend's own page (jobs, charts, playground)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1, start_new_session=True,
            preexec_fn=partial(die_with_parent, signal.SIGTERM),  # the bot ends with this launcher
        )
        threading.Thread(target=self._pump, name="bot-output", daemon=True).start()

    def _pump(self) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.tail = (self.tail + [line.rstrip()])[-40:]
                if not self.quiet or not self.ready.is_set() or any(w in line for w in ("WARNING", "ERROR", "Traceback")):
                    print(f"bot | {line.rstrip()}", flush=True)
                backend = re.search(r"embedded tunehouse at (http://\S+?)/v1", line)
                if backend:
                    self.dashboard = backend.group(1) + "/"
                if " ready" in line:
                    self.ready.set()

    def wait_ready(self, timeout: float, stopping: threading.Event) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stopping.is_set():
            if self.ready.wait(0.2):
                return True
            if self.process.poll() is not None:
                return False
        return self.ready.is_set()

    def stop(self) -> int | None:
        """SIGINT (the bot stops its backend and exits), then SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if self.process.poll() is not None:
                break
            try:
                self.process.send_signal(sig)
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        return self.process.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localslack.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("TUNEHOUSE_PORT", "8000")),
                        help="the workspace's port (0: any free one)")
    parser.add_argument("--data-dir", default=os.environ.get("TUNEHOUSE_DATA_DIR", "tunehouse-data"),
                        help="the bot's data; the workspace keeps its own in DATA_DIR/workspace")
    parser.add_argument("--manifest", default=None, help="the app's manifest (default: manifest.yml)")
    parser.add_argument("--no-open", action="store_true", help="do not open a browser")
    parser.add_argument("--verbose", action="store_true", help="echo every line the bot logs")
    args = parser.parse_args(argv)

    tokens = slack_tokens(Path.cwd() / ".env")
    if len(tokens) == 2:
        print("SLACK_BOT_TOKEN and SLACK_APP_TOKEN are set: running the bot against Slack "
              "(unset them for the local workspace).", flush=True)
        os.execv(sys.executable, [sys.executable, "-m", "bot"])
    if tokens:
        missing = ({"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"} - set(tokens)).pop()
        print(f"{next(iter(tokens))} is set but {missing} is not: set both to run against Slack in Socket Mode "
              "(docs/slack.md), or neither for the local workspace.", file=sys.stderr)
        return 2

    from .server import LocalSlack

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = find_manifest(args.manifest)
    try:
        slack = LocalSlack(data_dir=data_dir / "workspace", host=args.host, port=args.port, manifest=manifest)
        slack.start()
    except OSError as error:
        print(f"The local workspace cannot listen on {args.host}:{args.port} ({error.strerror}). Is `make run` "
              "already running? Stop it, or choose another port: make run PORT=8001", file=sys.stderr)
        return 1
    url = f"http://{args.host}:{slack.port}"

    stopping = threading.Event()

    def ask_to_stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGTERM, ask_to_stop)

    print(f"Local workspace at {url} (data in {data_dir / 'workspace'}); starting the bot and its backend…",
          flush=True)
    bot = Bot(bot_environment(slack, data_dir), data_dir / "bot.log", quiet=not args.verbose)
    code = 0
    try:
        if not bot.wait_ready(READY_TIMEOUT_S, stopping):
            if not stopping.is_set():
                print("The bot did not start. Its last lines:\n" + "\n".join(bot.tail[-25:]), file=sys.stderr)
                code = 1
        else:
            slack.wait_connected(timeout=30)
            print(f"\nOpen {url}\n", flush=True)
            print(f"You are Alice in #fine-tuning with the {slack.workspace.app['name']} bot: drop a dataset "
                  f"there. Bot log: {bot.log_path}. Ctrl+C stops everything.", flush=True)
            if bot.dashboard:
                print(f"The training backend's dashboard (jobs, loss charts, playground): {bot.dashboard}", flush=True)
            if not args.no_open and _has_display():
                threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
            while not stopping.wait(0.5):
                if bot.process.poll() is not None:
                    print(f"The bot exited ({bot.process.returncode}). Its last lines:\n" + "\n".join(bot.tail[-25:]),
                          file=sys.stderr)
                    code = 1
                    break
    finally:
        print("Stopping…", flush=True)
        bot.stop()
        slack.stop()
        print("Stopped.", flush=True)
    return code


def _has_display() -> bool:
    """Only where a graphical browser can open (never a text browser in this terminal)."""
    if not sys.stdout.isatty():
        return False
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


if __name__ == "__main__":
    sys.exit(main())
