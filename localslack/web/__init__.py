"""The workspace as a web page: a Slack-like client for people, served by the local Slack itself.

`GET /` is the page (plain HTML, CSS and one JavaScript file under `/static/`, no build step). It acts
only through the `/_local/` endpoints (the people's side of local_api.py) plus the few here that a
client needs and a test does not:

- `GET /_local/stream`: the workspace's change feed as Server-Sent Events (a `hello` first, then one
  event per change record, and a `status` every few seconds with the app's Socket Mode connections), so
  the page updates without reloading;
- `GET /_local/conversation`: what one person sees in a conversation (or one thread) in one answer:
  messages as Slack renders them, their ephemerals, the assistant thread statuses;
- `GET /_local/files/{id}/content`: a file's bytes for the person's browser (Slack's `url_private`
  needs the bot token; a signed-in person's client does not).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from ..errors import SlackError

if TYPE_CHECKING:
    from ..server import LocalSlack

STATIC = Path(__file__).parent / "static"
STATUS_EVERY_S = 5.0


def router(slack: LocalSlack) -> APIRouter:
    routes = APIRouter()
    ws = slack.workspace
    boot = secrets.token_hex(4)  # a restarted workspace is a new boot: the page reloads everything

    @routes.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    @routes.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return PlainTextResponse("Not Found", status_code=404)
        return FileResponse(path, headers={"cache-control": "no-cache"})

    @routes.get("/_local/conversation")
    def conversation(channel: str, user: str, thread_ts: str | None = None) -> dict:
        channel_id, user_id = slack.channel_id(channel), slack.user_id(user)
        with ws.lock:
            found = ws.thread(channel_id, thread_ts) if thread_ts else ws.top_level(channel_id)
            messages = [slack.conversations.render(m) for m in found]
            ephemerals = [e for e in ws.ephemerals if e["channel"] == channel_id and e["user"] == user_id
                          and (e.get("thread_ts") == thread_ts if thread_ts else not e.get("thread_ts"))]
            statuses = {key.split(":", 1)[1]: value for key, value in ws.thread_status.items()
                        if key.startswith(f"{channel_id}:")}
            return ws.copy({"channel": channel_id, "messages": messages, "ephemerals": ephemerals,
                            "thread_status": statuses})

    @routes.get("/_local/files/{file_id}/content")
    def file_content(file_id: str, download: bool = False) -> Response:
        with ws.lock:
            meta = ws.files.get(file_id)
            if meta is None or meta.get("is_deleted") or not meta.get("uploaded", True):
                return PlainTextResponse("File not found", status_code=404)
            try:
                content = ws.file_bytes(file_id)
            except (OSError, KeyError, SlackError):
                return PlainTextResponse("File not found", status_code=404)
            name, mimetype = meta["name"], meta["mimetype"]
        disposition = "attachment" if download else "inline"
        quoted = name.replace('"', "")
        return Response(content, media_type=mimetype,
                        headers={"content-disposition": f'{disposition}; filename="{quoted}"',
                                 "cache-control": "private, max-age=3600"})

    @routes.get("/_local/stream")
    async def stream(request: Request) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def push(change: dict) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, change)
            except RuntimeError:  # the server's loop is closed: nobody is listening any more
                pass

        unsubscribe = ws.subscribe(push)

        def status() -> str:
            return json.dumps({"socket_connections": slack.hub.connected})

        async def events():
            try:
                hello = {"boot": boot, "seq": ws.seq, "socket_connections": slack.hub.connected}
                yield f"retry: 1000\nevent: hello\ndata: {json.dumps(hello)}\n\n"
                waited = 0.0
                while not slack.stopping:
                    try:
                        change = await asyncio.wait_for(queue.get(), 0.5)
                    except asyncio.TimeoutError:
                        waited += 0.5
                        if waited >= STATUS_EVERY_S:
                            waited = 0.0
                            yield f"event: status\ndata: {status()}\n\n"
                        continue
                    yield f"id: {change['seq']}\ndata: {json.dumps(change, default=str)}\n\n"
            finally:
                unsubscribe()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    return routes
