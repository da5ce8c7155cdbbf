"""The one error type: a Slack error code, rendered as Slack renders it."""

from __future__ import annotations

from typing import Any


class SlackError(Exception):
    """`{"ok": false, "error": code, **extra}`; raised by Web API methods and person actions alike."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}
