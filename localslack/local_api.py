"""`/_local/…`: every person action and query of LocalSlack as JSON over HTTP.

For the web page to come and for other processes (a bot's end-to-end test, `make run` scripts). Not
part of Slack's API, so it has no Slack auth; it listens on loopback only. Handlers are plain `def`s:
FastAPI runs them in a worker thread, where waiting for an app's ack does not block the server loop.
"""

from __future__ import annotations

import base64
import concurrent.futures
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from .errors import SlackError
from .events import DeliveryFailed
from .interactivity import Interaction

if TYPE_CHECKING:
    from .server import LocalSlack


class LocalError(Exception):
    pass


def router(slack: LocalSlack) -> APIRouter:
    routes = APIRouter(prefix="/_local")
    ws = slack.workspace

    def answered(interaction: Interaction, wait: bool) -> dict:
        result: dict[str, Any] = {"trigger_id": interaction.trigger_id, "response_url": interaction.response_url}
        if wait:
            try:
                result["ack"] = interaction.ack(slack.settings.ack_timeout + 1)
            except (DeliveryFailed, concurrent.futures.TimeoutError) as failure:
                result["error"] = str(failure) or "operation_timeout"
        return result

    @routes.get("/health")
    def health() -> dict:
        return {"ok": True}

    @routes.get("/workspace")
    def workspace() -> dict:
        with ws.lock:
            channels = [{k: v for k, v in c.items()} for c in ws.channels.values()]
            manifest = slack.settings.manifest
            commands = manifest.raw.get("features", {}).get("slash_commands", []) if manifest.raw else []
            return ws.copy({"team": ws.team, "app": ws.app, "users": list(ws.users.values()), "channels": channels,
                            "socket_connections": slack.hub.connected, "mode": "http" if slack.settings.events_url
                            else "socket", "commands": commands,
                            "home_tab": manifest.raw.get("features", {}).get("app_home", {}).get(
                                "home_tab_enabled", True) if manifest.raw else True})

    @routes.post("/users")
    def add_user(name: str = Body(...), real_name: str | None = Body(None)) -> dict:
        return {"id": slack.add_user(name, real_name)}

    @routes.post("/channels")
    def add_channel(name: str = Body(...), members: list[str] = Body([]), private: bool = Body(False),
                    with_bot: bool = Body(True)) -> dict:
        return {"id": slack.add_channel(name, members, private, with_bot)}

    @routes.post("/channels/{channel}/members")
    def join(channel: str, user: str = Body(..., embed=True)) -> dict:
        slack.join(channel, user)
        return {"ok": True}

    @routes.post("/messages")
    def post_message(channel: str = Body(...), user: str = Body(...), text: str = Body(...),
                     thread_ts: str | None = Body(None)) -> dict:
        return {"ts": slack.post_message(channel, user, text, thread_ts)}

    @routes.get("/messages")
    def messages(channel: str, thread_ts: str | None = None) -> dict:
        return {"messages": slack.messages(channel, thread_ts)}

    @routes.get("/ephemerals")
    def ephemerals(channel: str | None = None, user: str | None = None) -> dict:
        return {"ephemerals": slack.ephemerals(channel, user)}

    @routes.post("/files")
    def share_file(channel: str = Body(...), user: str = Body(...), filename: str = Body(...),
                   content_base64: str = Body(...), text: str = Body(""), thread_ts: str | None = Body(None),
                   mimetype: str | None = Body(None)) -> dict:
        file_id, ts = slack.share_file(channel, user, filename, base64.b64decode(content_base64), text, thread_ts,
                                       mimetype)
        return {"file_id": file_id, "ts": ts}

    @routes.get("/files")
    def list_files() -> dict:
        return {"files": slack.files()}

    @routes.delete("/files/{file_id}")
    def delete_file(file_id: str) -> dict:
        slack.delete_file(file_id)
        return {"ok": True}

    @routes.post("/commands")
    def slash_command(channel: str = Body(...), user: str = Body(...), command: str = Body(...),
                      text: str = Body(""), wait: bool = Body(True)) -> dict:
        return answered(slack.slash_command(channel, user, command, text), wait)

    @routes.post("/clicks")
    def click(user: str = Body(...), action_id: str = Body(...), channel: str | None = Body(None),
              message_ts: str | None = Body(None), view_id: str | None = Body(None), value: str | None = Body(None),
              wait: bool = Body(True)) -> dict:
        if view_id:
            return answered(slack.click_view(view_id, action_id, user, value), wait)
        if not (channel and message_ts):
            raise LocalError("a click needs channel and message_ts, or view_id")
        return answered(slack.click(channel, message_ts, action_id, user, value), wait)

    @routes.get("/views")
    def views(user: str) -> dict:
        return {"views": slack.views(user)}

    @routes.post("/views/{view_id}/submit")
    def submit_view(view_id: str, user: str = Body(...), values: dict = Body({})) -> dict:
        return slack.submit_view(view_id, user, values)

    @routes.post("/views/{view_id}/close")
    def close_view(view_id: str, user: str = Body(..., embed=True)) -> dict:
        slack.close_view(view_id, user)
        return {"ok": True}

    @routes.get("/home")
    def home(user: str) -> dict:
        return {"view": slack.home(user)}

    @routes.post("/home/open")
    def open_home(user: str = Body(..., embed=True)) -> dict:
        return {"event_id": slack.open_home(user)}

    @routes.post("/sockets/disconnect")
    def disconnect(reason: str = Body("refresh_requested", embed=True)) -> dict:
        slack.disconnect_sockets(reason)
        return {"ok": True}

    @routes.post("/sockets/drop")
    def drop() -> dict:
        slack.drop_sockets()
        return {"ok": True}

    @routes.post("/events/{event_id}/redeliver")
    def redeliver(event_id: str, reason: str | None = Body(None, embed=True)) -> dict:
        slack.redeliver(event_id, reason)
        return {"ok": True}

    @routes.post("/url_verification")
    def url_verification() -> dict:
        return {"ok": slack.verify_url()}

    @routes.post("/faults")
    def inject_fault(method: str = Body(...), error: str | None = Body(None), http_status: int | None = Body(None),
                     retry_after: int | None = Body(None), times: int = Body(1), delay: float | None = Body(None),
                     ) -> dict:
        slack.inject_fault(method, error, http_status, retry_after, times, delay)
        return {"ok": True}

    @routes.get("/deliveries")
    def deliveries() -> dict:
        return {"deliveries": [d.as_dict() for d in slack.deliveries]}

    @routes.get("/changes")
    def changes(after: int = 0) -> dict:
        return {"changes": slack.changes(after)}

    return routes


def error_handlers() -> dict:
    """Errors of person actions as `{"ok": false, "error": …}` with HTTP 400 (Slack codes kept)."""
    def slack_error(_request: Any, exc: SlackError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=400)

    def plain_error(_request: Any, exc: Exception) -> JSONResponse:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)

    return {SlackError: slack_error, LocalError: plain_error, ValueError: plain_error, KeyError: plain_error}
