"""What routes get injected: the app's services and the caller's project."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..errors import AuthenticationFailed
from ..services import Services
from ..store.keys import OPEN_MODE_PROJECT, any_keys, project_for_key, redact


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def current_project(request: Request, services: ServicesDep) -> str:
    """The project of the Bearer key. While no key exists (open local mode) any or no key is accepted."""
    if not any_keys(services.db):
        return OPEN_MODE_PROJECT
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>` "
            "(the openai SDK reads OPENAI_API_KEY); create one with `tunehouse keys create --project NAME`."
        )
    project = project_for_key(services.db, secret)
    if project is None:
        raise AuthenticationFailed(f"Incorrect API key provided: {redact(secret)}.")
    return project


ProjectDep = Annotated[str, Depends(current_project)]
