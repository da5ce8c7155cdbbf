"""Fine-tuning jobs as the API sees them: create, list, retrieve, cancel, pause, resume, events, checkpoints.

Methods mirror `client.fine_tuning.jobs.*`. Everything is scoped by project; another project's job does not
exist. Training itself happens in a worker process (jobs/worker.py), which this module never touches: the
database row is the only channel (status and `worker_id`).
"""

from __future__ import annotations

import random
import secrets
import string
import time

from sqlalchemy import delete, select

from ..errors import InvalidRequest, NotFound, TunehouseError
from ..models.catalog import Catalog
from ..protocol.common import new_id, now
from ..protocol.fine_tuning import (
    CheckpointMetrics,
    CreateFineTuningJobRequest,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    Hyperparameters,
    JobError,
)
from ..store import files as file_store
from ..store.db import Database, Job, JobCheckpoint, JobEvent

ACTIVE = ("validating_files", "queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")


class JobConflict(TunehouseError):
    """The job is not in a state that allows this action (e.g. cancelling a finished job)."""

    status_code = 409
    error_type = "invalid_request_error"


# --- create -----------------------------------------------------------------------------------------------


def create_job(
    db: Database, catalog: Catalog, project: str, request: CreateFineTuningJobRequest, idempotency_key: str | None
) -> Job:
    if idempotency_key:
        with db.session() as session:
            existing = session.scalar(
                select(Job).where(Job.project == project, Job.idempotency_key == idempotency_key)
            )
        if existing is not None:
            return existing
    catalog.require_base_for_training(request.model)
    base = catalog.get(request.model).base
    for param in ("training_file", "validation_file"):
        file_id = getattr(request, param)
        if file_id is None:
            continue
        try:
            record = file_store.get_file(db, project, file_id)
        except NotFound:
            raise InvalidRequest(f"invalid {param}: {file_id} does not exist", param=param, code="invalid_file") from None
        if record.purpose != "fine-tune":
            raise InvalidRequest(
                f"invalid {param}: {file_id} has purpose {record.purpose!r}, expected 'fine-tune'",
                param=param,
                code="invalid_file",
            )
    job_id = new_id("ftjob-")
    short_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    job = Job(
        id=job_id,
        project=project,
        model=request.model,
        base_model=base,
        training_file=request.training_file,
        validation_file=request.validation_file,
        status="validating_files",
        created_at=now(),
        model_suffix=request.suffix,
        output_model=f"ft:{request.model}:{project}:{request.suffix or ''}:{short_id}",
        method_type="supervised",
        hyperparameters=request.requested_hyperparameters().model_dump(),
        seed=request.seed if request.seed is not None else random.randint(0, 2_147_483_647),
        metadata_=request.metadata,
        integrations=[i.model_dump() for i in request.integrations] if request.integrations else None,
        result_files=[],
        idempotency_key=idempotency_key,
    )
    with db.session() as session:
        session.add(job)
    add_event(db, job_id, f"Created fine-tuning job: {job_id}")
    if request.integrations:
        add_event(db, job_id, "Integrations (wandb) are recorded but not called: tunehouse sends nothing off this machine", level="warn")
    add_event(db, job_id, f"Validating training file: {request.training_file}")
    return job


# --- read -------------------------------------------------------------------------------------------------


def get_job(db: Database, project: str, job_id: str) -> Job:
    with db.session() as session:
        job = session.scalar(select(Job).where(Job.project == project, Job.id == job_id))
    if job is None:
        raise NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
    return job


def list_jobs(
    db: Database, project: str, *, after: str | None, limit: int, metadata: dict[str, str]
) -> tuple[list[Job], bool]:
    query = select(Job).where(Job.project == project).order_by(Job.seq.desc())
    if after:
        query = query.where(Job.seq < _seq_of(db, Job, Job.project == project, after))
    with db.session() as session:
        rows = list(session.scalars(query))
    if metadata:  # portable across SQLite and Postgres JSON; job counts per project stay small
        rows = [job for job in rows if all((job.metadata_ or {}).get(k) == v for k, v in metadata.items())]
    return rows[:limit], len(rows) > limit


def list_events(db: Database, project: str, job_id: str, *, after: str | None, limit: int) -> tuple[list[JobEvent], bool]:
    get_job(db, project, job_id)
    return _newest_first(db, JobEvent, JobEvent.job_id == job_id, after=after, limit=limit)


def list_checkpoints(
    db: Database, project: str, job_id: str, *, after: str | None, limit: int
) -> tuple[list[JobCheckpoint], bool]:
    get_job(db, project, job_id)
    return _newest_first(db, JobCheckpoint, JobCheckpoint.job_id == job_id, after=after, limit=limit)


def _newest_first(db: Database, table, scope, *, after: str | None, limit: int) -> tuple[list, bool]:
    """A page of `table` rows within `scope`, newest first, older than the row `after`; and whether more follow."""
    query = select(table).where(scope).order_by(table.seq.desc())
    if after:
        query = query.where(table.seq < _seq_of(db, table, scope, after))
    with db.session() as session:
        rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def _seq_of(db: Database, table, scope, object_id: str) -> int:
    with db.session() as session:
        seq = session.scalar(select(table.seq).where(scope, table.id == object_id))
    if seq is None:
        raise InvalidRequest(f"No such object to page after: {object_id}", param="after")
    return seq


# --- control ----------------------------------------------------------------------------------------------


def cancel_job(db: Database, project: str, job_id: str) -> Job:
    """Any unfinished job can be cancelled; a running one stops within a step (the trainer polls)."""
    return _transition(db, project, job_id, allowed=ACTIVE + ("paused",), to="cancelled", verb="cancel")


def pause_job(db: Database, project: str, job_id: str) -> Job:
    """A running job saves a checkpoint and stops; a queued one simply waits. Resume continues from there."""
    return _transition(db, project, job_id, allowed=("queued", "running"), to="paused", verb="pause")


def resume_job(db: Database, project: str, job_id: str) -> Job:
    return _transition(db, project, job_id, allowed=("paused",), to="queued", verb="resume")


def _transition(db: Database, project: str, job_id: str, *, allowed: tuple, to: str, verb: str) -> Job:
    with db.session() as session:
        job = session.scalar(select(Job).where(Job.project == project, Job.id == job_id).with_for_update())
        if job is None:
            raise NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
        if job.status not in allowed:
            raise JobConflict(f"Cannot {verb} a job whose status is {job.status!r}.", param="fine_tuning_job_id")
        job.status = to
        if to == "cancelled":
            job.finished_at = now()
            job.estimated_finish = None
    add_event(db, job_id, {"cancel": "Job cancelled", "pause": "Job paused", "resume": "Job resumed"}[verb])
    return job


# --- events (also written by the worker and the trainer) -------------------------------------------------


def add_event(
    db: Database,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict | None = None,
    step: int | None = None,
) -> None:
    with db.session() as session:
        session.add(
            JobEvent(
                id=new_id("ftevent-"),
                job_id=job_id,
                created_at=int(time.time()),
                level=level,
                message=message,
                type=type,
                data=data,
                step=step,
            )
        )


def drop_metrics_after(db: Database, job_id: str, step: int) -> None:
    """A run resumed from step N redoes the steps after N: their old metrics events go, so none is doubled."""
    with db.session() as session:
        session.execute(delete(JobEvent).where(JobEvent.job_id == job_id, JobEvent.step > step))


# --- wire -------------------------------------------------------------------------------------------------


def job_to_wire(job: Job) -> FineTuningJob:
    hyperparameters = Hyperparameters(**job.hyperparameters)
    return FineTuningJob(
        id=job.id,
        created_at=job.created_at,
        error=JobError(**job.error) if job.error else None,
        fine_tuned_model=job.output_model if job.status == "succeeded" else None,
        finished_at=job.finished_at,
        hyperparameters=hyperparameters,
        model=job.model,
        organization_id=job.project,
        result_files=list(job.result_files or []),
        seed=job.seed,
        status=job.status,
        trained_tokens=job.trained_tokens,
        training_file=job.training_file,
        validation_file=job.validation_file,
        estimated_finish=job.estimated_finish,
        integrations=job.integrations,
        metadata=job.metadata_,
        method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters.model_dump()}},
        user_provided_suffix=job.model_suffix,
    )


def event_to_wire(event: JobEvent) -> FineTuningJobEvent:
    return FineTuningJobEvent(
        id=event.id, created_at=event.created_at, level=event.level, message=event.message, data=event.data,
        type=event.type,
    )


def checkpoint_to_wire(checkpoint: JobCheckpoint) -> FineTuningJobCheckpoint:
    return FineTuningJobCheckpoint(
        id=checkpoint.id,
        created_at=checkpoint.created_at,
        fine_tuned_model_checkpoint=checkpoint.model_name,
        fine_tuning_job_id=checkpoint.job_id,
        metrics=CheckpointMetrics(**{k: v for k, v in checkpoint.metrics.items() if k in CheckpointMetrics.model_fields}),
        step_number=checkpoint.step_number,
    )
