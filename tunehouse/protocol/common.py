"""Shared wire pieces: ids, timestamps, the error envelope, list envelopes."""

from __future__ import annotations

import secrets
import string
import time
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """OpenAI-shaped id: a prefix such as `file-` followed by random letters and digits."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def now() -> int:
    """Timestamps on the wire are integer Unix seconds."""
    return int(time.time())


class OpenAIBaseModel(BaseModel):
    """Base of every wire object. Unknown request keys are kept, not refused, unless a model says otherwise."""

    model_config = ConfigDict(extra="allow")


T = TypeVar("T")


class ListObject(BaseModel, Generic[T]):
    """`{"object": "list", "data": [...], "has_more": bool}`; files and checkpoints add first_id/last_id."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None
