"""`/v1/uploads`: one file sent in parts, then completed into a File (client.uploads.*, upload_file_chunked)."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ...errors import InvalidRequest
from ...protocol.common import new_id, now
from ...protocol.files import Upload, UploadCompleteRequest, UploadCreateRequest, UploadPart
from ...store import files as file_store
from ...store import uploads as upload_store
from ...store.blobs import BlobWriter, LocalBlobStore
from ...store.db import FileRecord, UploadPartRecord, UploadRecord
from ..deps import ProjectDep, ServicesDep
from ..uploads import read_upload, sanitize_filename
from .files import check_purpose, require_jsonl

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

PART_MAX_BYTES = 64 * 1024 * 1024
"""OpenAI's limit on one part (the SDK's upload_file_chunked sends 64 MiB parts)."""


@router.post("", response_model=Upload, response_model_exclude_none=True)
def create_upload(body: UploadCreateRequest, project: ProjectDep, services: ServicesDep) -> Upload:
    purpose = check_purpose(body.purpose)
    max_bytes = services.settings.max_upload_bytes
    if body.bytes > max_bytes:
        raise InvalidRequest(f"`bytes` is {body.bytes}, more than the maximum upload size of {max_bytes} bytes "
                             "(set TUNEHOUSE_MAX_UPLOAD_BYTES to change it).", param="bytes")
    created_at = now()
    record = UploadRecord(
        id=new_id("upload_"), project=project, filename=sanitize_filename(body.filename), purpose=purpose,
        bytes=body.bytes, mime_type=body.mime_type, created_at=created_at,
        expires_at=created_at + upload_store.LIFETIME_SECONDS, status="pending",
        file_expires_after=body.expires_after.seconds if body.expires_after else None,
    )
    return upload_store.to_wire(services.db.add(record))


@router.post("/{upload_id}/parts", response_model=UploadPart)
async def add_part(upload_id: str, request: Request, project: ProjectDep, services: ServicesDep) -> UploadPart:
    upload = upload_store.get_upload(services.db, project, upload_id)
    upload_store.require_pending(upload)
    part_id = new_id("part_")
    limit = min(PART_MAX_BYTES, upload.bytes)
    with services.blobs.writer(upload_store.part_key(upload_id, part_id)) as blob:
        what = f"the upload's `bytes` ({limit})" if limit < PART_MAX_BYTES else f"{PART_MAX_BYTES} bytes"
        form = await read_upload(request, blob, limit, file_field="data",
                                 too_large_message=f"A part may hold at most {what}.")
        if not form.file_received:
            raise InvalidRequest("Missing required form field `data`.", param="data")
    record = UploadPartRecord(id=part_id, upload_id=upload_id, created_at=now(), bytes=blob.size)
    return upload_store.part_to_wire(services.db.add(record))


@router.post("/{upload_id}/complete", response_model=Upload, response_model_exclude_none=True)
async def complete_upload(upload_id: str, body: UploadCompleteRequest, project: ProjectDep,
                          services: ServicesDep) -> Upload:
    upload = upload_store.get_upload(services.db, project, upload_id)
    upload_store.require_pending(upload)
    parts = upload_store.parts_in_order(services.db, upload_id, body.part_ids)
    total = sum(part.bytes for part in parts)
    if total != upload.bytes:
        raise InvalidRequest(f"The parts hold {total} bytes, but the upload was created with `bytes` = "
                             f"{upload.bytes}.", param="part_ids")
    file_id = new_id("file-")
    with services.blobs.writer(file_store.blob_key(file_id)) as blob:
        md5 = await run_in_threadpool(_concatenate, services.blobs, upload_id, parts, blob)
        if body.md5 is not None and body.md5.lower() != md5:
            raise InvalidRequest(f"The parts' md5 is {md5}, not {body.md5}.", param="md5")
        if upload.purpose == "fine-tune":
            blob.flush()
            await run_in_threadpool(require_jsonl, blob.temp_path)
    created_at = now()
    file = FileRecord(
        id=file_id, project=project, filename=upload.filename, purpose=upload.purpose, bytes=blob.size,
        sha256=blob.sha256, created_at=created_at, status="processed",
        expires_at=created_at + upload.file_expires_after if upload.file_expires_after else None,
    )
    try:
        upload = upload_store.complete(services.db, upload, file)
    except InvalidRequest:  # another `complete` or a `cancel` got there first: its outcome stands
        services.blobs.delete(file_store.blob_key(file_id))
        raise
    upload_store.discard_parts(services.blobs, upload_id)
    return upload_store.to_wire(upload, file)


@router.post("/{upload_id}/cancel", response_model=Upload, response_model_exclude_none=True)
def cancel_upload(upload_id: str, project: ProjectDep, services: ServicesDep) -> Upload:
    upload = upload_store.get_upload(services.db, project, upload_id)
    return upload_store.to_wire(upload_store.cancel(services.db, services.blobs, upload))


def _concatenate(blobs: LocalBlobStore, upload_id: str, parts: list[UploadPartRecord], sink: BlobWriter) -> str:
    """Copy the parts into `sink` in order; returns the md5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    for part in parts:
        with blobs.open(upload_store.part_key(upload_id, part.id)) as source:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                sink.write(chunk)
    return digest.hexdigest()
