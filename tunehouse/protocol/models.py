"""Models: https://platform.openai.com/docs/api-reference/models (spec schema `Model`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # --- tunehouse extensions ---
    alias_for: str | None = None
    """For an alias (e.g. `gpt-4o-mini-2024-07-18`): the base model it points to."""
    parent: str | None = None
    """For a fine-tuned model or checkpoint: the base model it was trained from."""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True
