"""`build_app(settings)`: the FastAPI application with its routers, error handler and services.

Run it with `tunehouse serve` (uvicorn). Tests build it the same way on a temporary data dir.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request

from .. import __version__
from ..models.catalog import Catalog
from ..settings import Settings
from ..store.blobs import LocalBlobStore
from ..store.db import Database
from .deps import Services
from .errors import install_error_handlers
from .routes import files, models

log = logging.getLogger("tunehouse")


def open_services(settings: Settings) -> Services:
    """Open (and create if needed) the database, blob store and catalog of a data dir."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.create_all()
    blobs = LocalBlobStore(settings.data_dir)
    leftovers = blobs.discard_partial_writes()
    if leftovers:
        log.warning("removed %d partial upload(s) left by an interrupted write", leftovers)
    catalog = Catalog(db, settings.resolved_model_cache_dir)
    catalog.seed()
    return Services(settings=settings, db=db, blobs=blobs, catalog=catalog)


def build_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="tunehouse", version=__version__, description="Fine-tuning that speaks the OpenAI API")
    app.state.services = open_services(settings)
    install_error_handlers(app)

    @app.middleware("http")
    async def request_id(request: Request, call_next):
        response = await call_next(request)
        response.headers["x-request-id"] = "req_" + secrets.token_hex(12)
        return response

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    app.include_router(files.router)
    app.include_router(models.router)
    return app
