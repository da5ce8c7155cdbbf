"""Metadata tables and the database handle.

One SQLAlchemy 2 code path for SQLite (default, a file in the data dir) and Postgres (by URL). Every row that
belongs to a user carries its `project`; queries filter on it, so another project's objects do not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import JSON, BigInteger, Float, Integer, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 of the secret; the secret itself is shown once and never stored."""
    redacted: Mapped[str] = mapped_column(String(32))
    """`sk-th-ab...wxyz`, enough to tell keys apart in listings and messages."""
    created_at: Mapped[int] = mapped_column(BigInteger)


class FileRecord(Base):
    __tablename__ = "files"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    """Insertion order: a total order for listing and `after=` cursors (created_at has one-second ties)."""
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="processed")
    status_details: Mapped[str | None] = mapped_column(Text, nullable=True)


class UploadRecord(Base):
    """A file arriving in parts (`/v1/uploads`); completing it creates a FileRecord named by `file_id`."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    file_expires_after: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """Seconds after its creation that the completed File expires, if the client asked for it."""
    status: Mapped[str] = mapped_column(String(16))
    """`pending`, `completed` or `cancelled`; a pending upload past `expires_at` reads as `expired`."""
    file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class UploadPartRecord(Base):
    """One part's bytes are the blob `uploads/{upload_id}/{id}`; the row is written after the blob."""

    __tablename__ = "upload_parts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    upload_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    """A fine-tuning job. `status` is OpenAI's; `worker_id` says which worker process holds it."""

    __tablename__ = "jobs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    project: Mapped[str] = mapped_column(String(128), index=True)
    model: Mapped[str] = mapped_column(String(256))
    """The model name the client gave (an alias stays an alias)."""
    base_model: Mapped[str] = mapped_column(String(256))
    """The catalog base it resolved to at create time."""
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    model_suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    output_model: Mapped[str] = mapped_column(String(512))
    """`ft:{model}:{project}:{suffix}:{id8}`, exposed as fine_tuned_model once the job succeeds."""
    method_type: Mapped[str] = mapped_column(String(32), default="supervised")
    hyperparameters: Mapped[dict] = mapped_column(JSON)
    """As requested: each value a number or "auto"; replaced by the resolved values when training starts."""
    seed: Mapped[int] = mapped_column(BigInteger)
    metadata_: Mapped[dict | None] = mapped_column("metadata", JSON, nullable=True)
    integrations: Mapped[list | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    result_files: Mapped[list] = mapped_column(JSON, default=list)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    estimated_finish: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    model_deleted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """Set by `DELETE /v1/models/{fine-tuned model}`: the model (and its checkpoints) no longer answer."""
    worker_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class JobEvent(Base):
    __tablename__ = "job_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """For metrics events: lets a resumed run drop the events of steps it is about to redo."""


class JobCheckpoint(Base):
    __tablename__ = "job_checkpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    step_number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict] = mapped_column(JSON)
    model_name: Mapped[str] = mapped_column(String(600), index=True)
    """`{fine-tuned model}:ckpt-step-{N}`."""
    path: Mapped[str] = mapped_column(Text)
    """The PEFT adapter folder, relative to the data dir."""


class CatalogEntry(Base):
    """A base model (a local Hugging Face folder) or an alias that points to one."""

    __tablename__ = "catalog"

    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "base" | "alias"
    target: Mapped[str | None] = mapped_column(Text, nullable=True)
    """For a base: its folder, or `builtin:` for the embedded default. For an alias: the base's name."""
    created_at: Mapped[int] = mapped_column(BigInteger)


class Setting(Base):
    """Small persistent facts, e.g. that the catalog's default aliases were seeded once."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss
    cursor.execute("PRAGMA busy_timeout=30000")  # several processes (server, workers) share the file
    cursor.close()


class Database:
    """The engine plus a session factory; `create_all` makes missing tables (idempotent)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        Base.metadata.create_all(self.engine)

    def add(self, record: Base) -> Base:
        """Insert one row in a transaction of its own; returns it."""
        with self.session() as session:
            session.add(record)
        return record

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any exception."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
