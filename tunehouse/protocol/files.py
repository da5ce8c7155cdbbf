"""Files and uploads: https://platform.openai.com/docs/api-reference/files (spec schemas `OpenAIFile`,
`DeleteFileResponse`) and https://platform.openai.com/docs/api-reference/uploads (`Upload`, `UploadPart`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


# --- uploads: one file sent in parts (client.uploads.*, upload_file_chunked) ------------------------------


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class UploadCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str
    purpose: str
    bytes: int = Field(ge=0)
    mime_type: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
    expires_after: ExpiresAfter | None = None
    """When the File the upload becomes expires (the upload itself expires an hour after creation)."""


class UploadCompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part_ids: list[str]
    md5: str | None = None


class Upload(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: Literal["pending", "completed", "cancelled", "expired"]
    file: FileObject | None = None


class UploadPart(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str


# --- tunehouse extension: GET /v1/files/{file_id}/report (the dashboard's and `data check`'s view) -------


class FileProblem(BaseModel):
    line: int
    code: str
    message: str


class PreviewPiece(BaseModel):
    text: str
    learned: bool
    """True where the text carries the loss: what the model learns to write."""


class PreviewExample(BaseModel):
    line: int
    tokens: int
    learned_tokens: int
    pieces: list[PreviewPiece]


class FileStats(BaseModel):
    format: str
    examples: int
    tokens_min: int
    tokens_mean: float
    tokens_max: int
    loss_tokens: int
    context_length: int
    examples_over_context: int
    n_epochs: int
    billable_tokens: int
    estimated_seconds: float


class FileReport(BaseModel):
    """A fine-tune file as a job would see it: validation problems by line, statistics, a rendered preview."""

    object: Literal["file.report"] = "file.report"
    file_id: str
    valid: bool
    format: str | None
    summary: str
    problem_count: int
    problems: list[FileProblem]
    warnings: list[str]
    first_lines: list[str]
    """The first lines as they are in the file (cut at 500 characters)."""
    model: str | None = None
    stats: FileStats | None = None
    preview: list[PreviewExample] = []
