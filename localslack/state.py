"""The workspace: team, users, conversations, messages, files, views; one object, one lock, one file.

Everything a person or the app changes lives here, in Slack's own JSON shapes, so the Web API, the
payloads and the (future) web page all read the same records. Every change is announced as a change
record (`subscribe`), numbered so another process can catch up (`changes(after=seq)`). With a
`data_dir`, the state is written to `state.json` after each change and file bytes to `files/<file id>`
(never a path built from the file's name); without one it stays in memory.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import SlackError
from .ids import TsClock, new_id

Change = dict[str, Any]
HUMANS = (("U0ALICE01", "alice", "Alice Doe"), ("U0BOB0001", "bob", "Bob Roe"))
_KEEP_CHANGES = 2000
SAVE_DELAY_S = 0.5


class Workspace:
    """All state, guarded by `lock` (re-entrant: callers hold it across a read-modify-write)."""

    def __init__(self, data_dir: Path | None = None, bot_name: str = "tunehouse") -> None:
        self.lock = threading.RLock()
        self.data_dir = Path(data_dir) if data_dir else None
        self.clock = TsClock()
        self._subscribers: list[Callable[[Change], None]] = []
        self._changed = threading.Condition(self.lock)
        self._changes: list[Change] = []
        self._seq = 0
        self._file_bytes: dict[str, bytes] = {}
        self._save_timer: threading.Timer | None = None
        self.triggers: dict[str, dict] = {}
        self.response_urls: dict[str, dict] = {}
        if self.data_dir and (self.data_dir / "state.json").exists():
            self._load()
        else:
            self._seed(bot_name)
            self._save()

    # ------------------------------------------------------------------ seed, load, save

    def _seed(self, bot_name: str) -> None:
        now = int(time.time())
        self.team = {"id": new_id("T"), "name": "Tunehouse Local", "domain": "tunehouse-local"}
        self.app = {"id": new_id("A"), "bot_id": new_id("B"), "bot_user_id": new_id("U"), "name": bot_name}
        self.verification_token = new_id("", 24).lower()
        self.users: dict[str, dict] = {}
        self.channels: dict[str, dict] = {}
        self.messages: dict[str, list[dict]] = {}
        self.ephemerals: list[dict] = []
        self.files: dict[str, dict] = {}
        self.views: dict[str, dict] = {}
        self.modal_stacks: dict[str, list[str]] = {}
        self.homes: dict[str, str] = {}
        self.thread_status: dict[str, dict] = {}
        self.credentials: dict[str, str] = {}  # generated tokens, kept so a restarted workspace keeps them
        self._add_user_record(self.app["bot_user_id"], bot_name, bot_name, is_bot=True)
        for user_id, name, real_name in HUMANS:
            self._add_user_record(user_id, name, real_name)
        humans = [u for u, _, _ in HUMANS]
        self.add_channel("fine-tuning", [*humans, self.app["bot_user_id"]], created=now)
        self.add_channel("general", humans, created=now, is_general=True)
        for user_id in humans:
            self.open_im(user_id)

    def _snapshot(self) -> dict:
        keys = ("team", "app", "verification_token", "users", "channels", "messages", "ephemerals", "files",
                "views", "modal_stacks", "homes", "thread_status", "response_urls", "credentials")
        return {key: getattr(self, key) for key in keys}

    def save(self) -> None:
        with self.lock:
            self._save_timer = None
            self._save()

    def _save_soon(self) -> None:
        """Persist within SAVE_DELAY_S, once for every change in that time: a streamed answer changes its
        message every second, and rewriting the whole state each time stalled the server (27 ms a write at
        1,000 messages, 121 ms at 5,000). `LocalSlack.stop()` saves what is still pending."""
        if self.data_dir and self._save_timer is None:
            self._save_timer = threading.Timer(SAVE_DELAY_S, self.save)
            self._save_timer.daemon = True
            self._save_timer.start()

    def _save(self) -> None:
        if not self.data_dir:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.data_dir / "state.json.tmp"
        tmp.write_text(json.dumps(self._snapshot()))
        os.replace(tmp, self.data_dir / "state.json")

    def _load(self) -> None:
        data = json.loads((self.data_dir / "state.json").read_text())
        for key, value in data.items():
            setattr(self, key, value)
        for messages in self.messages.values():
            for message in messages:
                self.clock.seen(message["ts"])

    # ------------------------------------------------------------------ change feed

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback(change)` on every change, on the thread that made it and possibly under the
        workspace lock: hand the record off (e.g. to an asyncio queue), never block or call back in.

        Returns a function that unsubscribes.
        """
        with self.lock:
            self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    @property
    def seq(self) -> int:
        """The number of the latest change record (0 before any, and again after a restart)."""
        with self.lock:
            return self._seq

    def changes(self, after: int = 0) -> list[Change]:
        with self.lock:
            return [c for c in self._changes if c["seq"] > after]

    def changed(self, kind: str, **data: Any) -> Change:
        """Record a change, persist, and wake waiters and subscribers."""
        with self.lock:
            self._seq += 1
            change = {"seq": self._seq, "kind": kind, "at": time.time(), **data}
            self._changes.append(change)
            del self._changes[:-_KEEP_CHANGES]
            self._save_soon()
            self._changed.notify_all()
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(change)
        return change

    def wait(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Block until `predicate()` is truthy (re-checked on each change); return its value.

        Raises:
            TimeoutError: still falsy after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s")
                # Also wake periodically: some conditions (deliveries, acks) change outside this feed.
                self._changed.wait(min(left, 0.05))

    # ------------------------------------------------------------------ users and conversations

    @property
    def bot_user_id(self) -> str:
        return self.app["bot_user_id"]

    def _add_user_record(self, user_id: str, name: str, real_name: str, is_bot: bool = False) -> dict:
        user = {
            "id": user_id, "team_id": self.team["id"], "name": name, "deleted": False, "real_name": real_name,
            "tz": "Europe/London", "tz_label": "British Summer Time", "tz_offset": 3600,
            "profile": {"real_name": real_name, "display_name": name, "real_name_normalized": real_name,
                        "display_name_normalized": name, "team": self.team["id"]},
            "is_admin": False, "is_owner": False, "is_bot": is_bot, "is_app_user": False, "updated": int(time.time()),
        }
        if is_bot:
            user["profile"]["bot_id"] = self.app["bot_id"]
        self.users[user_id] = user
        return user

    def add_user(self, name: str, real_name: str | None = None, user_id: str | None = None) -> dict:
        with self.lock:
            user = self._add_user_record(user_id or new_id("U"), name, real_name or name.title())
            self.open_im(user["id"])
            self.changed("user_added", user=user["id"])
            return user

    def user(self, user_id: str) -> dict:
        if user_id not in self.users:
            raise SlackError("user_not_found")
        return self.users[user_id]

    def user_by_name(self, name: str) -> dict:
        for user in self.users.values():
            if user["name"] == name or user["id"] == name:
                return user
        raise SlackError("user_not_found")

    def add_channel(self, name: str, members: list[str], private: bool = False, created: int | None = None,
                    is_general: bool = False) -> dict:
        with self.lock:
            if any(c.get("name") == name for c in self.channels.values()):
                raise SlackError("name_taken")
            channel = {
                "id": new_id("G" if private else "C"), "name": name, "name_normalized": name,
                "is_channel": not private, "is_group": private, "is_im": False, "is_mpim": False,
                "is_private": private, "is_archived": False, "is_general": is_general, "is_shared": False,
                "is_ext_shared": False, "is_org_shared": False, "created": created or int(time.time()),
                "creator": members[0] if members else self.bot_user_id,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
                "members": list(dict.fromkeys(members)),
            }
            self.channels[channel["id"]] = channel
            self.messages[channel["id"]] = []
            self.changed("channel_added", channel=channel["id"])
            return channel

    def open_im(self, user_id: str) -> dict:
        """The DM between `user_id` and the bot (created once)."""
        with self.lock:
            for channel in self.channels.values():
                if channel["is_im"] and channel["user"] == user_id:
                    return channel
            channel = {"id": new_id("D"), "is_im": True, "is_channel": False, "is_group": False, "is_mpim": False,
                       "is_private": True, "is_archived": False, "user": user_id, "created": int(time.time()),
                       "is_user_deleted": False, "members": [user_id, self.bot_user_id]}
            self.channels[channel["id"]] = channel
            self.messages[channel["id"]] = []
            return channel

    def join(self, channel_id: str, user_id: str) -> None:
        with self.lock:
            members = self.channel(channel_id)["members"]
            if user_id not in members:
                members.append(user_id)
                self.changed("member_joined", channel=channel_id, user=user_id)

    def channel(self, channel_id: str) -> dict:
        if channel_id not in self.channels:
            raise SlackError("channel_not_found")
        return self.channels[channel_id]

    def channel_by_name(self, name: str) -> dict:
        name = name.lstrip("#")
        for channel in self.channels.values():
            if channel.get("name") == name or channel["id"] == name:
                return channel
        raise SlackError("channel_not_found")

    @staticmethod
    def channel_type(channel: dict) -> str:
        """The `channel_type` of events: channel, group (private), im or mpim."""
        if channel["is_im"]:
            return "im"
        if channel["is_mpim"]:
            return "mpim"
        return "group" if channel["is_private"] else "channel"

    def is_member(self, channel_id: str, user_id: str) -> bool:
        return user_id in self.channel(channel_id)["members"]

    # ------------------------------------------------------------------ messages

    def add_message(self, channel_id: str, message: dict) -> dict:
        """Store a message (and, for a reply, update its parent's thread fields as Slack shows them)."""
        with self.lock:
            self.messages[channel_id].append(message)
            thread_ts = message.get("thread_ts")
            if thread_ts and thread_ts != message["ts"]:
                parent = self.find_message(channel_id, thread_ts, missing_ok=True)
                if parent is not None:
                    replies = [m for m in self.messages[channel_id]
                               if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts]
                    reply_users = list(dict.fromkeys(m.get("user") for m in replies if m.get("user")))
                    parent.update(thread_ts=thread_ts, reply_count=len(replies), reply_users=reply_users[:5],
                                  reply_users_count=len(reply_users), latest_reply=replies[-1]["ts"], is_locked=False,
                                  subscribed=False)
            return message

    def find_message(self, channel_id: str, ts: str, missing_ok: bool = False) -> dict | None:
        for message in self.messages.get(channel_id, []):
            if message["ts"] == ts:
                return message
        if missing_ok:
            return None
        raise SlackError("message_not_found")

    def remove_message(self, channel_id: str, ts: str) -> dict:
        with self.lock:
            message = self.find_message(channel_id, ts)
            self.messages[channel_id].remove(message)
            return message

    def top_level(self, channel_id: str) -> list[dict]:
        """What the channel shows: roots and thread replies also sent to the channel, oldest first."""
        return [m for m in self.messages.get(channel_id, [])
                if not m.get("thread_ts") or m["thread_ts"] == m["ts"] or m.get("subtype") == "thread_broadcast"]

    def thread(self, channel_id: str, thread_ts: str) -> list[dict]:
        """A thread: its root then its replies, oldest first."""
        return [m for m in self.messages.get(channel_id, []) if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts]

    # ------------------------------------------------------------------ files

    def file_bytes(self, file_id: str) -> bytes:
        if self.data_dir:
            return (self.data_dir / "files" / file_id).read_bytes()
        return self._file_bytes[file_id]

    def store_file_bytes(self, file_id: str, content: bytes) -> None:
        if self.data_dir:
            (self.data_dir / "files").mkdir(parents=True, exist_ok=True)
            (self.data_dir / "files" / file_id).write_bytes(content)
        else:
            self._file_bytes[file_id] = content

    def file(self, file_id: str) -> dict:
        meta = self.files.get(file_id)
        if meta is None:
            raise SlackError("file_not_found")
        if meta.get("is_deleted"):
            raise SlackError("file_deleted")
        return meta

    def delete_file(self, file_id: str) -> None:
        with self.lock:
            meta = self.file(file_id)
            meta["is_deleted"] = True
            if self.data_dir:
                (self.data_dir / "files" / file_id).unlink(missing_ok=True)
            else:
                self._file_bytes.pop(file_id, None)
            self.changed("file_deleted", file=file_id)

    # ------------------------------------------------------------------ snapshots for readers

    def copy(self, value: Any) -> Any:
        with self.lock:
            return copy.deepcopy(value)
