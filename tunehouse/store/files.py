"""File records: create, list with cursors, get, delete, all scoped to a project.

A record is only written after its blob is complete on disk, so a listed file always has all its bytes.
"""

from __future__ import annotations

import time

from sqlalchemy import or_, select

from ..errors import InvalidRequest, NotFound
from ..protocol.files import FileObject
from .blobs import LocalBlobStore
from .db import Database, FileRecord


def blob_key(file_id: str) -> str:
    return f"files/{file_id}"


def to_wire(record: FileRecord) -> FileObject:
    return FileObject(
        id=record.id,
        bytes=record.bytes,
        created_at=record.created_at,
        expires_at=record.expires_at,
        filename=record.filename,
        purpose=record.purpose,
        status=record.status,
        status_details=record.status_details,
    )


def _live(project: str):
    now = int(time.time())
    return (
        select(FileRecord)
        .where(FileRecord.project == project)
        .where(or_(FileRecord.expires_at.is_(None), FileRecord.expires_at > now))
    )


def add_file(db: Database, record: FileRecord) -> FileRecord:
    return db.add(record)


def get_file(db: Database, project: str, file_id: str) -> FileRecord:
    """Raises NotFound, also for another project's file (it does not exist for this caller)."""
    with db.session() as session:
        record = session.scalar(_live(project).where(FileRecord.id == file_id))
    if record is None:
        raise NotFound(f"No such File object: {file_id}", param="id")
    return record


def list_files(
    db: Database, project: str, *, purpose: str | None, limit: int, order: str, after: str | None
) -> tuple[list[FileRecord], bool]:
    """A page of files (newest first for `desc`) and whether more follow."""
    query = _live(project)
    if purpose:
        query = query.where(FileRecord.purpose == purpose)
    descending = order == "desc"
    if after:
        with db.session() as session:
            cursor = session.scalar(select(FileRecord.seq).where(FileRecord.project == project, FileRecord.id == after))
        if cursor is None:
            raise InvalidRequest(f"No such File object to page after: {after}", param="after")
        query = query.where(FileRecord.seq < cursor if descending else FileRecord.seq > cursor)
    query = query.order_by(FileRecord.seq.desc() if descending else FileRecord.seq.asc()).limit(limit + 1)
    with db.session() as session:
        rows = list(session.scalars(query))
    return rows[:limit], len(rows) > limit


def delete_file(db: Database, blobs: LocalBlobStore, project: str, file_id: str) -> None:
    with db.session() as session:
        record = session.scalar(_live(project).where(FileRecord.id == file_id))
        if record is None:
            raise NotFound(f"No such File object: {file_id}", param="id")
        session.delete(record)
    blobs.delete(blob_key(file_id))
