"""Conversations: posting, editing and deleting messages, as a person or as the app, and the events
Slack sends for each.

A person's message arrives at the app as a `message` event (rich_text `blocks`, `client_msg_id`,
`channel_type`) and, when it mentions the bot in a channel, also as a separate `app_mention`. The app's
own posts come back to it as `message` events carrying its `bot_id` (Bolt drops those itself). Edits and
deletions arrive as `message_changed` / `message_deleted`.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import TYPE_CHECKING, Any

from .blocks import check_message_blocks
from .config import Settings
from .errors import SlackError
from .files import file_object, record_share
from .state import Workspace

if TYPE_CHECKING:
    from .events import Dispatcher

_TOKEN = re.compile(r"<([@#!])?([^>|]+)(?:\|([^>]*))?>")


def rich_text(text: str) -> list[dict]:
    """The `rich_text` block Slack's client attaches to what a person types (mentions and links kept)."""
    elements: list[dict] = []
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() > position:
            elements.append({"type": "text", "text": text[position:match.start()]})
        sigil, target, label = match.groups()
        if sigil == "@":
            elements.append({"type": "user", "user_id": target})
        elif sigil == "#":
            elements.append({"type": "channel", "channel_id": target})
        elif sigil == "!":
            elements.append({"type": "broadcast", "range": target})
        else:
            elements.append({"type": "link", "url": target, **({"text": label} if label else {})})
        position = match.end()
    if position < len(text):
        elements.append({"type": "text", "text": text[position:]})
    return [{"type": "rich_text", "block_id": uuid.uuid4().hex[:5],
             "elements": [{"type": "rich_text_section", "elements": elements}]}]


class Conversations:
    """Message operations shared by the Web API, response URLs and the person actions."""

    def __init__(self, ws: Workspace, settings: Settings, dispatcher: Dispatcher) -> None:
        self.ws = ws
        self.settings = settings
        self.dispatcher = dispatcher

    # ------------------------------------------------------------------ rendering

    def render(self, message: dict) -> dict:
        """The message as Slack shows it (file ids expanded into file objects)."""
        shown = copy.deepcopy(message)
        if "files" in shown:
            shown["files"] = [self._file_or_tombstone(f) for f in shown["files"]]
        shown.pop("stream", None)
        return shown

    def _file_or_tombstone(self, file_id: str) -> dict:
        try:
            return file_object(self.ws, self.settings, file_id, with_shares=False)
        except SlackError:
            return {"id": file_id, "mode": "tombstone"}

    def message_event(self, message: dict, channel: dict) -> dict:
        event = {**self.render(message), "channel": channel["id"], "event_ts": message["ts"],
                 "channel_type": self.ws.channel_type(channel)}
        return event

    # ------------------------------------------------------------------ a person

    def post_as_person(self, channel_id: str, user: str, text: str, thread_ts: str | None = None,
                       files: list[str] | None = None) -> dict:
        ws = self.ws
        with ws.lock:
            channel = ws.channel(channel_id)
            ws.user(user)
            if not ws.is_member(channel_id, user):
                raise SlackError("not_in_channel")
            thread_ts = self._thread_root(channel_id, thread_ts)
            message: dict[str, Any] = {"type": "message", "text": text, "user": user, "ts": ws.clock.next(),
                                       "team": ws.team["id"], "client_msg_id": str(uuid.uuid4())}
            if text:
                message["blocks"] = rich_text(text)
            if files:
                message.update(subtype="file_share", files=files, upload=False, display_as_bot=False)
            if thread_ts:
                message.update(thread_ts=thread_ts, parent_user_id=ws.find_message(channel_id, thread_ts)["user"])
            ws.add_message(channel_id, message)
            for file_id in files or []:
                record_share(ws, file_id, channel, user, message["ts"], thread_ts)
            ws.changed("message_posted", channel=channel_id, ts=message["ts"], thread_ts=thread_ts)
            event = self.message_event(message, channel)
        self.dispatcher.emit(event, channel_id)
        if f"<@{ws.bot_user_id}>" in text and not channel["is_im"]:
            mention = {k: v for k, v in event.items() if k not in ("subtype", "channel_type", "files", "upload",
                                                                   "display_as_bot", "parent_user_id")}
            self.dispatcher.emit({**mention, "type": "app_mention"}, channel_id)
        for file_id in files or []:
            self.dispatcher.emit({"type": "file_shared", "channel_id": channel_id, "file_id": file_id,
                                  "user_id": user, "file": {"id": file_id}, "event_ts": ws.clock.next()}, channel_id)
        return message

    # ------------------------------------------------------------------ the app

    def check_content(self, text: str | None, blocks: Any, attachments: Any = None) -> list[dict] | None:
        """Slack's checks on what the app posts: `no_text`, `msg_too_long`, `invalid_blocks`."""
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        if text and len(text) > self.settings.msg_max_chars:
            raise SlackError("msg_too_long")
        return check_message_blocks(blocks) if blocks else None

    def post_as_bot(self, channel_id: str, text: str = "", blocks: Any = None, thread_ts: str | None = None,
                    reply_broadcast: bool = False, metadata: dict | None = None, files: list[str] | None = None,
                    extra: dict | None = None, check: bool = True, require_member: bool = True) -> dict:
        """Post as the app (chat.postMessage and friends). `require_member=False` for what Slack posts
        on the app's behalf where it is not a member (a slash command's in_channel response)."""
        ws = self.ws
        with ws.lock:
            channel = ws.channel(channel_id)
            if channel.get("is_archived"):
                raise SlackError("is_archived")
            if require_member and not ws.is_member(channel_id, ws.bot_user_id):
                raise SlackError("not_in_channel")
            checked = self.check_content(text, blocks) if check else blocks
            thread_ts = self._thread_root(channel_id, thread_ts)
            bot = ws.app
            message: dict[str, Any] = {
                "type": "message", "text": text or "", "user": bot["bot_user_id"], "bot_id": bot["bot_id"],
                "app_id": bot["id"], "ts": ws.clock.next(), "team": ws.team["id"],
                "bot_profile": {"id": bot["bot_id"], "app_id": bot["id"], "name": bot["name"], "deleted": False,
                                "team_id": ws.team["id"], "icons": {}},
            }
            if checked:
                message["blocks"] = checked
            if metadata:
                message["metadata"] = metadata
            if files:
                message.update(subtype="file_share", files=files, upload=True, display_as_bot=False)
            if thread_ts:
                parent = ws.find_message(channel_id, thread_ts, missing_ok=True)
                message.update(thread_ts=thread_ts, parent_user_id=parent["user"] if parent else bot["bot_user_id"])
                if reply_broadcast:
                    message["subtype"] = "thread_broadcast"
                    message["root"] = copy.deepcopy(parent) if parent else None
                ws.thread_status.pop(f"{channel_id}:{thread_ts}", None)
            message.update(extra or {})
            ws.add_message(channel_id, message)
            for file_id in files or []:
                record_share(ws, file_id, channel, bot["bot_user_id"], message["ts"], thread_ts)
            ws.changed("message_posted", channel=channel_id, ts=message["ts"], thread_ts=thread_ts)
            event = self.message_event(message, channel)
        self.dispatcher.emit(event, channel_id)
        return message

    def update_as_bot(self, channel_id: str, ts: str, text: str | None, blocks: Any, metadata: dict | None = None,
                      check: bool = True) -> dict:
        ws = self.ws
        with ws.lock:
            channel = ws.channel(channel_id)
            message = ws.find_message(channel_id, ts)
            if message.get("bot_id") != ws.app["bot_id"]:
                raise SlackError("cant_update_message")
            if check and (text is not None or blocks is not None):
                checked = self.check_content(text if text is not None else message.get("text"),
                                             blocks if blocks is not None else message.get("blocks"))
            else:
                checked = blocks
            previous = copy.deepcopy(message)
            if text is not None:
                message["text"] = text
            if blocks is not None:
                message["blocks"] = checked or []
            if metadata is not None:
                message["metadata"] = metadata
            message["edited"] = {"user": ws.bot_user_id, "ts": ws.clock.next()}
            ws.changed("message_changed", channel=channel_id, ts=ts)
            event = self._change_event("message_changed", channel, message=self.render(message),
                                       previous_message=self.render(previous))
        self.dispatcher.emit(event, channel_id)
        return message

    def delete(self, channel_id: str, ts: str, by_bot: bool = True) -> dict:
        ws = self.ws
        with ws.lock:
            channel = ws.channel(channel_id)
            message = ws.find_message(channel_id, ts)
            if by_bot and message.get("bot_id") != ws.app["bot_id"]:
                raise SlackError("cant_delete_message")
            ws.remove_message(channel_id, ts)
            ws.changed("message_deleted", channel=channel_id, ts=ts)
            event = self._change_event("message_deleted", channel, deleted_ts=ts, previous_message=self.render(message))
        self.dispatcher.emit(event, channel_id)
        return message

    def _change_event(self, subtype: str, channel: dict, **fields: Any) -> dict:
        ts = self.ws.clock.next()
        return {"type": "message", "subtype": subtype, "hidden": True, "channel": channel["id"], "ts": ts,
                "event_ts": ts, "channel_type": self.ws.channel_type(channel), **fields}

    def ephemeral(self, channel_id: str, user: str, text: str = "", blocks: Any = None,
                  thread_ts: str | None = None, source: str = "chat.postEphemeral", check: bool = True) -> dict:
        """An ephemeral message: only `user` sees it; no event is sent for it, as in Slack."""
        ws = self.ws
        with ws.lock:
            checked = self.check_content(text, blocks) if check else blocks
            ephemeral = {"type": "message", "subtype": "bot_message", "channel": channel_id, "user": user,
                         "ts": ws.clock.next(), "text": text or "", "bot_id": ws.app["bot_id"],
                         "is_ephemeral": True, "source": source}
            if checked:
                ephemeral["blocks"] = checked
            if thread_ts:
                ephemeral["thread_ts"] = thread_ts
            ws.ephemerals.append(ephemeral)
            ws.changed("ephemeral", channel=channel_id, user=user, ts=ephemeral["ts"])
            return ephemeral

    def _thread_root(self, channel_id: str, thread_ts: str | None) -> str | None:
        """A reply to a reply goes into the root's thread, as in Slack."""
        if not thread_ts:
            return None
        parent = self.ws.find_message(channel_id, thread_ts, missing_ok=True)
        if parent is not None and parent.get("thread_ts") and parent["thread_ts"] != parent["ts"]:
            return parent["thread_ts"]
        return thread_ts
