"""LocalSlack: the workspace, its Web API, Socket Mode and HTTP deliveries, run in a background thread.

One asyncio loop (in its own thread) serves the HTTP side (uvicorn: `/api/…`, file hosting, response
URLs, `/_local/…`) and the Socket Mode WebSocket server, and does every delivery and retry. The
methods below are the people's side of Slack (post, share a file, run a command, click, submit) and the
queries tests need; each is also a `/_local/` endpoint (local_api.py).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from . import files, local_api, web
from .config import Settings
from .errors import SlackError
from .events import Delivery, Dispatcher
from .interactivity import Interaction, Interactions
from .limits import Fault, Faults, RateLimiter
from .manifest import Manifest
from .messages import Conversations
from .socket_mode import SocketHub
from .state import Change, Workspace
from .webapi import WebAPI


class LocalSlack:
    """A Slack workspace on loopback. `start()` it, point the app at `api_url`, drive it as people do."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_token: str | None = None,
        app_token: str | None = None,
        signing_secret: str | None = None,
        manifest: Path | str | dict | None = None,
        events_url: str | None = None,
        ack_timeout: float = 3.0,
        retry_delays: tuple[float, ...] = (0.0, 60.0, 300.0),
        rate_limits: bool | dict[str, float] = True,
        msg_max_chars: int = 40_000,
        socket_port: int = 0,
    ) -> None:
        loaded = Manifest.load(manifest)
        self.workspace = ws = Workspace(Path(data_dir) if data_dir else None, bot_name=loaded.bot_name)
        credentials = ws.credentials
        credentials.setdefault("bot_token", f"xoxb-local-{secrets.token_hex(12)}")
        credentials.setdefault("app_token", f"xapp-local-{secrets.token_hex(12)}")
        credentials.setdefault("signing_secret", secrets.token_hex(16))
        ws.save()
        self.settings = settings = Settings(
            bot_token=bot_token or credentials["bot_token"], app_token=app_token or credentials["app_token"],
            signing_secret=signing_secret or credentials["signing_secret"], manifest=loaded, events_url=events_url,
            ack_timeout=ack_timeout, retry_delays=tuple(retry_delays), msg_max_chars=msg_max_chars)
        self.host, self.port, self.socket_port = host, port, socket_port
        self.hub = SocketHub(ws.app["id"], on_ack=lambda envelope, payload: self.dispatcher.on_ack(envelope, payload))
        self.dispatcher = Dispatcher(ws, settings, self.hub)
        self.conversations = Conversations(ws, settings, self.dispatcher)
        self.interactions = Interactions(ws, settings, self.dispatcher, self.conversations)
        self.faults = Faults()
        self.webapi = WebAPI(ws, settings, self.dispatcher, self.hub, self.conversations, self.interactions,
                             RateLimiter(rate_limits), self.faults)
        self.app = self._build_app()
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="localslack", docs_url=None, redoc_url=None, openapi_url=None,
                      exception_handlers=local_api.error_handlers())
        app.include_router(self.webapi.router())
        app.include_router(files.router(self.workspace, self.settings))
        app.include_router(local_api.router(self))
        app.include_router(web.router(self))

        @app.post("/commands/{team}/{number}/{secret}")
        @app.post("/actions/{team}/{number}/{secret}")
        async def response_url(secret: str, request: Request) -> PlainTextResponse:
            try:
                body = await request.json()
            except ValueError:
                return PlainTextResponse("invalid_payload", status_code=400)
            status, text = self.interactions.respond(secret, body if isinstance(body, dict) else {})
            return PlainTextResponse(text, status_code=status)

        return app

    def start(self, timeout: float = 10.0) -> LocalSlack:
        """Bind, serve in a background thread, and return once the Web API answers."""
        http_sock = _bind(self.host, self.port)
        ws_sock = _bind(self.host, self.socket_port)
        self.port, self.socket_port = http_sock.getsockname()[1], ws_sock.getsockname()[1]
        self.settings.base_url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=3)
        self._server = uvicorn.Server(config)

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self.dispatcher.start()
            await self.hub.start(ws_sock)
            try:
                await self._server.serve(sockets=[http_sock])
            finally:
                await self.hub.stop()
                await self.dispatcher.stop()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), name="localslack", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False) as client:
            while True:
                try:
                    if client.get(f"{self.settings.base_url}/_local/health").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or not self._thread.is_alive():
                    raise RuntimeError("the local Slack did not start")
                time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None
        self.workspace.save()  # what the last half second changed

    @property
    def stopping(self) -> bool:
        """True once `stop()` was asked: long-lived responses (the page's live feed) end themselves."""
        return self._server is not None and self._server.should_exit

    def __enter__(self) -> LocalSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, coroutine: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server loop from another thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # ------------------------------------------------------------------ what the app is given

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def api_url(self) -> str:
        """SLACK_API_URL for the app: slack-sdk appends the method name."""
        return f"{self.settings.base_url}/api/"

    @property
    def bot_token(self) -> str:
        return self.settings.bot_token

    @property
    def app_token(self) -> str:
        return self.settings.app_token

    @property
    def signing_secret(self) -> str:
        return self.settings.signing_secret

    @property
    def team_id(self) -> str:
        return self.workspace.team["id"]

    @property
    def app_id(self) -> str:
        return self.workspace.app["id"]

    @property
    def bot_user_id(self) -> str:
        return self.workspace.bot_user_id

    @property
    def bot_id(self) -> str:
        return self.workspace.app["bot_id"]

    def user_id(self, name: str) -> str:
        """A user's id from its name ("alice") or id."""
        return self.workspace.user_by_name(name)["id"]

    def channel_id(self, name: str) -> str:
        """A conversation's id from `fine-tuning`, `#fine-tuning` or its id; a user's name gives their DM."""
        ws = self.workspace
        with ws.lock:
            try:
                return ws.channel_by_name(name)["id"]
            except SlackError:
                try:
                    return ws.open_im(self.user_id(name))["id"]
                except SlackError:
                    raise SlackError("channel_not_found") from None

    def dm(self, user: str) -> str:
        """The id of the DM between `user` and the bot."""
        return self.workspace.open_im(self.user_id(user))["id"]

    # ------------------------------------------------------------------ workspace setup

    def add_user(self, name: str, real_name: str | None = None) -> str:
        return self.workspace.add_user(name, real_name)["id"]

    def add_channel(self, name: str, members: list[str] = (), private: bool = False, with_bot: bool = True) -> str:
        ids = [self.user_id(m) for m in members] + ([self.bot_user_id] if with_bot else [])
        return self.workspace.add_channel(name, ids, private=private)["id"]

    def join(self, channel: str, user: str) -> None:
        self.workspace.join(self.channel_id(channel), self.user_id(user))

    # ------------------------------------------------------------------ what people do

    def post_message(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> str:
        """A person sends a message: `message` (and `app_mention` when it mentions the bot)."""
        return self.conversations.post_as_person(self.channel_id(channel), self.user_id(user), text, thread_ts)["ts"]

    def share_file(self, channel: str, user: str, filename: str, content: bytes, text: str = "",
                   thread_ts: str | None = None, mimetype: str | None = None) -> tuple[str, str]:
        """A person drops a file (with an optional message): `message`/`file_share` and `file_shared`."""
        ws, user_id = self.workspace, self.user_id(user)
        with ws.lock:
            meta = files.new_file(ws, user_id, filename, mimetype=mimetype)
            ws.store_file_bytes(meta["id"], content)
            meta["size"] = len(content)
        ts = self.conversations.post_as_person(self.channel_id(channel), user_id, text, thread_ts,
                                               files=[meta["id"]])["ts"]
        return meta["id"], ts

    def slash_command(self, channel: str, user: str, command: str, text: str = "") -> Interaction:
        return self.interactions.slash_command(self.channel_id(channel), self.user_id(user), command, text)

    def click(self, channel: str, message_ts: str, action_id: str, user: str, value: str | None = None) -> Interaction:
        """Click a button (a `confirm` dialog is taken as confirmed) in a message or an ephemeral."""
        return self.interactions.click(self.channel_id(channel), message_ts, action_id, self.user_id(user), value)

    def click_view(self, view_id: str, action_id: str, user: str, value: str | None = None) -> Interaction:
        return self.interactions.click_view(view_id, action_id, self.user_id(user), value)

    def submit_view(self, view_id: str, user: str, values: dict | None = None) -> dict:
        return self.interactions.submit_view(view_id, self.user_id(user), values)

    def close_view(self, view_id: str, user: str) -> None:
        self.interactions.close_view(view_id, self.user_id(user))

    def open_home(self, user: str) -> str | None:
        return self.interactions.open_home(self.user_id(user))

    def delete_file(self, file_id: str) -> None:
        self.workspace.delete_file(file_id)

    # ------------------------------------------------------------------ what Slack does on its own

    def disconnect_sockets(self, reason: str = "refresh_requested") -> None:
        """Send `disconnect` (reason `warning`, `refresh_requested`, `too_many_websockets`, `link_disabled`)."""
        asyncio.run_coroutine_threadsafe(self.hub.disconnect_all(reason), self._loop)

    def drop_sockets(self) -> None:
        """Cut every Socket Mode connection abruptly (no close frame)."""
        self._loop.call_soon_threadsafe(self.hub.drop_all)

    def redeliver(self, event_id: str, reason: str | None = None) -> None:
        self.dispatcher.redeliver(event_id, reason)

    def inject_fault(self, method: str, error: str | None = None, http_status: int | None = None,
                     retry_after: int | None = None, times: int = 1, delay: float | None = None) -> None:
        """Make the next `times` calls of a Web API method fail (or be slow, with `delay` alone)."""
        self.faults.add(method, Fault(error, http_status, retry_after, times, delay))

    def verify_url(self) -> bool:
        """HTTP mode: Slack's `url_verification` challenge to `events_url`; True when answered right."""
        return self._run(self.dispatcher.verify_url())

    # ------------------------------------------------------------------ queries

    def messages(self, channel: str, thread_ts: str | None = None) -> list[dict]:
        """A channel's top-level messages, or a thread (root first), oldest first, as Slack shows them."""
        ws, channel_id = self.workspace, self.channel_id(channel)
        with ws.lock:
            found = ws.thread(channel_id, thread_ts) if thread_ts else ws.top_level(channel_id)
            return [self.conversations.render(m) for m in found]

    def message(self, channel: str, ts: str) -> dict:
        with self.workspace.lock:
            return self.conversations.render(self.workspace.find_message(self.channel_id(channel), ts))

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[dict]:
        channel_id = self.channel_id(channel) if channel else None
        user_id = self.user_id(user) if user else None
        return self.workspace.copy([e for e in self.workspace.ephemerals
                                    if (channel_id is None or e["channel"] == channel_id)
                                    and (user_id is None or e["user"] == user_id)])

    def views(self, user: str) -> list[dict]:
        """The user's open modal stack, bottom first."""
        ws = self.workspace
        with ws.lock:
            return ws.copy([ws.views[v] for v in ws.modal_stacks.get(self.user_id(user), [])])

    def home(self, user: str) -> dict | None:
        ws = self.workspace
        with ws.lock:
            view_id = ws.homes.get(self.user_id(user))
            return ws.copy(ws.views[view_id]) if view_id else None

    def files(self) -> list[dict]:
        ws = self.workspace
        with ws.lock:
            return [files.file_object(ws, self.settings, f) for f, meta in ws.files.items() if not meta["is_deleted"]]

    def file(self, file_id: str) -> dict:
        """A file's object plus its bytes under `content`."""
        ws = self.workspace
        with ws.lock:
            return {**files.file_object(ws, self.settings, file_id), "content": ws.file_bytes(file_id)}

    @property
    def api_calls(self) -> list[tuple[float, str]]:
        """(time, method) of every Web API call the app made, oldest first."""
        return list(self.webapi.calls)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every attempt to hand something to the app, in order (kind, type, ids, retry, times, latency)."""
        return list(self.dispatcher.deliveries)

    def thread_status(self, channel: str, thread_ts: str) -> dict | None:
        return self.workspace.copy(self.workspace.thread_status.get(f"{self.channel_id(channel)}:{thread_ts}"))

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Change records (`message_posted`, `message_changed`, `ephemeral`, `view_opened`, …) as they happen."""
        return self.workspace.subscribe(callback)

    def changes(self, after: int = 0) -> list[Change]:
        return self.workspace.changes(after)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until `predicate()` is truthy; return its value (TimeoutError otherwise)."""
        return self.workspace.wait(predicate, timeout)

    def wait_for_message(self, channel: str, thread_ts: str | None = None,
                         predicate: Callable[[dict], bool] | None = None, timeout: float = 5.0) -> dict:
        """The first message in the channel (or thread) matching `predicate` (default: posted by the app)."""
        match = predicate or (lambda m: m.get("bot_id") == self.bot_id)
        return self.wait_for(lambda: next((m for m in self.messages(channel, thread_ts) if match(m)), None), timeout)

    def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until the app holds `count` Socket Mode connections."""
        self.wait_for(lambda: self.hub.connected >= count, timeout)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
