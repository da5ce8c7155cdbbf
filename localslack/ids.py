"""Identifiers in Slack's shapes: `T…`/`U…`/`C…` ids, message timestamps, event and trigger ids."""

from __future__ import annotations

import secrets
import string
import threading
import time
import uuid

_ALPHABET = string.ascii_uppercase + string.digits


def new_id(prefix: str, length: int = 10) -> str:
    """An id such as `C07ABC123XY`: Slack ids are a type letter then uppercase letters and digits."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def event_id() -> str:
    return new_id("Ev", 10)


def envelope_id() -> str:
    return str(uuid.uuid4())


def trigger_id() -> str:
    """`<seconds>.<digits>.<hex>`, the shape of Slack's trigger ids."""
    return f"{int(time.time())}.{secrets.randbelow(10**12):012d}.{secrets.token_hex(16)}"


def block_id() -> str:
    """Slack fills in a short random `block_id` (and `action_id`) for blocks posted without one."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(5))


class TsClock:
    """Message timestamps (`"1712345678.123456"`): strictly increasing, unique within the workspace.

    Slack's `ts` is the message's id; two messages in one microsecond still get distinct ones. Also
    increasing when the wall clock is frozen (freezegun) or steps back.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            micros = max(int(time.time() * 1_000_000), self._last + 1)
            self._last = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def seen(self, ts: str) -> None:
        """Never hand out a ts at or below one loaded from disk."""
        seconds, _, fraction = ts.partition(".")
        with self._lock:
            self._last = max(self._last, int(seconds) * 1_000_000 + int(fraction or 0))
