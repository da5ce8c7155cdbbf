"""The objects every process of a data dir needs: settings, database, blob store, model catalog.

The API server, the worker and the training process each open their own with `open_services`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .models.catalog import Catalog
from .settings import Settings
from .store.blobs import LocalBlobStore
from .store.db import Database
from .store.orphans import remove_orphans

log = logging.getLogger("tunehouse")


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: LocalBlobStore
    catalog: Catalog


def open_services(settings: Settings, *, discard_partial_writes: bool = True) -> Services:
    """Open (and create if needed) the database, blob store and catalog of a data dir.

    Only a process that owns uploads (the API server) should discard partial writes and orphaned blobs:
    another process doing so could delete an upload in flight.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.create_all()
    blobs = LocalBlobStore(settings.data_dir)
    if discard_partial_writes and (leftovers := blobs.discard_partial_writes()):
        log.warning("removed %d partial upload(s) left by an interrupted write", leftovers)
    if discard_partial_writes and (orphans := remove_orphans(db, blobs)):
        log.warning("removed %d stored blob(s) that no file or upload part records", orphans)
    catalog = Catalog(db, settings.resolved_model_cache_dir)
    catalog.seed()
    return Services(settings=settings, db=db, blobs=blobs, catalog=catalog)
