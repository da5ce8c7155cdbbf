"""Mentions, and messages in channels, private channels and DMs.

Shared files are answered in handlers/files.py; every other message event is received (and so
acknowledged) here, including the `message_changed` that each of the bot's own updates produces.
"""

from __future__ import annotations

from slack_bolt import App, Say

from .commands import USAGE


def register(app: App, services) -> None:
    @app.event("app_mention")
    def mentioned(event: dict, say: Say) -> None:
        if not services.storage.claim(f"mention:{event['channel']}:{event['ts']}"):
            return
        say(text=USAGE, thread_ts=event.get("thread_ts") or event["ts"])

    @app.event("message")
    def message(event: dict) -> None:
        """A plain message needs no answer: a mention has its own event (`app_mention`)."""
