"""A file shared where the bot is: download it, read it as a dataset, answer once in the file's thread.

Slack announces one share twice (a `message` with subtype `file_share`, and `file_shared`) and repeats
deliveries it thinks were lost; the claim on `file:<id>` in storage makes the report happen once, across
restarts too. A claim left pending by a crash is finished at the next start (`resume`).
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import intake

log = logging.getLogger(__name__)


def register(app: App, services) -> None:
    @app.event({"type": "message", "subtype": "file_share"})
    def file_share_message(event: dict, client: WebClient, context) -> None:
        if event.get("bot_id") or event.get("user") == context.bot_user_id:
            return
        thread_ts = event.get("thread_ts") or event["ts"]
        for file in event.get("files", []):
            if file.get("mode") == "tombstone" or file.get("user") == context.bot_user_id:
                continue
            intake.receive(
                services, client, file_info=file, channel=event["channel"], thread_ts=thread_ts,
                user=event.get("user", ""), team=context.team_id or "",
            )

    @app.event("file_shared")
    def file_shared(event: dict, client: WebClient, context) -> None:
        if event.get("user_id") == context.bot_user_id:
            return
        try:
            file_info = client.files_info(file=event["file_id"])["file"]
        except SlackApiError as error:
            if error.response.get("error") not in ("file_not_found", "file_deleted"):
                raise
            return  # deleted at once: the share's `file_share` message, if any, is answered that it is gone
        if file_info.get("user") == context.bot_user_id:
            return
        thread_ts = intake.share_thread(file_info, event["channel_id"])
        if thread_ts is None:
            # The share's message is not visible yet; its `file_share` message event carries the thread.
            return
        intake.receive(
            services, client, file_info=file_info, channel=event["channel_id"], thread_ts=thread_ts,
            user=event.get("user_id", ""), team=context.team_id or "",
        )


def resume(app: App, services) -> None:
    intake.resume_pending(services, app.client)
