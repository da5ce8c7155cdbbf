"""Uploads: one file sent in parts, then completed into a File (or cancelled), all scoped to a project.

A part's row is written after its blob is complete on disk; completing writes the File's blob first, then
in one transaction adds the File and marks the upload completed, so a crash never shows half of either.
"""

from __future__ import annotations

import time

from sqlalchemy import select, update

from ..errors import InvalidRequest, NotFound
from ..protocol.files import Upload, UploadPart
from . import files as file_store
from .blobs import LocalBlobStore
from .db import Database, FileRecord, UploadPartRecord, UploadRecord

LIFETIME_SECONDS = 3600
"""A pending upload expires an hour after its creation, as OpenAI's do."""


def part_key(upload_id: str, part_id: str) -> str:
    return f"uploads/{upload_id}/{part_id}"


def status(record: UploadRecord) -> str:
    if record.status == "pending" and time.time() >= record.expires_at:
        return "expired"
    return record.status


def to_wire(record: UploadRecord, file: FileRecord | None = None) -> Upload:
    return Upload(id=record.id, bytes=record.bytes, created_at=record.created_at, expires_at=record.expires_at,
                  filename=record.filename, purpose=record.purpose, status=status(record),
                  file=file_store.to_wire(file) if file is not None else None)


def part_to_wire(record: UploadPartRecord) -> UploadPart:
    return UploadPart(id=record.id, created_at=record.created_at, upload_id=record.upload_id)


def get_upload(db: Database, project: str, upload_id: str) -> UploadRecord:
    """Raises NotFound, also for another project's upload."""
    with db.session() as session:
        record = session.scalar(select(UploadRecord).where(UploadRecord.project == project,
                                                           UploadRecord.id == upload_id))
    if record is None:
        raise NotFound(f"No such Upload object: {upload_id}", param="upload_id")
    return record


def require_pending(record: UploadRecord) -> None:
    current = status(record)
    if current != "pending":
        raise InvalidRequest(f"Upload {record.id} is {current}: it takes no more parts and cannot be completed.",
                             param="upload_id")


def parts_in_order(db: Database, upload_id: str, part_ids: list[str]) -> list[UploadPartRecord]:
    """The named parts of this upload in the order given; a part named twice or not of this upload is an error."""
    if not part_ids:
        raise InvalidRequest("`part_ids` must name at least one part.", param="part_ids")
    seen = set()
    for part_id in part_ids:
        if part_id in seen:
            raise InvalidRequest(f"Part {part_id} is listed twice in `part_ids`.", param="part_ids")
        seen.add(part_id)
    with db.session() as session:
        found = {part.id: part for part in session.scalars(
            select(UploadPartRecord).where(UploadPartRecord.upload_id == upload_id,
                                           UploadPartRecord.id.in_(part_ids)))}
    for part_id in part_ids:
        if part_id not in found:
            raise InvalidRequest(f"No part {part_id} was added to upload {upload_id}.", param="part_ids")
    return [found[part_id] for part_id in part_ids]


def complete(db: Database, record: UploadRecord, file: FileRecord) -> UploadRecord:
    """Add the File and mark the upload completed, together; fails if the upload stopped being pending."""
    with db.session() as session:
        changed = session.execute(
            update(UploadRecord).where(UploadRecord.id == record.id, UploadRecord.status == "pending")
            .values(status="completed", file_id=file.id)).rowcount
        if changed != 1:
            raise InvalidRequest(f"Upload {record.id} was completed or cancelled meanwhile.", param="upload_id")
        session.add(file)
    record.status, record.file_id = "completed", file.id
    return record


def cancel(db: Database, blobs: LocalBlobStore, record: UploadRecord) -> UploadRecord:
    require_pending(record)
    with db.session() as session:
        changed = session.execute(
            update(UploadRecord).where(UploadRecord.id == record.id, UploadRecord.status == "pending")
            .values(status="cancelled")).rowcount
    if changed != 1:
        raise InvalidRequest(f"Upload {record.id} was completed or cancelled meanwhile.", param="upload_id")
    record.status = "cancelled"
    discard_parts(blobs, record.id)
    return record


def discard_parts(blobs: LocalBlobStore, upload_id: str) -> None:
    """The parts' bytes, once the upload is completed or cancelled (their rows stay, as a record)."""
    blobs.delete(f"uploads/{upload_id}")


def completed_file(db: Database, record: UploadRecord) -> FileRecord | None:
    if record.file_id is None:
        return None
    with db.session() as session:
        return session.scalar(select(FileRecord).where(FileRecord.id == record.file_id))
