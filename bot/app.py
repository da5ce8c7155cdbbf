"""Assembling the bolt App and running it in Socket Mode or HTTP mode.

    tunehouse bot                       Socket Mode (SLACK_APP_TOKEN), or HTTP mode when it is unset
    tunehouse bot --http [--host H] [--port P]
    python -m bot                       the same

The Web client is built first, on SLACK_API_URL, and handed to the App: `App(token=...)` would call Slack's
own host for `auth.test` while it is constructed, whatever SLACK_API_URL says.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

from fastapi import FastAPI, Request
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

import handlers
from storage import Storage

from .backend import Backend, connect_backend
from .datasets import prepare as prepare_datasets
from .job_threads import JobPoller
from .settings import BotSettings

log = logging.getLogger("tunehouse.bot")

SOCKET_PING_INTERVAL_S = 3
"""slack_sdk's client finds a dead socket by its pings: stale after 4 unanswered, given up after 5 failed
sends, then replaced. Its default 10 s left a cut connection unnoticed for about a minute."""


@dataclass
class Services:
    """What the listeners need besides Slack's payload: plain objects, built once at start-up."""

    settings: BotSettings
    storage: Storage
    backend: Backend
    poller: JobPoller | None = None


POSTING_METHODS = ("chat.postMessage", "chat.postEphemeral", "chat.startStream", "chat.appendStream")
"""Web API methods that may have posted although their answer timed out: repeating one could post twice."""


class TimeoutRetryHandler(RetryHandler):
    """A Web API call whose answer did not come in time is tried again, unless it may have posted already
    (its report is then finished at the next start, from its claim)."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return isinstance(error, TimeoutError) and request.url.rsplit("/", 1)[-1] not in POSTING_METHODS


def web_client(settings: BotSettings) -> WebClient:
    client = WebClient(token=settings.secret("slack_bot_token"), base_url=settings.slack_api_url)
    # slack_sdk retries only connection errors by default; Slack's 429s (with Retry-After), 5xx and timeouts too.
    client.retry_handlers.extend(
        [RateLimitErrorRetryHandler(max_retry_count=5), ServerErrorRetryHandler(max_retry_count=2),
         TimeoutRetryHandler(max_retry_count=2)]
    )
    if not any(isinstance(h, ConnectionErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(ConnectionErrorRetryHandler())
    return client


def build_app(services: Services, *, verify_token: bool = True) -> App:
    """The App with every listener; `verify_token=False` skips the `auth.test` call (tests of the wiring)."""
    settings = services.settings
    app = App(
        client=web_client(settings),
        signing_secret=settings.secret("slack_signing_secret") or None,
        # Socket Mode needs no signature; HTTP mode refuses requests without a valid one.
        request_verification_enabled=not settings.socket_mode,
        ignoring_self_events_enabled=True,
        token_verification_enabled=verify_token,
    )
    handlers.register(app, services)
    return app


def run(settings: BotSettings, *, http: bool = False, host: str = "127.0.0.1", port: int = 3000) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare_datasets()
    storage = Storage(settings.data_dir / "bot.db")
    backend = connect_backend(settings)
    services = Services(settings=settings, storage=storage, backend=backend)
    app = build_app(services)
    services.poller = JobPoller(services, app.client)
    handlers.resume_unfinished(app, services)
    services.poller.start()
    try:
        if http or not settings.socket_mode:
            _run_http(app, settings, host, port)
        else:
            _run_socket_mode(app, settings)
    finally:
        services.poller.stop()
        backend.stop()


def _run_socket_mode(app: App, settings: BotSettings) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(app, settings.secret("slack_app_token"), ping_interval=SOCKET_PING_INTERVAL_S)
    handler.connect()
    log.info("ready: connected to Slack in Socket Mode through %s", settings.slack_api_url)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    handler.close()


def _run_http(app: App, settings: BotSettings, host: str, port: int) -> None:
    import uvicorn
    from slack_bolt.adapter.fastapi import SlackRequestHandler

    if not settings.slack_signing_secret:
        raise SystemExit("HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN for Socket Mode).")
    bolt = SlackRequestHandler(app)
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @api.post("/slack/events")
    async def slack_events(request: Request):
        return await bolt.handle(request)

    @api.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    class ReadyServer(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            log.info("ready: listening for Slack on http://%s:%d/slack/events", host, port)

    ReadyServer(uvicorn.Config(api, host=host, port=port, log_level="warning", lifespan="off")).run()
