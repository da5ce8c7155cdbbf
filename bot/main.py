"""The bot's entry point, shared by `tunehouse bot` and `python -m bot`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .settings import BotSettings

SLACK_SECRETS = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tunehouse bot", description="Fine-tuning from Slack.")
    parser.add_argument("--http", action="store_true", help="HTTP mode: POST /slack/events (needs SLACK_SIGNING_SECRET)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP mode: address to listen on")
    parser.add_argument("--port", type=int, default=3000, help="HTTP mode: port to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("TUNEHOUSE_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO (the openai SDK's copy of it as "httpx2"): the poller would fill the log.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    settings = BotSettings()
    # Read once, then out of the environment: the embedded backend and its trainers never need Slack's
    # secrets, and bolt, finding no token there, does not warn that the one it found goes unused.
    for name in SLACK_SECRETS:
        os.environ.pop(name, None)
    if not settings.slack_bot_token:
        sys.exit("SLACK_BOT_TOKEN is not set: see docs/slack.md (or `make run` for the local workspace).")
    from .app import run

    run(settings, http=args.http, host=args.host, port=args.port)
