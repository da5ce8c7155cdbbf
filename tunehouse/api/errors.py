"""Every error a client sees, in OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`.

One place maps TunehouseError, request validation errors, values the database refuses, unknown routes and
methods, and unexpected exceptions (500, no stack trace) to that shape.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InvalidRequest, MethodNotAllowed, NotFound, ServerError, TunehouseError

log = logging.getLogger("tunehouse.api")

_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def error_response(error: TunehouseError) -> JSONResponse:
    return JSONResponse(status_code=error.status_code, content={"error": error.to_dict()}, headers=error.headers)


def validation_error(exc: RequestValidationError) -> InvalidRequest:
    """FastAPI's 422 becomes OpenAI's 400 with `param` naming the first offending field (`a.b.0.c`)."""
    problems = []
    first_param = None
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        if loc and loc[0] in _LOCATIONS:
            loc = loc[1:]
        param = ".".join(str(part) for part in loc if not _is_union_member_tag(part)) or None
        first_param = first_param or param
        message = err.get("msg", "invalid value")
        if err.get("type") == "missing":
            message = "is required"
        problems.append(f"'{param}': {message}" if param else message)
    return InvalidRequest("Invalid request: " + "; ".join(problems), param=first_param)


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "bytes"}


def _is_union_member_tag(part) -> bool:
    """pydantic names the union member that failed in `loc` (`stop.str`, `stop.list[str]`): not a field."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or "(" in part)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TunehouseError)
    async def _tunehouse(_request: Request, exc: TunehouseError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(DataError)
    async def _refused_value(_request: Request, exc: DataError) -> JSONResponse:
        """A request value the database cannot hold or compare (Postgres: a NUL character, a string longer
        than its column): the request's fault, so 400 with the database's reason, not 500."""
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else "invalid value"
        return error_response(InvalidRequest(f"A value in this request cannot be stored or looked up: {reason}."))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        route = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            error: TunehouseError = NotFound(f"Invalid URL ({route})", code="unknown_url")
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"Method not allowed ({route})", code="method_not_allowed")
        else:
            error = TunehouseError(str(exc.detail))
            error.status_code = exc.status_code
            error.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(ServerError("The server had an error while processing your request."))
