"""Blobs no row points to: what a crash between writing a blob and recording it leaves behind.

Every writer stores the blob first and its row second, so such a blob holds nothing a client was told
about. The API server removes them when it starts, once they are old enough that no process of the data
dir can still be about to record them.
"""

from __future__ import annotations

import time

from sqlalchemy import select

from . import uploads as upload_store
from .blobs import LocalBlobStore
from .db import Database, FileRecord, UploadPartRecord, UploadRecord

MIN_AGE_SECONDS = 3600


def remove_orphans(db: Database, blobs: LocalBlobStore, *, min_age: float = MIN_AGE_SECONDS) -> int:
    """Remove file blobs without a File and part blobs without a part (both older than `min_age`), and
    the parts of uploads that are no longer pending. Returns how many blobs were removed."""
    cutoff = time.time() - min_age
    with db.session() as session:
        file_ids = set(session.scalars(select(FileRecord.id)))
        part_ids = set(session.scalars(select(UploadPartRecord.id)))
        uploads = {upload.id: upload for upload in session.scalars(select(UploadRecord))}
    removed = 0
    files = blobs.path("files")
    for blob in files.iterdir() if files.is_dir() else ():
        if blob.name not in file_ids and blob.stat().st_mtime < cutoff:
            blob.unlink(missing_ok=True)
            removed += 1
    parts = blobs.path("uploads")
    for folder in parts.iterdir() if parts.is_dir() else ():
        upload = uploads.get(folder.name)
        finished = upload is not None and upload_store.status(upload) != "pending"
        for blob in folder.iterdir():
            if finished or (blob.name not in part_ids and blob.stat().st_mtime < cutoff):
                blob.unlink(missing_ok=True)
                removed += 1
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed
