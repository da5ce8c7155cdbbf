"""Mentions, replies in the bot's threads, and direct messages: each answered in its thread by the channel's
model (bot/conversations.py).

Shared files are answered in handlers/files.py; every other message event is received (and so
acknowledged) here, including the `message_changed` that each of the bot's own updates produces. A
mention arrives twice, as `app_mention` and as `message`: the claim on `mention:<channel>:<ts>` answers it
once, whichever comes first, and whatever Slack redelivers.
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient

from bot.conversations import answer_in_thread, is_bot_conversation

log = logging.getLogger(__name__)

MENTION_CLAIM = "mention:"
ANSWERED_SUBTYPES = (None, "thread_broadcast")
"""A person's message (or thread reply also sent to the channel); edits, deletions, joins are not questions."""


def register(app: App, services) -> None:
    def converse(event: dict, client: WebClient, context) -> None:
        if event.get("bot_id") or event.get("user") in (None, context.bot_user_id):
            return
        key = f"{MENTION_CLAIM}{event['channel']}:{event['ts']}"
        question = dict(
            channel=event["channel"], thread_ts=event.get("thread_ts") or event["ts"], ts=event["ts"],
            user=event["user"], team=event.get("team") or context.team_id or "", text=event.get("text", ""),
            bot_user_id=context.bot_user_id, is_dm=event.get("channel_type") == "im",
        )
        if not services.storage.claim(key, question):
            return
        try:
            answer_in_thread(services, client, **question)
        finally:
            services.storage.finish_claim(key)

    @app.event("app_mention")
    def mentioned(event: dict, client: WebClient, context) -> None:
        converse(event, client, context)

    @app.event("message")
    def message(event: dict, client: WebClient, context) -> None:
        if event.get("subtype") not in ANSWERED_SUBTYPES:
            return
        thread_ts = event.get("thread_ts")
        addressed = (
            event.get("channel_type") == "im"
            or f"<@{context.bot_user_id}>" in event.get("text", "")
            or (thread_ts and thread_ts != event["ts"] and is_bot_conversation(services.storage, event["channel"], thread_ts))
        )
        if addressed:
            converse(event, client, context)


def resume(app: App, services) -> None:
    """Answer again the questions a previous run was answering when it was killed: Slack will not send them
    again (they were acknowledged). A half-written answer stays as it was cut; the whole one follows it."""
    for key, question in services.storage.pending_claims(MENTION_CLAIM):
        if question:
            log.info("answering again a question cut off by the last run (%s)", key)
            try:
                answer_in_thread(services, app.client, **question)
            except Exception:
                log.exception("could not answer %s again", key)
        services.storage.finish_claim(key)
