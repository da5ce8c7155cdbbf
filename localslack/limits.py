"""Rate limits per method tier, and faults a test injects into the Web API.

Slack limits each method per app per workspace by tier (Tier 1: 1+/min, 2: 20+/min, 3: 50+/min,
4: 100+/min) and chat.postMessage at about one message per second per channel with short bursts. Over
the limit: HTTP 429, `Retry-After: <seconds>`, `{"ok": false, "error": "ratelimited"}`. Each limit is a
token bucket holding a minute's worth of calls, so bursts pass and sustained rates are held to the tier.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}
SPECIAL_PER_MINUTE = 600  # auth.test, chat.getPermalink, assistant.threads.*: "special", far above Tier 4
POST_MESSAGE_PER_CHANNEL = (60, 5)  # per minute, burst


class _Bucket:
    def __init__(self, per_minute: float, burst: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> float | None:
        """None when a call may go now, else seconds until it may."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """`enabled` False turns limits off; a dict overrides per-minute limits by method name."""

    def __init__(self, enabled: bool | dict[str, float] = True) -> None:
        self.enabled = bool(enabled)
        self.overrides = dict(enabled) if isinstance(enabled, dict) else {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def retry_after(self, method: str, per_minute: float, key: str = "", burst: float | None = None) -> int | None:
        """Seconds for `Retry-After` when this call is over the limit, else None (and the call is counted)."""
        if not self.enabled:
            return None
        per_minute = self.overrides.get(method, per_minute)
        with self._lock:
            bucket = self._buckets.get((method, key))
            if bucket is None:
                bucket = self._buckets[(method, key)] = _Bucket(per_minute, burst or max(per_minute, 1))
            wait = bucket.take()
        return None if wait is None else max(1, math.ceil(wait))


@dataclass
class Fault:
    error: str | None = None
    http_status: int | None = None
    retry_after: int | None = None
    times: int = 1
    delay: float | None = None


class Faults:
    """Queued failures per Web API method, consumed one call at a time."""

    def __init__(self) -> None:
        self._queued: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()

    def add(self, method: str, fault: Fault) -> None:
        with self._lock:
            self._queued.setdefault(method, []).append(fault)

    def take(self, method: str) -> Fault | None:
        with self._lock:
            queue = self._queued.get(method)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()
