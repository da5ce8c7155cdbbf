"""Server settings: one pydantic-settings class, built once and passed down (never a module global).

Every field can be set from the environment as `TUNEHOUSE_<FIELD>` (e.g. `TUNEHOUSE_DATA_DIR`).
docs/configuration.md is the reference for each one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEHOUSE_", extra="ignore")

    data_dir: Path = Field(default=Path("tunehouse-data"))
    """Where the database, uploaded files and checkpoints live."""

    database_url: str | None = None
    """SQLAlchemy URL of the metadata database; default: a SQLite file `tunehouse.db` in the data dir."""

    model_cache_dir: Path | None = None
    """Where converted base models are cached; default: `$XDG_CACHE_HOME/tunehouse/models`, else
    `~/.cache/tunehouse/models`, which every data dir of this user shares."""

    max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    """Largest file `POST /v1/files` accepts; past it the answer is 413."""

    serve_slots: int = Field(default=32, ge=1)
    """Sequences decoded together per base model (continuous batching); more requests wait their turn."""

    serve_max_len: int = Field(default=2048, ge=64)
    """Longest prompt plus answer served (capped by the model's context); sizes the KV cache."""

    serve_max_waiting: int = Field(default=256, ge=0)
    """Generations allowed to wait for a free slot; past that, new requests get 429 with Retry-After."""

    max_request_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """Largest JSON request body (uploads have max_upload_bytes); past it the answer is 413."""

    serve_precision: Literal["auto", "fp32", "bf16", "int4"] = "auto"
    """Precision of the serving engine's matrix products (docs/serving.md). `auto`: int4 for decoding steps
    when the model's layers are already 4-bit (the default model), else bf16 where the CPU computes it
    natively, else fp32. `bf16` is faster than int4 for many concurrent streams, int4 about twice as fast
    for one; with either, answers do not depend on what else is in the batch, bit for bit. `fp32` equals
    transformers token for token."""

    host: str = "127.0.0.1"
    port: int = 8000

    insecure: bool = False
    """Allow listening on a non-loopback address while no API key exists (open mode)."""

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'tunehouse.db'}"

    @property
    def resolved_model_cache_dir(self) -> Path:
        """`model_cache_dir` if set, else `models/` in the user's cache: every data dir shares it, so the default
        model is converted once per machine (a data dir's own `models/`, where older versions cached it, is
        no longer read)."""
        return self.model_cache_dir or user_cache_dir() / "models"


def user_cache_dir() -> Path:
    """tunehouse's folder in the user's cache: `$XDG_CACHE_HOME/tunehouse`, else `~/.cache/tunehouse`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunehouse"
