"""`/v1/models`: base models and aliases (client.models.*). Ids may hold `/` or `:`, hence `{model:path}`."""

from __future__ import annotations

from fastapi import APIRouter

from ...models.catalog import ModelInfo
from ...protocol.models import ModelList, ModelObject
from ..deps import ProjectDep, ServicesDep

router = APIRouter(prefix="/v1/models", tags=["models"])


def to_wire(info: ModelInfo) -> ModelObject:
    return ModelObject(id=info.name, created=info.created_at, owned_by="tunehouse", alias_for=info.alias_for)


@router.get("", response_model=ModelList, response_model_exclude_none=True)
def list_models(_project: ProjectDep, services: ServicesDep) -> ModelList:
    return ModelList(data=[to_wire(info) for info in services.catalog.list()])


@router.get("/{model:path}", response_model=ModelObject, response_model_exclude_none=True)
def retrieve_model(model: str, _project: ProjectDep, services: ServicesDep) -> ModelObject:
    return to_wire(services.catalog.get(model))
