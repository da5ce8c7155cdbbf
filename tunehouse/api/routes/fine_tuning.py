"""`/v1/fine_tuning/jobs`: create, list, retrieve, cancel, pause, resume, events, checkpoints
(client.fine_tuning.jobs.*)."""

from __future__ import annotations

from fastapi import APIRouter, Header, Query, Request

from ...jobs import service
from ...protocol.fine_tuning import CheckpointList, CreateFineTuningJobRequest, EventList, FineTuningJob, JobList
from ..deps import ProjectDep, ServicesDep

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine_tuning"])


@router.post("", response_model=FineTuningJob)
def create_job(
    body: CreateFineTuningJobRequest,
    project: ProjectDep,
    services: ServicesDep,
    idempotency_key: str | None = Header(default=None),
) -> FineTuningJob:
    job = service.create_job(services.db, services.catalog, project, body, idempotency_key)
    return service.job_to_wire(job)


@router.get("", response_model=JobList)
def list_jobs(
    request: Request,
    project: ProjectDep,
    services: ServicesDep,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
) -> JobList:
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    jobs, has_more = service.list_jobs(services.db, project, after=after, limit=limit, metadata=metadata)
    return JobList(data=[service.job_to_wire(job) for job in jobs], has_more=has_more)


@router.get("/{job_id}", response_model=FineTuningJob)
def retrieve_job(job_id: str, project: ProjectDep, services: ServicesDep) -> FineTuningJob:
    return service.job_to_wire(service.get_job(services.db, project, job_id))


@router.post("/{job_id}/cancel", response_model=FineTuningJob)
def cancel_job(job_id: str, project: ProjectDep, services: ServicesDep) -> FineTuningJob:
    return service.job_to_wire(service.cancel_job(services.db, project, job_id))


@router.post("/{job_id}/pause", response_model=FineTuningJob)
def pause_job(job_id: str, project: ProjectDep, services: ServicesDep) -> FineTuningJob:
    return service.job_to_wire(service.pause_job(services.db, project, job_id))


@router.post("/{job_id}/resume", response_model=FineTuningJob)
def resume_job(job_id: str, project: ProjectDep, services: ServicesDep) -> FineTuningJob:
    return service.job_to_wire(service.resume_job(services.db, project, job_id))


@router.get("/{job_id}/events", response_model=EventList)
def list_events(
    job_id: str,
    project: ProjectDep,
    services: ServicesDep,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=1000),
) -> EventList:
    events, has_more = service.list_events(services.db, project, job_id, after=after, limit=limit)
    return EventList(data=[service.event_to_wire(event) for event in events], has_more=has_more)


@router.get("/{job_id}/checkpoints", response_model=CheckpointList, response_model_exclude_none=True)
def list_checkpoints(
    job_id: str,
    project: ProjectDep,
    services: ServicesDep,
    after: str | None = None,
    limit: int = Query(10, ge=1, le=100),
) -> CheckpointList:
    checkpoints, has_more = service.list_checkpoints(services.db, project, job_id, after=after, limit=limit)
    data = [service.checkpoint_to_wire(checkpoint) for checkpoint in checkpoints]
    return CheckpointList(
        data=data, has_more=has_more, first_id=data[0].id if data else None, last_id=data[-1].id if data else None
    )
