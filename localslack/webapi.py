"""The Web API: `POST /api/<method>` (form-encoded, multipart or JSON; GET query too), as slack.com.

Every answer is HTTP 200 `{"ok": true, …}` or `{"ok": false, "error": code}`, except rate limits
(HTTP 429, `Retry-After`, `ratelimited`) and injected faults. The token comes from
`Authorization: Bearer` or a `token` field: none is `not_authed`, an unknown one `invalid_auth`, the
wrong kind (`xapp-` for a bot method, `xoxb-` for apps.connections.open) `not_allowed_token_type`.
Methods that need a scope the manifest lacks answer `missing_scope` with `needed` and `provided`.
Each method below is registered with its rate-limit tier and scope, and named as Slack names it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .config import Settings
from .errors import SlackError
from .events import Dispatcher
from .files import file_object, new_file
from .interactivity import Interactions
from .limits import POST_MESSAGE_PER_CHANNEL, SPECIAL_PER_MINUTE, TIER_PER_MINUTE, Faults, RateLimiter
from .messages import Conversations
from .socket_mode import SocketHub
from .state import Workspace

STREAM_APPEND_MAX_CHARS = 12_000


@dataclass
class Method:
    handler: Callable[[WebAPI, Args], dict]
    per_minute: float
    scope: str | None
    token: str  # "bot" or "app"


METHODS: dict[str, Method] = {}


def method(name: str, tier: int | str, scope: str | None = None, token: str = "bot"):
    per_minute = SPECIAL_PER_MINUTE if tier == "special" else TIER_PER_MINUTE[int(tier)]

    def register(handler: Callable[[WebAPI, Args], dict]) -> Callable[[WebAPI, Args], dict]:
        METHODS[name] = Method(handler, per_minute, scope, token)
        return handler

    return register


def missing(name: str) -> SlackError:
    return SlackError("invalid_arguments", response_metadata={"messages": [f"[ERROR] missing required field: {name}"]})


class Args:
    """A method's arguments; nested values arrive JSON-encoded in forms and as-is in JSON bodies."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None or value == "" else value

    def required(self, name: str, error: str = "invalid_arguments") -> Any:
        value = self.get(name)
        if value is None:
            raise missing(name) if error == "invalid_arguments" else SlackError(error)
        return value

    def json(self, name: str, default: Any = None) -> Any:
        value = self.get(name, default)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise SlackError("invalid_arguments", response_metadata={
                    "messages": [f"[ERROR] {name} must be JSON"]}) from None
        return value

    def bool(self, name: str) -> bool:
        return str(self.get(name, "")).lower() in ("1", "true")

    def int(self, name: str, default: int) -> int:
        try:
            return int(self.get(name, default))
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None


class WebAPI:
    def __init__(self, ws: Workspace, settings: Settings, dispatcher: Dispatcher, hub: SocketHub,
                 conversations: Conversations, interactions: Interactions, limiter: RateLimiter,
                 faults: Faults) -> None:
        self.ws = ws
        self.settings = settings
        self.dispatcher = dispatcher
        self.hub = hub
        self.conversations = conversations
        self.interactions = interactions
        self.limiter = limiter
        self.faults = faults
        self.calls: deque[tuple[float, str]] = deque(maxlen=100_000)
        """(time, method) of every call received: what a workspace's access log would show."""

    # ------------------------------------------------------------------ the HTTP entry point

    def router(self) -> APIRouter:
        routes = APIRouter()

        @routes.api_route("/api/{name}", methods=["GET", "POST"])
        async def call(name: str, request: Request) -> JSONResponse:
            try:
                values = await _arguments(request)
            except SlackError as e:
                return JSONResponse(e.body())
            token = _bearer(request) or values.pop("token", None)
            status, body, headers = await self.call(name, token, values)
            return JSONResponse(body, status_code=status, headers=headers)

        return routes

    async def call(self, name: str, token: str | None, values: dict[str, Any]) -> tuple[int, dict, dict]:
        """(HTTP status, body, headers) for one Web API call."""
        self.calls.append((time.time(), name))
        headers = {"x-oauth-scopes": ",".join(self.settings.manifest.scopes)}
        spec = METHODS.get(name)
        if spec is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": name}, headers
        auth_error = self._authenticate(spec, token)
        if auth_error:
            return 200, {"ok": False, "error": auth_error}, headers
        if spec.token == "app":
            headers["x-oauth-scopes"] = "connections:write"
        fault = self.faults.take(name)
        if fault and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault and (fault.error or fault.http_status):
            return _fault_response(fault, headers)
        per_channel = name == "chat.postMessage"
        retry_after = self.limiter.retry_after(
            name, POST_MESSAGE_PER_CHANNEL[0] if per_channel else spec.per_minute,
            key=str(values.get("channel", "")) if per_channel else "",
            burst=POST_MESSAGE_PER_CHANNEL[1] if per_channel else None)
        if retry_after is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {**headers, "Retry-After": str(retry_after)}
        try:
            if spec.scope:
                self.need_scope(spec.scope)
            return 200, {"ok": True, **spec.handler(self, Args(values))}, headers
        except SlackError as e:
            return 200, e.body(), headers

    def _authenticate(self, spec: Method, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        if token not in (self.settings.bot_token, self.settings.app_token):
            return "invalid_auth"
        wanted = self.settings.app_token if spec.token == "app" else self.settings.bot_token
        return None if token == wanted else "not_allowed_token_type"

    def need_scope(self, *any_of: str) -> None:
        scopes = self.settings.manifest.scopes
        if not any(scope in scopes for scope in any_of):
            raise SlackError("missing_scope", needed=",".join(any_of), provided=",".join(scopes))

    # ------------------------------------------------------------------ helpers for methods

    def channel(self, value: Any) -> dict:
        """A channel id, a `#name`, or a user id (the app's DM with that user), as chat.postMessage takes."""
        if not value:
            raise SlackError("channel_not_found")
        value = str(value)
        if value in self.ws.channels:
            return self.ws.channels[value]
        if value.startswith("U") and value in self.ws.users:
            return self.ws.open_im(value)
        if value.startswith("#"):
            return self.ws.channel_by_name(value)
        raise SlackError("channel_not_found")

    def visible_channel(self, value: Any) -> dict:
        """A channel the bot may see: public ones always, private ones and DMs only as a member."""
        channel = self.channel(value)
        if channel["is_private"] and not self.ws.is_member(channel["id"], self.ws.bot_user_id):
            raise SlackError("channel_not_found")
        return channel

    def history_scope(self, channel: dict) -> None:
        kind = self.ws.channel_type(channel)
        self.need_scope({"channel": "channels:history", "group": "groups:history", "im": "im:history",
                         "mpim": "mpim:history"}[kind])

    def render_all(self, messages: list[dict]) -> list[dict]:
        return [self.conversations.render(m) for m in messages]


def _fault_response(fault: Any, headers: dict) -> tuple[int, dict, dict]:
    if fault.http_status == 429 or fault.error == "ratelimited":
        return 429, {"ok": False, "error": "ratelimited"}, {**headers, "Retry-After": str(fault.retry_after or 1)}
    return fault.http_status or 200, {"ok": False, "error": fault.error or "fatal_error"}, headers


def _bearer(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    return authorization[7:].strip() if authorization.lower().startswith("bearer ") else None


async def _arguments(request: Request) -> dict[str, Any]:
    values: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if request.method == "POST":
        if content_type.startswith("application/json"):
            body = await request.body()
            if body:
                try:
                    values.update(json.loads(body))
                except ValueError:
                    raise SlackError("invalid_json") from None
        elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            values.update({k: v for k, v in form.items() if isinstance(v, str)})
    return values


def _page(items: list[dict], args: Args, default_limit: int = 100) -> tuple[list[dict], dict]:
    """Cursor pagination as Slack does it: an opaque `next_cursor`, empty on the last page."""
    limit = max(1, min(args.int("limit", default_limit), 999))
    cursor = args.get("cursor")
    start = int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0
    page = items[start:start + limit]
    more = start + limit < len(items)
    next_cursor = base64.b64encode(f"next_ts:{start + limit}".encode()).decode() if more else ""
    return page, {"has_more": more, "response_metadata": {"next_cursor": next_cursor}}


def _within(messages: list[dict], args: Args) -> list[dict]:
    oldest, latest = float(args.get("oldest", 0)), float(args.get("latest", "inf"))
    inclusive = args.bool("inclusive")
    return [m for m in messages
            if (oldest < float(m["ts"]) < latest) or (inclusive and float(m["ts"]) in (oldest, latest))]


# ---------------------------------------------------------------------- auth and Socket Mode

@method("auth.test", "special")
def auth_test(api: WebAPI, args: Args) -> dict:
    ws = api.ws
    return {"url": f"{api.settings.base_url}/", "team": ws.team["name"], "user": ws.app["name"],
            "team_id": ws.team["id"], "user_id": ws.bot_user_id, "bot_id": ws.app["bot_id"],
            "is_enterprise_install": False}


@method("apps.connections.open", 1, token="app")
def apps_connections_open(api: WebAPI, args: Args) -> dict:
    url = api.hub.issue_url()
    if url is None:
        raise SlackError("too_many_websockets")
    return {"url": url}


# apps.connections.open is Tier 1 on paper, but reconnects are routine; slack-sdk notes it "rarely" limits.
METHODS["apps.connections.open"].per_minute = 20


# ---------------------------------------------------------------------- chat

@method("chat.postMessage", "special", scope="chat:write")
def chat_post_message(api: WebAPI, args: Args) -> dict:
    channel = api.channel(args.get("channel"))
    message = api.conversations.post_as_bot(
        channel["id"], args.get("text", ""), args.json("blocks"), thread_ts=args.get("thread_ts"),
        reply_broadcast=args.bool("reply_broadcast"), metadata=args.json("metadata"))
    return {"channel": channel["id"], "ts": message["ts"], "message": api.conversations.render(message)}


@method("chat.update", 3, scope="chat:write")
def chat_update(api: WebAPI, args: Args) -> dict:
    channel = api.channel(args.get("channel"))
    text, blocks = args.values.get("text"), args.json("blocks")
    if text is None and blocks is None and args.get("attachments") is None:
        raise SlackError("no_text")
    message = api.conversations.update_as_bot(channel["id"], args.required("ts", "message_not_found"), text, blocks,
                                              metadata=args.json("metadata"))
    return {"channel": channel["id"], "ts": message["ts"], "text": message["text"],
            "message": api.conversations.render(message)}


@method("chat.delete", 3, scope="chat:write")
def chat_delete(api: WebAPI, args: Args) -> dict:
    channel = api.channel(args.get("channel"))
    ts = args.required("ts", "message_not_found")
    api.conversations.delete(channel["id"], ts)
    return {"channel": channel["id"], "ts": ts}


@method("chat.postEphemeral", 4, scope="chat:write")
def chat_post_ephemeral(api: WebAPI, args: Args) -> dict:
    channel = api.channel(args.get("channel"))
    user = args.required("user", "user_not_found")
    api.ws.user(user)
    if not api.ws.is_member(channel["id"], api.ws.bot_user_id):
        raise SlackError("not_in_channel")
    if not api.ws.is_member(channel["id"], user):
        raise SlackError("user_not_in_channel")
    ephemeral = api.conversations.ephemeral(channel["id"], user, args.get("text", ""), args.json("blocks"),
                                            thread_ts=args.get("thread_ts"))
    return {"message_ts": ephemeral["ts"]}


@method("chat.getPermalink", "special")
def chat_get_permalink(api: WebAPI, args: Args) -> dict:
    channel = api.visible_channel(args.get("channel"))
    message = api.ws.find_message(channel["id"], args.required("message_ts", "message_not_found"))
    link = f"{api.settings.base_url}/archives/{channel['id']}/p{message['ts'].replace('.', '')}"
    if message.get("thread_ts") and message["thread_ts"] != message["ts"]:
        link += f"?thread_ts={message['thread_ts']}&cid={channel['id']}"
    return {"channel": channel["id"], "permalink": link}


# ---------------------------------------------------------------------- streaming (chat.*Stream)

def _stream_text(args: Args) -> tuple[str, list[dict]]:
    text = args.get("markdown_text", "")
    if len(text) > STREAM_APPEND_MAX_CHARS:
        raise SlackError("msg_too_long")
    chunks = args.json("chunks") or []
    text += "".join(c.get("text", "") for c in chunks if c.get("type") == "markdown_text")
    return text, chunks


@method("chat.startStream", 4, scope="chat:write")
def chat_start_stream(api: WebAPI, args: Args) -> dict:
    channel = api.channel(args.get("channel"))
    thread_ts = args.required("thread_ts")
    if not channel["is_im"] and not (args.get("recipient_user_id") and args.get("recipient_team_id")):
        raise SlackError("invalid_arguments", response_metadata={
            "messages": ["[ERROR] recipient_user_id and recipient_team_id are required outside DMs"]})
    text, chunks = _stream_text(args)
    message = api.conversations.post_as_bot(
        channel["id"], text, None, thread_ts=thread_ts, check=False,
        extra={"stream": {"state": "streaming", "chunks": chunks,
                          "recipient_user_id": args.get("recipient_user_id"),
                          "task_display_mode": args.get("task_display_mode", "timeline")}})
    return {"channel": channel["id"], "ts": message["ts"]}


def _streaming_message(api: WebAPI, args: Args) -> tuple[dict, dict]:
    channel = api.channel(args.get("channel"))
    message = api.ws.find_message(channel["id"], args.required("ts", "message_not_found"))
    if message.get("stream", {}).get("state") != "streaming":
        raise SlackError("message_not_in_streaming_state")
    return channel, message


@method("chat.appendStream", 4, scope="chat:write")
def chat_append_stream(api: WebAPI, args: Args) -> dict:
    with api.ws.lock:
        channel, message = _streaming_message(api, args)
        text, chunks = _stream_text(args)
        message["text"] += text
        message["stream"]["chunks"] += chunks
        api.ws.changed("message_streamed", channel=channel["id"], ts=message["ts"])
    return {"channel": channel["id"], "ts": message["ts"]}


@method("chat.stopStream", 4, scope="chat:write")
def chat_stop_stream(api: WebAPI, args: Args) -> dict:
    with api.ws.lock:
        channel, message = _streaming_message(api, args)
        text, chunks = _stream_text(args)
        blocks = args.json("blocks")
        message["text"] += text
        message["stream"].update(state="completed", chunks=message["stream"]["chunks"] + chunks)
        if blocks:
            message["blocks"] = api.conversations.check_content(message["text"], blocks)
        if args.json("metadata"):
            message["metadata"] = args.json("metadata")
        api.ws.changed("message_changed", channel=channel["id"], ts=message["ts"])
        return {"channel": channel["id"], "ts": message["ts"], "message": api.conversations.render(message)}


# ---------------------------------------------------------------------- reactions

@method("reactions.add", 3, scope="reactions:write")
def reactions_add(api: WebAPI, args: Args) -> dict:
    ws = api.ws
    with ws.lock:
        channel = api.channel(args.get("channel"))
        message = ws.find_message(channel["id"], args.required("timestamp", "message_not_found"))
        name = args.required("name", "invalid_name").strip(":")
        reaction = next((r for r in message.setdefault("reactions", []) if r["name"] == name), None)
        if reaction and ws.bot_user_id in reaction["users"]:
            raise SlackError("already_reacted")
        if reaction is None:
            reaction = {"name": name, "users": [], "count": 0}
            message["reactions"].append(reaction)
        reaction["users"].append(ws.bot_user_id)
        reaction["count"] += 1
        ws.changed("reaction_added", channel=channel["id"], ts=message["ts"], name=name)
    api.dispatcher.emit({"type": "reaction_added", "user": ws.bot_user_id, "reaction": name,
                         "item": {"type": "message", "channel": channel["id"], "ts": message["ts"]},
                         "item_user": message.get("user"), "event_ts": ws.clock.next()}, channel["id"])
    return {}


# ---------------------------------------------------------------------- files

@method("files.info", 4, scope="files:read")
def files_info(api: WebAPI, args: Args) -> dict:
    ws = api.ws
    with ws.lock:
        meta = ws.file(args.required("file", "file_not_found"))
        seen = meta["user"] == ws.bot_user_id or any(
            ws.is_member(c, ws.bot_user_id) for c in meta["channels"] + meta["groups"] + meta["ims"])
        if not seen:
            raise SlackError("file_not_found")
        return {"file": file_object(ws, api.settings, meta["id"]), "comments": [],
                "response_metadata": {"next_cursor": ""}}


@method("files.getUploadURLExternal", 4, scope="files:write")
def files_get_upload_url_external(api: WebAPI, args: Args) -> dict:
    filename = args.required("filename")
    length = args.int("length", -1)
    if length < 0:
        raise missing("length")
    with api.ws.lock:
        meta = new_file(api.ws, api.ws.bot_user_id, filename, length=length, alt_txt=args.get("alt_txt"))
    return {"upload_url": f"{api.settings.base_url}/upload/v1/{meta['id']}", "file_id": meta["id"]}


@method("files.completeUploadExternal", 4, scope="files:write")
def files_complete_upload_external(api: WebAPI, args: Args) -> dict:
    ws = api.ws
    listed = args.json("files")
    if not isinstance(listed, list) or not listed:
        raise missing("files")
    channel_id = args.get("channel_id") or (args.get("channels") or "").split(",")[0] or None
    with ws.lock:
        channel = api.channel(channel_id) if channel_id else None
        if channel and not ws.is_member(channel["id"], ws.bot_user_id):
            raise SlackError("not_in_channel")
        for item in listed:
            meta = ws.files.get(item.get("id", ""))
            if meta is None or meta["user"] != ws.bot_user_id:
                raise SlackError("file_not_found")
            if not meta["uploaded"]:
                raise SlackError("file_upload_not_found")
        for item in listed:
            if item.get("title"):
                ws.files[item["id"]]["title"] = item["title"]
        done = [{"id": item["id"], "title": ws.files[item["id"]]["title"]} for item in listed]
    if channel:
        ids = [item["id"] for item in listed]
        share = (channel["id"], args.get("initial_comment", ""), ids, args.get("thread_ts"), args.json("blocks"))
        api.dispatcher.loop.call_later(api.settings.share_delay, _share_uploaded, api, *share)
    return {"files": done}


def _share_uploaded(api: WebAPI, channel_id: str, comment: str, file_ids: list[str], thread_ts: str | None,
                    blocks: Any) -> None:
    """The asynchronous half of completeUploadExternal: the file_share message, then `file_shared`."""
    ws = api.ws
    api.conversations.post_as_bot(channel_id, comment, blocks, thread_ts=thread_ts, files=file_ids, check=False)
    for file_id in file_ids:
        api.dispatcher.emit({"type": "file_shared", "channel_id": channel_id, "file_id": file_id,
                             "user_id": ws.bot_user_id, "file": {"id": file_id}, "event_ts": ws.clock.next()},
                            channel_id)


# ---------------------------------------------------------------------- views

@method("views.open", 4)
def views_open(api: WebAPI, args: Args) -> dict:
    view = api.interactions.open_view(args.required("trigger_id"), args.json("view") or {})
    return {"view": view}


@method("views.push", 4)
def views_push(api: WebAPI, args: Args) -> dict:
    return {"view": api.interactions.push_view(args.required("trigger_id"), args.json("view") or {})}


@method("views.update", 4)
def views_update(api: WebAPI, args: Args) -> dict:
    view = api.interactions.update_view(args.json("view") or {}, view_id=args.get("view_id"),
                                        external_id=args.get("external_id"), hash=args.get("hash"))
    return {"view": view}


@method("views.publish", 4)
def views_publish(api: WebAPI, args: Args) -> dict:
    view = api.interactions.publish_home(args.required("user_id", "user_not_found"), args.json("view") or {},
                                         hash=args.get("hash"))
    return {"view": view}


# ---------------------------------------------------------------------- conversations and users

@method("conversations.info", 3)
def conversations_info(api: WebAPI, args: Args) -> dict:
    channel = api.visible_channel(args.get("channel"))
    kind = api.ws.channel_type(channel)
    api.need_scope({"channel": "channels:read", "group": "groups:read", "im": "im:read", "mpim": "mpim:read"}[kind])
    shown = {k: v for k, v in channel.items() if k != "members"}
    if channel["is_im"]:
        shown = {k: v for k, v in shown.items() if k in ("id", "created", "is_im", "user", "is_user_deleted",
                                                         "is_archived")}
        shown.update(is_org_shared=False, priority=0)
    else:
        shown["is_member"] = api.ws.is_member(channel["id"], api.ws.bot_user_id)
        if args.bool("include_num_members"):
            shown["num_members"] = len(channel["members"])
    return {"channel": shown}


@method("conversations.open", 3, scope="im:write")
def conversations_open(api: WebAPI, args: Args) -> dict:
    """The bot's DM with one person (a group DM of several is not supported here: `not_implemented`)."""
    users = [u for u in (args.get("users") or "").split(",") if u]
    if args.get("channel"):
        return {"channel": {"id": api.visible_channel(args.get("channel"))["id"]}}
    if not users:
        raise SlackError("users_list_not_supplied")
    if len(users) > 1:
        raise SlackError("not_implemented")
    with api.ws.lock:
        if users[0] not in api.ws.users:
            raise SlackError("user_not_found")
        channel = api.ws.open_im(users[0])
    return {"no_op": True, "already_open": True, "channel": {"id": channel["id"]}}


@method("conversations.history", 3)
def conversations_history(api: WebAPI, args: Args) -> dict:
    channel = api.visible_channel(args.get("channel"))
    api.history_scope(channel)
    if not api.ws.is_member(channel["id"], api.ws.bot_user_id):
        raise SlackError("not_in_channel")
    with api.ws.lock:
        newest_first = list(reversed(_within(api.ws.top_level(channel["id"]), args)))
        page, more = _page(api.render_all(newest_first), args)
    return {"messages": page, "pin_count": 0, **more}


@method("conversations.replies", 3)
def conversations_replies(api: WebAPI, args: Args) -> dict:
    channel = api.visible_channel(args.get("channel"))
    api.history_scope(channel)
    if not api.ws.is_member(channel["id"], api.ws.bot_user_id):
        raise SlackError("not_in_channel")
    ts = args.required("ts", "thread_not_found")
    with api.ws.lock:
        root = api.ws.find_message(channel["id"], ts, missing_ok=True)
        if root is None:
            raise SlackError("thread_not_found")
        thread_ts = root.get("thread_ts") or root["ts"]
        thread = api.ws.thread(channel["id"], thread_ts)
        parent, replies = thread[:1], _within(thread[1:], args)
        page, more = _page(api.render_all(parent + replies), args, default_limit=1000)
    return {"messages": page, **more}


@method("conversations.members", 4)
def conversations_members(api: WebAPI, args: Args) -> dict:
    channel = api.visible_channel(args.get("channel"))
    page, more = _page([{"id": m} for m in channel["members"]], args)
    return {"members": [m["id"] for m in page], "response_metadata": more["response_metadata"]}


@method("users.info", 4, scope="users:read")
def users_info(api: WebAPI, args: Args) -> dict:
    return {"user": api.ws.copy(api.ws.user(args.required("user", "user_not_found")))}


# ---------------------------------------------------------------------- assistant threads

@method("assistant.threads.setStatus", "special", scope="assistant:write")
def assistant_set_status(api: WebAPI, args: Args) -> dict:
    channel = api.channel(args.required("channel_id", "channel_not_found"))
    key = f"{channel['id']}:{args.required('thread_ts')}"
    with api.ws.lock:
        if args.get("status"):
            api.ws.thread_status[key] = {"status": args.get("status"),
                                         "loading_messages": args.json("loading_messages") or []}
        else:
            api.ws.thread_status.pop(key, None)
        api.ws.changed("thread_status", channel=channel["id"], thread_ts=args.get("thread_ts"),
                       status=args.get("status", ""))
    return {}


@method("assistant.threads.setSuggestedPrompts", "special", scope="assistant:write")
def assistant_set_suggested_prompts(api: WebAPI, args: Args) -> dict:
    channel = api.channel(args.required("channel_id", "channel_not_found"))
    prompts = args.json("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise missing("prompts")
    with api.ws.lock:
        api.ws.changed("suggested_prompts", channel=channel["id"], thread_ts=args.get("thread_ts"),
                       title=args.get("title", ""), prompts=prompts)
    return {}


@method("assistant.threads.setTitle", "special", scope="assistant:write")
def assistant_set_title(api: WebAPI, args: Args) -> dict:
    channel = api.channel(args.required("channel_id", "channel_not_found"))
    with api.ws.lock:
        api.ws.changed("thread_title", channel=channel["id"], thread_ts=args.required("thread_ts"),
                       title=args.required("title"))
    return {}

