"""Files: https://platform.openai.com/docs/api-reference/files (spec schemas `OpenAIFile`, `DeleteFileResponse`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from .common import ListObject

# What `POST /v1/files` accepts as `purpose` (spec `FilePurpose`).
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


FileList = ListObject[FileObject]
