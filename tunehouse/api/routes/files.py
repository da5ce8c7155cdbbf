"""`/v1/files`: upload, list, retrieve, delete, content (client.files.*)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from ...data.jsonl import JSONL_EXPECTATION, check_jsonl_objects, summarize_problems
from ...data.render import render_example
from ...data.stats import compute_stats
from ...data.validate import validate_dataset
from ...errors import InvalidRequest
from ...faults import hold_point
from ...models.catalog import DEFAULT_MODEL, context_length, load_tokenizer
from ...protocol.common import new_id, now
from ...protocol.files import (
    UPLOAD_PURPOSES, FileDeleted, FileList, FileObject, FileProblem, FileReport, FileStats, PreviewExample,
    PreviewPiece,
)
from ...store import files as file_store
from ...store.db import FileRecord
from ..deps import ProjectDep, ServicesDep
from ..uploads import read_upload

router = APIRouter(prefix="/v1/files", tags=["files"])

EXPIRY_SECONDS = (3600, 2_592_000)


@router.post("", response_model=FileObject, response_model_exclude_none=True)
async def create_file(request: Request, project: ProjectDep, services: ServicesDep) -> FileObject:
    file_id = new_id("file-")
    max_bytes = services.settings.max_upload_bytes
    with services.blobs.writer(file_store.blob_key(file_id)) as blob:
        form = await read_upload(request, blob, max_bytes)
        purpose = check_purpose(form.fields.get("purpose"))
        if not form.file_received:
            raise InvalidRequest("Missing required form field `file`.", param="file")
        created_at = now()
        expires_at = _expires_at(form.fields, created_at)
        if purpose == "fine-tune":
            blob.flush()
            await run_in_threadpool(require_jsonl, blob.temp_path)
    record = FileRecord(
        id=file_id,
        project=project,
        filename=form.filename or "upload",
        purpose=purpose,
        bytes=blob.size,
        sha256=blob.sha256,
        created_at=created_at,
        expires_at=expires_at,
        status="processed",
    )
    hold_point("upload.stored")
    file_store.add_file(services.db, record)
    return file_store.to_wire(record)


@router.get("", response_model=FileList, response_model_exclude_none=True)
def list_files(
    project: ProjectDep,
    services: ServicesDep,
    purpose: str | None = None,
    limit: int = Query(10_000, ge=1, le=10_000),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> FileList:
    records, has_more = file_store.list_files(
        services.db, project, purpose=purpose, limit=limit, order=order, after=after
    )
    data = [file_store.to_wire(record) for record in records]
    return FileList(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get("/{file_id}", response_model=FileObject, response_model_exclude_none=True)
def retrieve_file(file_id: str, project: ProjectDep, services: ServicesDep) -> FileObject:
    return file_store.to_wire(file_store.get_file(services.db, project, file_id))


@router.delete("/{file_id}", response_model=FileDeleted)
def delete_file(file_id: str, project: ProjectDep, services: ServicesDep) -> FileDeleted:
    file_store.delete_file(services.db, services.blobs, project, file_id)
    return FileDeleted(id=file_id)


@router.get("/{file_id}/content")
def file_content(file_id: str, project: ProjectDep, services: ServicesDep) -> FileResponse:
    record = file_store.get_file(services.db, project, file_id)
    return FileResponse(services.blobs.path(file_store.blob_key(record.id)), media_type="application/octet-stream")


@router.get("/{file_id}/report", response_model=FileReport, response_model_exclude_none=True)
def file_report(
    file_id: str,
    project: ProjectDep,
    services: ServicesDep,
    model: str | None = Query(default=None, description="Model whose tokenizer and template to use"),
    preview: int = Query(default=3, ge=0, le=20, description="How many examples to render"),
) -> FileReport:
    """tunehouse extension: the file checked as a job would check it, with statistics and a preview."""
    record = file_store.get_file(services.db, project, file_id)
    path = services.blobs.path(file_store.blob_key(record.id))
    report = validate_dataset(path)
    first_lines = _first_lines(path, 5)
    wire = FileReport(
        file_id=record.id, valid=report.ok, format=report.format, summary=report.summary(f"File {record.filename}"),
        problem_count=report.problem_count,
        problems=[FileProblem(line=p.line, code=p.code, message=p.message) for p in report.problems],
        warnings=report.warnings, first_lines=first_lines,
    )
    if not report.ok:
        return wire
    model_name = model or DEFAULT_MODEL
    model_dir = services.catalog.model_path(model_name)
    tokenizer = load_tokenizer(str(model_dir))
    stats = compute_stats(report, tokenizer, context_length=context_length(model_dir))
    wire.model, wire.stats = model_name, FileStats(**stats.as_dict())
    for example in report.examples[:preview]:
        rendered = render_example(example.record, example.format, tokenizer)
        wire.preview.append(PreviewExample(
            line=example.line, tokens=len(rendered.input_ids), learned_tokens=rendered.loss_tokens,
            pieces=[PreviewPiece(text=text, learned=learned) for text, learned in rendered.pieces],
        ))
    return wire


def _first_lines(path, count: int) -> list[str]:
    lines = []
    with open(path, "rb") as handle:
        for raw in handle:
            lines.append(raw[:500].decode("utf-8", "replace").rstrip("\r\n"))
            if len(lines) == count:
                break
    return lines


def check_purpose(value: str | None) -> str:
    if not value:
        raise InvalidRequest("Missing required form field `purpose`.", param="purpose")
    if value not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"Invalid purpose {value!r}. Expected one of: {', '.join(UPLOAD_PURPOSES)}.", param="purpose"
        )
    return value


def _expires_at(fields: dict[str, str], created_at: int) -> int | None:
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("`expires_after[anchor]` must be `created_at`.", param="expires_after.anchor")
    low, high = EXPIRY_SECONDS
    if not (seconds or "").isdigit() or not low <= int(seconds) <= high:
        raise InvalidRequest(
            f"`expires_after[seconds]` must be an integer from {low} to {high}.", param="expires_after.seconds"
        )
    return created_at + int(seconds)


def require_jsonl(path) -> None:
    """The upload-time check: refuse only what cannot be JSONL at all; the deep checks run at job time."""
    _, problems, count = check_jsonl_objects(path)
    if problems:
        raise InvalidRequest(
            f"{JSONL_EXPECTATION} {summarize_problems(problems, count)}.", param="file", code="invalid_file_format"
        )
