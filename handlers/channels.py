"""`SLACK_ALLOWED_CHANNELS`: where the bot works. Everything Slack sends from another channel stops here, in
one middleware ahead of every listener, and whoever addressed the bot there is told once, politely, where it
works: a slash command in its acknowledgement, a mention or a shared file in an ephemeral message.

Direct messages with the bot are not channels: they always work.
"""

from __future__ import annotations

import json
import logging
import threading

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks

log = logging.getLogger(__name__)


def register(app: App, services) -> None:
    settings = services.settings
    if not settings.allowed_channels:
        return

    @app.middleware
    def only_allowed_channels(body: dict, context, client: WebClient, next):
        channel = context.channel_id
        if channel is None or settings.works_in(channel):
            return next()
        text = blocks.elsewhere_text(settings.allowed_channels)
        if body.get("command"):
            return BoltResponse(status=200, body=json.dumps({"response_type": "ephemeral", "text": text}),
                                headers={"content-type": "application/json"})
        user, key = _addressed_by(body)
        if user and services.storage.claim(key):
            # After the acknowledgement: a Web API call must not hold up Slack's 3 seconds.
            threading.Thread(target=_tell, args=(services, client, channel, user, text, key), daemon=True).start()
        return BoltResponse(status=200, body="")


def _addressed_by(body: dict) -> tuple[str | None, str]:
    """(who addressed the bot, the claim that tells them once) for a mention, a shared file or a click; (None,
    "") for what merely happened in the channel. A mention also arrives as a `message`: only `app_mention`
    answers it, and a file announced twice is claimed per file."""
    event = body.get("event") or {}
    if body.get("type") == "block_actions":
        return body["user"]["id"], f"declined:action:{body.get('trigger_id')}"
    if event.get("type") == "app_mention":
        return event.get("user"), f"declined:mention:{event.get('channel')}:{event.get('ts')}"
    if event.get("subtype") == "file_share" and not event.get("bot_id"):
        files = ",".join(sorted(file.get("id", "") for file in event.get("files", [])))
        return event.get("user"), f"declined:file:{event.get('channel')}:{files}"
    return None, ""


def _tell(services, client: WebClient, channel: str, user: str, text: str, key: str) -> None:
    try:
        client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as error:
        log.warning("could not tell %s where the bot works: %s", user, error.response.get("error"))
    services.storage.finish_claim(key)
