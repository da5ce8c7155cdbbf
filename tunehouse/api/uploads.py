"""Streaming multipart parsing for `POST /v1/files` and upload parts: the bytes go straight to disk, never
into memory.

Starlette's own form parsing spools whole uploads before the route sees them and cannot stop at a size
limit; this reads the request body once, chunk by chunk, and stops with 413 as soon as the limit is passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fastapi import Request
from starlette.requests import ClientDisconnect
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import InvalidRequest, PayloadTooLarge
from ..faults import hold_point
from ..store.blobs import BlobWriter

MAX_FIELD_BYTES = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_received: bool = False


def too_large(max_bytes: int, param: str = "file", message: str | None = None) -> PayloadTooLarge:
    return PayloadTooLarge(
        message or f"File is larger than the maximum upload size of {max_bytes} bytes "
                   "(set TUNEHOUSE_MAX_UPLOAD_BYTES to change it).",
        param=param,
        code="file_too_large",
    )


async def read_upload(request: Request, sink: BlobWriter, max_bytes: int, *, file_field: str = "file",
                      too_large_message: str | None = None) -> UploadForm:
    """Parse the multipart body, writing the `file_field` part into `sink` and collecting the small text
    fields; past `max_bytes` the answer is 413 (with `too_large_message`, if given)."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        expected = "the fields `file` and `purpose`" if file_field == "file" else f"the field `{file_field}`"
        raise InvalidRequest(f"Expected a multipart/form-data body with {expected}.", param=file_field)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise too_large(max_bytes, file_field, too_large_message)

    form = UploadForm()
    part: dict = {}

    def on_part_begin() -> None:
        part.clear()
        part.update(headers={}, name=b"", value=b"", data=bytearray(), is_file=False)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["name"].decode("latin-1").lower()] = part["value"]
        part["name"], part["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(part["headers"].get("content-disposition", b""))
        part["field"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        part["is_file"] = part["field"] == file_field
        if part["is_file"]:
            if form.file_received:
                raise InvalidRequest(f"Send exactly one `{file_field}` part.", param=file_field)
            raw_name = disposition.get(b"filename")
            form.filename = sanitize_filename(raw_name.decode("utf-8", "replace") if raw_name else "")
            form.file_received = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part["is_file"]:
            sink.write(data[start:end])
            hold_point("upload.receiving")
            if sink.size > max_bytes:
                raise too_large(max_bytes, file_field, too_large_message)
            return
        part["data"] += data[start:end]
        if len(part["data"]) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"Form field `{part['field']}` is too long.", param=part["field"] or None)

    def on_part_end() -> None:
        if not part.get("is_file") and part.get("field"):
            form.fields[part["field"]] = part["data"].decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequest(f"The multipart body is malformed: {exc}", param=file_field) from None
    except ClientDisconnect:
        raise InvalidRequest("The upload was interrupted before the whole body arrived.", param=file_field) from None
    return form


def sanitize_filename(name: str) -> str:
    """Keep only the last path component, without control characters, at most 255 bytes; else `upload`."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL_CHARS.sub("", name).strip()
    if name in ("", ".", ".."):
        return "upload"
    encoded = name.encode("utf-8")[:255]
    return encoded.decode("utf-8", "ignore")
