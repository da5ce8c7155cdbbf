"""API keys: each belongs to a project. Only a sha256 of the secret is stored; the secret is shown once."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import exists, select

from ..protocol.common import new_id
from .db import ApiKey, Database

KEY_PREFIX = "sk-th-"
OPEN_MODE_PROJECT = "default"
"""The project every object belongs to while no key exists (open local mode)."""


def hash_key(secret: str) -> str:
    # Keys are 256-bit random strings, so a plain hash is as strong as a slow password hash here.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def redact(secret: str) -> str:
    return f"{secret[:8]}...{secret[-4:]}" if len(secret) > 16 else "***"


def create_key(db: Database, project: str) -> str:
    """Make a key for `project` (created on first use) and return its secret."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.session() as session:
        session.add(
            ApiKey(
                id=new_id("key_", 16),
                project=project,
                key_hash=hash_key(secret),
                redacted=redact(secret),
                created_at=int(time.time()),
            )
        )
    return secret


def any_keys(db: Database) -> bool:
    with db.session() as session:
        return bool(session.scalar(select(exists().where(ApiKey.id.is_not(None)))))


def project_for_key(db: Database, secret: str) -> str | None:
    with db.session() as session:
        return session.scalar(select(ApiKey.project).where(ApiKey.key_hash == hash_key(secret)))


def list_keys(db: Database) -> list[ApiKey]:
    with db.session() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))
