"""`/v1/models`: base models, aliases, and the project's fine-tuned models and checkpoints (client.models.*).

Ids may hold `/` or `:`, hence `{model:path}`.
"""

from __future__ import annotations

from fastapi import APIRouter

from ...protocol.models import ModelDeleted, ModelList, ModelObject
from ...serve.registry import ServedModel, delete_fine_tuned, list_fine_tuned, resolve
from ..deps import ProjectDep, ServicesDep

router = APIRouter(prefix="/v1/models", tags=["models"])


def to_wire(model: ServedModel) -> ModelObject:
    return ModelObject(
        id=model.name,
        created=model.created,
        owned_by=model.owned_by,
        alias_for=model.base if model.kind == "alias" else None,
        parent=model.base if model.kind in ("fine_tuned", "checkpoint") else None,
    )


@router.get("", response_model=ModelList, response_model_exclude_none=True)
def list_models(project: ProjectDep, services: ServicesDep) -> ModelList:
    base = [resolve(services, project, info.name) for info in services.catalog.list()]
    return ModelList(data=[to_wire(model) for model in base + list_fine_tuned(services, project)])


@router.get("/{model:path}", response_model=ModelObject, response_model_exclude_none=True)
def retrieve_model(model: str, project: ProjectDep, services: ServicesDep) -> ModelObject:
    return to_wire(resolve(services, project, model))


@router.delete("/{model:path}", response_model=ModelDeleted)
def delete_model(model: str, project: ProjectDep, services: ServicesDep) -> ModelDeleted:
    delete_fine_tuned(services, project, model)
    return ModelDeleted(id=model)
