"""`build_app(settings)`: the FastAPI application with its routers, error handler and services.

Run it with `tunehouse serve` (uvicorn). Tests build it the same way on a temporary data dir.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..models.catalog import load_tokenizer
from ..serve.engine import Engine
from ..services import open_services
from ..settings import Settings
from ..errors import PayloadTooLarge
from .errors import error_response, install_error_handlers
from .routes import chat, files, fine_tuning, models, uploads

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _is_upload(path: str) -> bool:
    """File uploads and upload parts stream to disk under their own limit (max_upload_bytes)."""
    return path.startswith("/v1/files") or (path.startswith("/v1/uploads/") and path.endswith("/parts"))


def build_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="tunehouse", version=__version__, description="Fine-tuning that speaks the OpenAI API")
    app.state.services = open_services(settings)
    app.state.engine = _lazy_engine(settings)
    install_error_handlers(app)

    @app.middleware("http")
    async def body_limit(request: Request, call_next):
        """JSON bodies over max_request_bytes are 413 before they are read (uploads have their own limit)."""
        declared = request.headers.get("content-length", "")
        if (declared.isdigit() and int(declared) > settings.max_request_bytes
                and not _is_upload(request.url.path)):
            return error_response(PayloadTooLarge(
                f"Request body is larger than {settings.max_request_bytes} bytes (TUNEHOUSE_MAX_REQUEST_BYTES).",
                code="request_too_large"))
        return await call_next(request)

    @app.middleware("http")
    async def request_id(request: Request, call_next):
        response = await call_next(request)
        response.headers["x-request-id"] = "req_" + secrets.token_hex(12)
        if not request.url.path.startswith("/v1/"):  # the dashboard: revalidate, so an upgrade shows at once
            response.headers["cache-control"] = "no-cache"
        return response

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    app.include_router(files.router)
    app.include_router(uploads.router)
    app.include_router(fine_tuning.router)
    app.include_router(chat.router)
    app.include_router(models.router)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def _lazy_engine(settings: Settings):
    """The inference engine starts (and loads models) on the first generation request, not at start-up."""
    lock = threading.Lock()
    holder: list[Engine] = []

    def engine() -> Engine:
        with lock:
            if not holder:
                holder.append(Engine(lambda base_dir: load_tokenizer(str(base_dir)), slots=settings.serve_slots,
                                     max_len=settings.serve_max_len, precision=settings.serve_precision,
                                     max_waiting=settings.serve_max_waiting))
            return holder[0]

    return engine
