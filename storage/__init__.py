"""What the bot knows, in one SQLite file (`bot.db` in the data dir, WAL), through sqlite-utils.

Nothing the bot needs after a restart lives only in memory: the datasets it reported, the effects it has
claimed (so a delivery Slack repeats, or a file that arrives as both `file_share` and `file_shared`, has its
effect once), and later the jobs and their threads. The listeners run on several threads, so one connection
is shared under a lock; SQLite in WAL mode keeps readers off the writer's back.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import sqlite_utils

CLAIM_PENDING = "pending"
CLAIM_DONE = "done"
JSON_COLUMNS = {"datasets": ("headers", "mapping", "report"), "jobs": ("options",)}
"""Columns kept as JSON text: `save` encodes them, every read decodes them."""


class Storage:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db = sqlite_utils.Database(connection)
        self.db.enable_wal()
        self._lock = threading.RLock()
        self._create_tables()

    def _create_tables(self) -> None:
        with self._lock:
            self.db["claims"].create(
                {"key": str, "state": str, "payload": str, "created_at": float, "done_at": float},
                pk="key",
                if_not_exists=True,
            )
            self.db["datasets"].create(
                {
                    "id": str,
                    "file_id": str,
                    "team_id": str,
                    "channel": str,
                    "thread_ts": str,
                    "user": str,
                    "filename": str,
                    "source_path": str,
                    "status": str,
                    "format": str,
                    "examples_read": int,
                    "examples": int,
                    "skipped": int,
                    "errors": int,
                    "warnings": int,
                    "content_hash": str,
                    "converted_path": str,
                    "headers": str,
                    "mapping": str,
                    "summary": str,
                    "report": str,
                    "report_ts": str,
                    "created_at": float,
                },
                pk="id",
                if_not_exists=True,
            )
            self.db["datasets"].create_index(["channel", "created_at"], if_not_exists=True)
            self.db["jobs"].create(
                {
                    "id": str,
                    "job_id": str,
                    "start_id": str,
                    "dataset_id": str,
                    "team_id": str,
                    "channel": str,
                    "thread_ts": str,
                    "user": str,
                    "base_model": str,
                    "options": str,
                    "status": str,
                    "status_ts": str,
                    "last_event_id": str,
                    "fine_tuned_model": str,
                    "error": str,
                    "created_at": float,
                    "finished_at": float,
                },
                pk="id",
                if_not_exists=True,
            )
            self.db["jobs"].create_index(["job_id"], if_not_exists=True)
            self.db["jobs"].create_index(["channel", "created_at"], if_not_exists=True)
            self.db["conversations"].create(
                {"id": int, "channel": str, "thread_ts": str, "role": str, "content": str, "ts": str,
                 "model": str, "user": str, "created_at": float},
                pk="id",
                if_not_exists=True,
            )
            self.db["conversations"].create_index(["channel", "thread_ts", "id"], if_not_exists=True)
            self.db["channel_models"].create(
                {"channel": str, "model": str, "system_message": str, "set_by": str, "set_at": float},
                pk="channel",
                if_not_exists=True,
            )
            self.db["chat_requests"].create({"user": str, "at": float}, if_not_exists=True)
            self.db["chat_requests"].create_index(["user", "at"], if_not_exists=True)

    # -- claims: each effect once ------------------------------------------------------------------------

    def claim(self, key: str, payload: dict | None = None) -> bool:
        """Take the right to perform the effect named `key`; False if it was taken before (by any delivery,
        before or after a restart). The payload says how to finish it if the bot dies half way."""
        with self._lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO claims (key, state, payload, created_at) VALUES (?, ?, ?, ?)",
                [key, CLAIM_PENDING, json.dumps(payload or {}), time.time()],
            )
            return cursor.rowcount == 1

    def release_claim(self, key: str) -> None:
        """Give back a claim whose effect failed half way (Slack refused it for now): the next try may take it."""
        with self._lock:
            self.db.execute("DELETE FROM claims WHERE key = ? AND state = ?", [key, CLAIM_PENDING])

    def finish_claim(self, key: str) -> None:
        with self._lock:
            self.db.execute("UPDATE claims SET state = ?, done_at = ? WHERE key = ?", [CLAIM_DONE, time.time(), key])

    def pending_claims(self, prefix: str) -> list[tuple[str, dict]]:
        """Effects claimed but never finished (the bot died), to finish at start-up."""
        rows = self.db.execute(
            "SELECT key, payload FROM claims WHERE state = ? AND key LIKE ? ORDER BY created_at",
            [CLAIM_PENDING, prefix + "%"],
        ).fetchall()
        return [(key, json.loads(payload)) for key, payload in rows]

    # -- datasets ------------------------------------------------------------------------------------------

    # -- rows: saved by id, JSON columns encoded, read back decoded ----------------------------------------

    def _save(self, table: str, id_prefix: str, fields: dict) -> str:
        fields.setdefault("id", id_prefix + uuid.uuid4().hex[:12])
        fields.setdefault("created_at", time.time())
        for key in JSON_COLUMNS[table]:
            if key in fields and not isinstance(fields[key], (str, type(None))):
                fields[key] = json.dumps(fields[key])
        with self._lock:
            self.db[table].upsert(fields, pk="id", alter=True)
        return fields["id"]

    def _rows(self, table: str, where: str, values: list, **options) -> list[dict]:
        rows = list(self.db[table].rows_where(where, values, **options))
        for row in rows:
            for key in JSON_COLUMNS[table]:
                if row.get(key):
                    row[key] = json.loads(row[key])
        return rows

    def _first(self, table: str, where: str, values: list, **options) -> dict | None:
        rows = self._rows(table, where, values, limit=1, **options)
        return rows[0] if rows else None

    # -- datasets ------------------------------------------------------------------------------------------

    def save_dataset(self, **fields) -> dict:
        return self.dataset(self._save("datasets", "ds_", fields))

    def dataset(self, dataset_id: str) -> dict | None:
        return self._first("datasets", "id = ?", [dataset_id])

    def dataset_for_file(self, file_id: str) -> dict | None:
        return self._first("datasets", "file_id = ?", [file_id], order_by="created_at")

    def datasets_in_channel(self, channel: str, limit: int = 20) -> list[dict]:
        return self._rows("datasets", "channel = ?", [channel], order_by="created_at desc", limit=limit)

    def datasets_of_user(self, user: str, limit: int = 20) -> list[dict]:
        return self._rows("datasets", "user = ?", [user], order_by="created_at desc", limit=limit)

    def latest_valid_dataset(self, channel: str) -> dict | None:
        return self._first("datasets", "channel = ? AND status = 'ok'", [channel], order_by="created_at desc")

    # -- jobs: a backend job and the thread that follows it --------------------------------------------------

    def save_job(self, **fields) -> dict:
        return self.job(self._save("jobs", "job_", fields))

    def job(self, key: str) -> dict | None:
        """A job by the bot's id or by the backend's job id (`ftjob-...`)."""
        return self._first("jobs", "id = ? OR job_id = ?", [key, key])

    def job_of_start(self, start_id: str) -> dict | None:
        return self._first("jobs", "start_id = ?", [start_id])

    def active_jobs(self) -> list[dict]:
        """Jobs whose thread still waits for its end: the poller follows these, after a restart too."""
        return self._rows("jobs", "finished_at IS NULL AND job_id IS NOT NULL", [], order_by="created_at")

    def unstarted_jobs(self) -> list[dict]:
        """Starts that died before the backend's job id was stored: adopted from the backend's metadata."""
        return self._rows("jobs", "finished_at IS NULL AND job_id IS NULL", [], order_by="created_at")

    def jobs_in_channel(self, channel: str, limit: int = 20) -> list[dict]:
        return self._rows("jobs", "channel = ?", [channel], order_by="created_at desc", limit=limit)

    def jobs_of_user(self, user: str, limit: int = 20) -> list[dict]:
        return self._rows("jobs", "user = ?", [user], order_by="created_at desc", limit=limit)

    # -- conversations with models: the bot's own record of each turn ---------------------------------------

    def add_turn(self, *, channel: str, thread_ts: str, role: str, content: str, ts: str | None = None,
                 model: str | None = None, user: str | None = None) -> None:
        with self._lock:
            self.db["conversations"].insert(
                {"channel": channel, "thread_ts": thread_ts, "role": role, "content": content, "ts": ts,
                 "model": model, "user": user, "created_at": time.time()}
            )

    def conversation(self, channel: str, thread_ts: str) -> list[dict]:
        """A thread's turns, oldest first; empty when the bot never talked there."""
        return list(self.db["conversations"].rows_where("channel = ? AND thread_ts = ?", [channel, thread_ts], order_by="id"))

    def conversation_model(self, channel: str, thread_ts: str) -> str | None:
        """The model a thread's conversation started with: it stays with the thread."""
        rows = list(self.db["conversations"].rows_where(
            "channel = ? AND thread_ts = ? AND model IS NOT NULL", [channel, thread_ts], order_by="id", limit=1))
        return rows[0]["model"] if rows else None

    def set_channel_model(self, channel: str, model: str, system_message: str | None, user: str) -> None:
        with self._lock:
            self.db["channel_models"].upsert(
                {"channel": channel, "model": model, "system_message": system_message, "set_by": user, "set_at": time.time()},
                pk="channel",
            )

    def channel_model(self, channel: str) -> dict | None:
        rows = list(self.db["channel_models"].rows_where("channel = ?", [channel]))
        return rows[0] if rows else None

    def latest_fine_tuned_model(self, *, channel: str | None = None, user: str | None = None) -> dict | None:
        """The newest succeeded job's row, in a channel or of a user."""
        where, value = ("channel = ?", channel) if channel is not None else ("user = ?", user)
        return self._first(
            "jobs", f"{where} AND fine_tuned_model IS NOT NULL AND status = 'succeeded'", [value],
            order_by="coalesce(finished_at, created_at) desc",
        )

    def job_of_model(self, model: str) -> dict | None:
        return self._first("jobs", "fine_tuned_model = ?", [model])

    def model_system_message(self, model: str) -> str | None:
        """The system message every training example of `model` shared, from its dataset's report."""
        job = self.job_of_model(model)
        dataset = self.dataset(job["dataset_id"]) if job and job.get("dataset_id") else None
        return ((dataset or {}).get("report") or {}).get("system_message")

    def record_chat_request(self, user: str, at: float) -> None:
        with self._lock:
            self.db["chat_requests"].insert({"user": user, "at": at})
            self.db.execute("DELETE FROM chat_requests WHERE at < ?", [at - 3600])

    def chat_requests_since(self, user: str, since: float) -> list[float]:
        """When `user` asked the models since `since`, oldest first (the per-user rate limit)."""
        rows = self.db.execute("SELECT at FROM chat_requests WHERE user = ? AND at >= ? ORDER BY at", [user, since])
        return [at for (at,) in rows.fetchall()]

