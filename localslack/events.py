"""Deliveries to the app: events, slash commands and interactivity, over Socket Mode or signed HTTP.

What Slack does, and so what this does:
- An event is wrapped in an `event_callback` (token, team_id, api_app_id, event, event_id, event_time,
  authorizations, event_context) and delivered only when the app subscribes to it and (for conversation
  events) the bot is in the conversation.
- Socket Mode: an `events_api` envelope to one connection. No ack within `ack_timeout` (3 s) and the same
  event is sent again with `retry_attempt` n and `retry_reason`, at once, then after 1 and 5 minutes
  (`retry_delays`), three retries at most.
- HTTP mode: a POST signed with `X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")` and
  `X-Slack-Request-Timestamp`; no 2xx within 3 s, a non-2xx, a refused connection or too many redirects
  is retried on the same schedule with `X-Slack-Retry-Num` / `X-Slack-Retry-Reason`; a non-2xx answer
  with `X-Slack-No-Retry: 1` stops the retries.
- Slash commands and interactive payloads are never retried; their ack (Socket Mode `payload`, HTTP
  response body) is the answer the person sees (ephemeral text, a view's `response_action`).

Every attempt is recorded as a `Delivery` (sent/acked times, latency) for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from .config import Settings
from .ids import envelope_id, event_id
from .socket_mode import SocketHub
from .state import Workspace

log = logging.getLogger(__name__)
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


class DeliveryFailed(Exception):
    """A slash command or interaction the app did not take: `dispatch_failed`, `operation_timeout`, …"""


@dataclass
class Delivery:
    """One attempt to hand something to the app."""

    kind: str  # events_api | slash_commands | interactive | url_verification
    type: str | None  # the event type, the interactive payload type, or the command
    envelope_id: str
    event_id: str | None
    retry_attempt: int
    retry_reason: str
    transport: str  # socket | http
    sent_at: float | None = None
    acked_at: float | None = None
    status: str = "pending"  # sent | acked | acked_late | timeout | failed | no_connection
    http_status: int | None = None
    ack_payload: Any = None

    @property
    def ack_latency(self) -> float | None:
        if self.sent_at is None or self.acked_at is None:
            return None
        return self.acked_at - self.sent_at

    def as_dict(self) -> dict:
        return {**asdict(self), "ack_latency": self.ack_latency}


@dataclass
class _EventJob:
    event_id: str
    body: dict
    attempts: int = -1
    acked: bool = False
    timer: asyncio.TimerHandle | None = None
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass
class _Outcome:
    """How an HTTP delivery went: `reason` is Slack's X-Slack-Retry-Reason for the retry."""

    ok: bool
    reason: str = ""
    retry: bool = True
    payload: Any = None


@dataclass
class _Waiting:
    delivery: Delivery
    job: _EventJob | None = None
    answer: concurrent.futures.Future | None = None
    deadline: asyncio.TimerHandle | None = None


class Dispatcher:
    """Sends deliveries from any thread; all network work runs on the server's event loop."""

    def __init__(self, ws: Workspace, settings: Settings, hub: SocketHub) -> None:
        self.ws = ws
        self.settings = settings
        self.hub = hub
        self.loop: asyncio.AbstractEventLoop | None = None
        self.deliveries: list[Delivery] = []
        self._jobs: dict[str, _EventJob] = {}
        self._waiting: dict[str, _Waiting] = {}
        self._http: httpx.AsyncClient | None = None

    @property
    def http_mode(self) -> bool:
        return bool(self.settings.events_url)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # trust_env=False: a proxy from the environment must not see loopback deliveries.
        self._http = httpx.AsyncClient(trust_env=False, follow_redirects=True, max_redirects=2)

    async def stop(self) -> None:
        for job in self._jobs.values():
            if job.timer:
                job.timer.cancel()
        if self._http is not None:
            await self._http.aclose()

    def _on_loop(self, callback, *args: Any) -> None:
        if self.loop is None:
            raise RuntimeError("the local Slack is not started")
        self.loop.call_soon_threadsafe(callback, *args)

    # ------------------------------------------------------------------ events

    def emit(self, event: dict, channel_id: str | None = None) -> str | None:
        """Deliver `event` if the app subscribes to it and can see `channel_id`; return its event_id."""
        manifest = self.settings.manifest
        if not manifest.subscribes(event["type"], event.get("channel_type")):
            return None
        if channel_id and not self.ws.is_member(channel_id, self.ws.bot_user_id):
            return None
        job = _EventJob(event_id=event_id(), body=self._event_callback(event, channel_id))
        self._jobs[job.event_id] = job
        self._on_loop(self._attempt, job, "", True)
        return job.event_id

    def redeliver(self, event_id: str, reason: str | None = None) -> None:
        """Send an event again as Slack repeats one: the next `retry_attempt`, same event_id and body."""
        job = self._jobs[event_id]
        self._on_loop(self._attempt, job, reason or ("http_timeout" if self.http_mode else "timeout"), False)

    def _event_callback(self, event: dict, channel_id: str | None) -> dict:
        ws, now = self.ws, int(time.time())
        context = {"et": event["type"], "tid": ws.team["id"], "aid": ws.app["id"]}
        if channel_id:
            context["cid"] = channel_id
        encoded = base64.urlsafe_b64encode(json.dumps(context, separators=(",", ":")).encode()).decode().rstrip("=")
        return {
            "token": ws.verification_token, "team_id": ws.team["id"], "context_team_id": ws.team["id"],
            "context_enterprise_id": None, "api_app_id": ws.app["id"], "event": event, "type": "event_callback",
            "event_id": "", "event_time": now,
            "authorizations": [{"enterprise_id": None, "team_id": ws.team["id"], "user_id": ws.bot_user_id,
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False, "event_context": f"4-{encoded}",
        }

    def _attempt(self, job: _EventJob, reason: str, follow_up: bool) -> None:
        job.attempts += 1
        job.body["event_id"] = job.event_id
        delivery = Delivery(kind="events_api", type=job.body["event"]["type"], envelope_id=envelope_id(),
                            event_id=job.event_id, retry_attempt=job.attempts, retry_reason=reason,
                            transport="http" if self.http_mode else "socket")
        job.deliveries.append(delivery)
        self.deliveries.append(delivery)
        asyncio.ensure_future(self._send_event(job, delivery, follow_up))

    async def _send_event(self, job: _EventJob, delivery: Delivery, follow_up: bool) -> None:
        if self.http_mode:
            headers = {}
            if delivery.retry_attempt:
                headers = {"X-Slack-Retry-Num": str(delivery.retry_attempt),
                           "X-Slack-Retry-Reason": delivery.retry_reason}
            outcome = await self._post(delivery, json.dumps(job.body).encode(), "application/json", headers)
            if outcome.ok:
                job.acked = True
            elif follow_up and outcome.retry:
                self._schedule_retry(job, outcome.reason)
            return
        envelope = {"envelope_id": delivery.envelope_id, "payload": job.body, "type": "events_api",
                    "accepts_response_payload": False, "retry_attempt": delivery.retry_attempt,
                    "retry_reason": delivery.retry_reason}
        waiting = _Waiting(delivery, job=job)
        if await self._send_envelope(waiting, envelope) and follow_up:
            waiting.deadline = self.loop.call_later(self.settings.ack_timeout, self._ack_deadline, waiting)
        elif follow_up and delivery.status == "no_connection":
            self._schedule_retry(job, "timeout")

    def _schedule_retry(self, job: _EventJob, reason: str) -> None:
        retry = job.attempts + 1
        if retry > len(self.settings.retry_delays):
            return
        delay = self.settings.retry_delays[retry - 1]
        job.timer = self.loop.call_later(delay, self._retry_unless_acked, job, reason)

    def _retry_unless_acked(self, job: _EventJob, reason: str) -> None:
        if not job.acked:
            self._attempt(job, reason, True)

    # ------------------------------------------------------------------ slash commands and interactivity

    def request(self, kind: str, payload: dict, type_name: str, accepts_response_payload: bool,
                ) -> concurrent.futures.Future:
        """Send a slash command (`slash_commands`) or an interaction (`interactive`); the future gives
        the ack's payload (None for an empty ack) or raises DeliveryFailed."""
        answer: concurrent.futures.Future = concurrent.futures.Future()
        delivery = Delivery(kind=kind, type=type_name, envelope_id=envelope_id(), event_id=None, retry_attempt=0,
                            retry_reason="", transport="http" if self.http_mode else "socket")
        self._on_loop(lambda: asyncio.ensure_future(self._send_request(delivery, payload, accepts_response_payload,
                                                                       answer)))
        return answer

    async def _send_request(self, delivery: Delivery, payload: dict, accepts: bool,
                            answer: concurrent.futures.Future) -> None:
        self.deliveries.append(delivery)
        if self.http_mode:
            if delivery.kind == "slash_commands":
                body = urlencode(payload).encode()
            else:
                body = urlencode({"payload": json.dumps(payload)}).encode()
            outcome = await self._post(delivery, body, "application/x-www-form-urlencoded", {})
            if outcome.ok:
                answer.set_result(outcome.payload)
            else:
                answer.set_exception(DeliveryFailed(
                    "operation_timeout" if outcome.reason == "http_timeout" else "dispatch_failed"))
            return
        envelope = {"envelope_id": delivery.envelope_id, "payload": payload, "type": delivery.kind,
                    "accepts_response_payload": accepts}
        waiting = _Waiting(delivery, answer=answer)
        if await self._send_envelope(waiting, envelope):
            waiting.deadline = self.loop.call_later(self.settings.ack_timeout, self._ack_deadline, waiting)
        else:
            answer.set_exception(DeliveryFailed("dispatch_failed"))

    # ------------------------------------------------------------------ Socket Mode plumbing

    async def _send_envelope(self, waiting: _Waiting, envelope: dict) -> bool:
        delivery = waiting.delivery
        self._waiting[delivery.envelope_id] = waiting
        delivery.sent_at = time.time()
        if await self.hub.send(envelope):
            delivery.status = "sent"
            return True
        delivery.status = "no_connection"
        self._waiting.pop(delivery.envelope_id, None)
        return False

    def on_ack(self, envelope_id: str, payload: Any) -> None:
        """An `{"envelope_id": …, "payload"?: …}` from a connection (called on the loop)."""
        waiting = self._waiting.pop(envelope_id, None)
        if waiting is None:
            log.info("ack for an unknown envelope %s", envelope_id)
            return
        delivery = waiting.delivery
        delivery.acked_at = time.time()
        delivery.ack_payload = payload
        if waiting.deadline:
            waiting.deadline.cancel()
        if delivery.status == "timeout":
            delivery.status = "acked_late"
            return
        delivery.status = "acked"
        if waiting.job is not None:
            waiting.job.acked = True
        if waiting.answer is not None and not waiting.answer.done():
            waiting.answer.set_result(payload)

    def _ack_deadline(self, waiting: _Waiting) -> None:
        delivery = waiting.delivery
        if delivery.acked_at is not None:
            return
        delivery.status = "timeout"
        if waiting.job is not None:
            self._schedule_retry(waiting.job, "timeout")
        if waiting.answer is not None and not waiting.answer.done():
            waiting.answer.set_exception(DeliveryFailed("operation_timeout"))

    # ------------------------------------------------------------------ HTTP plumbing

    def signed_headers(self, body: bytes, content_type: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        base = b"v0:" + timestamp.encode() + b":" + body
        signature = "v0=" + hmac.new(self.settings.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature, "User-Agent": USER_AGENT}

    async def _post(self, delivery: Delivery, body: bytes, content_type: str, extra: dict[str, str]) -> _Outcome:
        headers = {**self.signed_headers(body, content_type), **extra}
        delivery.sent_at = time.time()
        try:
            response = await self._http.post(self.settings.events_url, content=body, headers=headers,
                                              timeout=self.settings.ack_timeout)
        except httpx.TimeoutException:
            delivery.status = "timeout"
            return _Outcome(False, "http_timeout")
        except httpx.TooManyRedirects:
            delivery.status = "failed"
            return _Outcome(False, "too_many_redirects")
        except httpx.ConnectError:
            delivery.status = "failed"
            return _Outcome(False, "connection_failed")
        except httpx.HTTPError:
            delivery.status = "failed"
            return _Outcome(False, "unknown_error")
        delivery.http_status = response.status_code
        if not response.is_success:
            delivery.status = "failed"
            return _Outcome(False, "http_error", retry=response.headers.get("x-slack-no-retry") != "1")
        delivery.acked_at = time.time()
        delivery.status = "acked"
        delivery.ack_payload = _answer(response)
        return _Outcome(True, payload=delivery.ack_payload)

    async def verify_url(self) -> bool:
        """Slack's `url_verification` handshake: the app must answer with the challenge."""
        challenge = envelope_id().replace("-", "")
        body = json.dumps({"token": self.ws.verification_token, "challenge": challenge,
                           "type": "url_verification"}).encode()
        delivery = Delivery(kind="url_verification", type="url_verification", envelope_id=envelope_id(),
                            event_id=None, retry_attempt=0, retry_reason="", transport="http")
        self.deliveries.append(delivery)
        outcome = await self._post(delivery, body, "application/json", {})
        answer = outcome.payload
        return outcome.ok and (answer == {"challenge": challenge} or answer == {"text": challenge})


def _answer(response: httpx.Response) -> Any:
    """An HTTP ack's body as Socket Mode would carry it: JSON as is, plain text as `{"text": …}`."""
    text = response.text.strip()
    if not text:
        return None
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            return response.json()
        except ValueError:
            pass
    return {"text": text}
