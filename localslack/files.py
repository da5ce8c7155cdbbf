"""Hosted files: the file object Slack shows, the upload URL of files.getUploadURLExternal, downloads.

Downloads behave as Slack's `files.slack.com`: the bytes only with `Authorization: Bearer <bot token>`
(and `files:read`); otherwise a 200 HTML sign-in page, which is how a bot that forgot its token finds
out (ChatGPT-in-Slack checks for `text/html`). Bytes are stored by file id, never by file name.
"""

from __future__ import annotations

import mimetypes
import time
from pathlib import PurePosixPath
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from .config import Settings
from .errors import SlackError
from .ids import new_id
from .state import Workspace

_FILETYPES = {  # extension -> (filetype, pretty_type), as Slack labels them
    "csv": ("csv", "CSV"), "tsv": ("tsv", "TSV"), "json": ("json", "JSON"), "jsonl": ("text", "Plain Text"),
    "txt": ("text", "Plain Text"), "md": ("markdown", "Markdown (raw)"), "png": ("png", "PNG"),
    "jpg": ("jpg", "JPEG"), "jpeg": ("jpg", "JPEG"), "gif": ("gif", "GIF"), "pdf": ("pdf", "PDF"),
    "xlsx": ("xlsx", "Excel Spreadsheet"), "xls": ("xls", "Excel Spreadsheet"), "py": ("python", "Python"),
    "zip": ("zip", "Zip"),
}
_SIGN_IN_PAGE = """<!DOCTYPE html><html><head><title>Slack</title></head>
<body><h1>Sign in to Tunehouse Local</h1><p>You need to sign in to see this page.</p></body></html>"""


def new_file(ws: Workspace, user: str, filename: str, title: str | None = None, mimetype: str | None = None,
             length: int | None = None, alt_txt: str | None = None) -> dict:
    """A file record (not yet uploaded when `length` is given: files.getUploadURLExternal's step)."""
    extension = PurePosixPath(filename).suffix.lstrip(".").lower()
    filetype, pretty = _FILETYPES.get(extension, ("binary", "Binary"))
    now = int(time.time())
    meta = {
        "id": new_id("F"), "created": now, "timestamp": now, "name": filename, "title": title or filename,
        "mimetype": mimetype or mimetypes.guess_type(filename)[0] or "application/octet-stream",
        "filetype": filetype, "pretty_type": pretty, "user": user, "user_team": ws.team["id"], "editable": False,
        "size": 0, "mode": "hosted", "is_external": False, "external_type": "", "is_public": False,
        "public_url_shared": False, "display_as_bot": False, "username": "", "has_rich_preview": False,
        "file_access": "visible", "media_display_type": "unknown", "channels": [], "groups": [], "ims": [],
        "shares": {}, "comments_count": 0, "is_starred": False,
        "upload_length": length, "uploaded": length is None, "is_deleted": False,
    }
    if alt_txt:
        meta["alt_txt"] = alt_txt
    ws.files[meta["id"]] = meta
    return meta


def file_object(ws: Workspace, settings: Settings, file_id: str, with_shares: bool = True) -> dict:
    """The file as Slack shows it in events and files.info, URLs pointing at this server."""
    meta = ws.file(file_id)
    public = {k: v for k, v in meta.items() if k not in ("upload_length", "uploaded", "is_deleted")}
    if not with_shares:
        public.pop("shares")
    base, team, name = settings.base_url, ws.team["id"], quote(meta["name"])
    public.update(
        url_private=f"{base}/files-pri/{team}-{file_id}/{name}",
        url_private_download=f"{base}/files-pri/{team}-{file_id}/download/{name}",
        permalink=f"{base}/files/{meta['user']}/{file_id}/{name}",
        permalink_public=f"{base}/files-pub/{team}-{file_id}",
    )
    return public


def record_share(ws: Workspace, file_id: str, channel: dict, user: str, ts: str, thread_ts: str | None) -> None:
    meta = ws.file(file_id)
    kind = "public" if ws.channel_type(channel) == "channel" else "private"
    share = {"reply_users": [], "reply_users_count": 0, "reply_count": 0, "ts": ts,
             "channel_name": channel.get("name", ""), "team_id": ws.team["id"], "share_user_id": user}
    if thread_ts:
        share["thread_ts"] = thread_ts
    meta["shares"].setdefault(kind, {}).setdefault(channel["id"], []).append(share)
    bucket = {"channel": "channels", "group": "groups"}.get(ws.channel_type(channel), "ims")
    if channel["id"] not in meta[bucket]:
        meta[bucket].append(channel["id"])
    meta["is_public"] = meta["is_public"] or kind == "public"


def router(ws: Workspace, settings: Settings) -> APIRouter:
    routes = APIRouter()

    @routes.post("/upload/v1/{file_id}")
    async def upload(file_id: str, request: Request) -> Response:
        """Step 2 of upload v2: the raw bytes (or a multipart form with one file), length checked."""
        content = await _upload_body(request)
        with ws.lock:
            meta = ws.files.get(file_id)
            if meta is None or meta["uploaded"]:
                return PlainTextResponse("invalid_upload_url", status_code=404)
            if len(content) != meta["upload_length"]:
                return PlainTextResponse("upload_length_mismatch", status_code=400)
            ws.store_file_bytes(file_id, content)
            meta.update(uploaded=True, size=len(content))
            ws.changed("file_uploaded", file=file_id)
        return PlainTextResponse(f"OK - {len(content)}")

    @routes.get("/files-pri/{team_file}/download/{name}")
    @routes.get("/files-pri/{team_file}/{name}")
    def download(team_file: str, name: str, request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        if authorization != f"Bearer {settings.bot_token}" or "files:read" not in settings.manifest.scopes:
            return HTMLResponse(_SIGN_IN_PAGE)
        team, _, file_id = team_file.partition("-")
        with ws.lock:
            meta = ws.files.get(file_id)
            if team != ws.team["id"] or meta is None or meta["is_deleted"] or not meta["uploaded"]:
                return PlainTextResponse("File not found", status_code=404)
            content = ws.file_bytes(file_id)
        disposition = "attachment" if "/download/" in request.url.path else "inline"
        return Response(content, media_type=meta["mimetype"],
                        headers={"content-disposition": f'{disposition}; filename="{meta["name"]}"'})

    return routes


async def _upload_body(request: Request) -> bytes:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        for value in form.values():
            if hasattr(value, "read"):
                return await value.read()
        raise SlackError("invalid_form_data")
    return await request.body()
