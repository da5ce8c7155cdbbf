"""Which weights a `model` name means: a base or alias (catalog), or a fine-tuned model or checkpoint of the
caller's project (jobs). One resolution for chat, completions and /v1/models."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from ..errors import NotFound, PermissionDenied
from ..services import Services
from ..store.db import Job, JobCheckpoint


@dataclass(frozen=True)
class ServedModel:
    name: str
    kind: str  # "base" | "alias" | "fine_tuned" | "checkpoint"
    base: str
    """The catalog base model the weights build on."""
    created: int
    owned_by: str
    adapter_dir: Path | None = None
    """LoRA adapter folder, or for a fully fine-tuned model its whole model folder (see `full_model_dir`)."""

    @property
    def full_model_dir(self) -> Path | None:
        """The model folder when the weights are a whole model rather than an adapter."""
        if self.adapter_dir is not None and not (self.adapter_dir / "adapter_config.json").exists():
            return self.adapter_dir
        return None


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"The model `{name}` does not exist or you do not have access to it.", param="model", code="model_not_found"
    )


def resolve(services: Services, project: str, name: str) -> ServedModel:
    """Raises NotFound (404 model_not_found) for names unknown to this project."""
    if name.startswith("ft:"):
        return _resolve_fine_tuned(services, project, name)
    info = services.catalog.get(name)
    return ServedModel(info.name, info.kind, info.base, info.created_at, "tunehouse")


def _resolve_fine_tuned(services: Services, project: str, name: str) -> ServedModel:
    data_dir = services.settings.data_dir
    with services.db.session() as session:
        job = session.scalar(select(Job).where(Job.project == project, Job.output_model == name))
        if job is not None and job.status == "succeeded" and job.model_deleted_at is None:
            return ServedModel(name, "fine_tuned", job.base_model, job.finished_at or job.created_at, project,
                               data_dir / "jobs" / job.id / "model")
        row = session.execute(
            select(JobCheckpoint, Job)
            .join(Job, Job.id == JobCheckpoint.job_id)
            .where(Job.project == project, JobCheckpoint.model_name == name, Job.model_deleted_at.is_(None))
        ).first()
    if row is None or not (data_dir / row[0].path).exists():
        raise _not_found(name)
    checkpoint, job = row
    return ServedModel(name, "checkpoint", job.base_model, checkpoint.created_at, project, data_dir / checkpoint.path)


def list_fine_tuned(services: Services, project: str) -> list[ServedModel]:
    """The project's fine-tuned models and their checkpoints, newest first."""
    data_dir = services.settings.data_dir
    with services.db.session() as session:
        jobs = session.scalars(
            select(Job).where(Job.project == project, Job.model_deleted_at.is_(None)).order_by(Job.seq.desc())
        ).all()
        checkpoints = session.scalars(
            select(JobCheckpoint).where(JobCheckpoint.job_id.in_([job.id for job in jobs])).order_by(JobCheckpoint.seq.desc())
        ).all()
    models = [
        ServedModel(job.output_model, "fine_tuned", job.base_model, job.finished_at or job.created_at, project,
                    data_dir / "jobs" / job.id / "model")
        for job in jobs if job.status == "succeeded"
    ]
    by_job = {job.id: job for job in jobs}
    models += [
        ServedModel(c.model_name, "checkpoint", by_job[c.job_id].base_model, c.created_at, project, data_dir / c.path)
        for c in checkpoints if (data_dir / c.path).exists()
    ]
    return models


def delete_fine_tuned(services: Services, project: str, name: str) -> None:
    model = resolve(services, project, name)
    if model.kind in ("base", "alias"):
        raise PermissionDenied(
            f"`{name}` is a base model or alias; only fine-tuned models can be deleted "
            "(base models are managed with `tunehouse models remove`).",
            param="model",
            code="model_not_deletable",
        )
    if model.kind == "checkpoint":
        raise PermissionDenied(
            f"`{name}` is a checkpoint; delete its fine-tuned model instead.", param="model", code="model_not_deletable"
        )
    with services.db.session() as session:
        job = session.scalar(select(Job).where(Job.project == project, Job.output_model == name))
        job.model_deleted_at = int(time.time())
    # the weights go too: the adapter and the job's checkpoints
    shutil.rmtree(model.adapter_dir, ignore_errors=True)
    shutil.rmtree(services.settings.data_dir / "jobs" / job.id / "train" / "checkpoints", ignore_errors=True)
