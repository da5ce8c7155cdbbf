"""`build_app(settings)`: the FastAPI application with its routers, error handler and services.

Run it with `tunehouse serve` (uvicorn). Tests build it the same way on a temporary data dir.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request

from .. import __version__
from ..services import open_services
from ..settings import Settings
from .errors import install_error_handlers
from .routes import files, fine_tuning, models

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
    app.include_router(fine_tuning.router)
    app.include_router(models.router)
    return app
