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
