"""What training on a dataset costs before it starts: tokens as OpenAI counts them, `auto` epochs, dollars on
OpenAI, time on the embedded CPU backend.

Torch-free on purpose: the Slack bot imports it to answer within seconds of a file being dropped.
Token counts follow OpenAI's cookbook "Data preparation and analysis for chat model fine-tuning"
(`num_tokens_from_messages`): 3 tokens per message, the tokens of each of its values (role and content
included), +1 per `name`, +3 priming the reply. "Not exact", says the cookbook; what OpenAI bills is close.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MAX_DEFAULT_EPOCHS = 25


def auto_epochs(n_examples: int) -> int:
    """OpenAI's rule for `n_epochs: "auto"`: 3 epochs, scaled so examples x epochs lands in [100, 25000]."""
    if n_examples <= 0:
        return 1
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n_examples))
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(1, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


@dataclass(frozen=True)
class BaseModel:
    """What the estimates need to know about a base model OpenAI fine-tunes."""

    encoding: str
    context_tokens: int
    """Longest training example; OpenAI truncates longer ones (and bills only what it keeps)."""
    usd_per_million_training_tokens: float | None


TRAINING_PRICES_AS_OF = "2025-04-14"
"""When the prices below were read from OpenAI's pricing page (USD per 1M training tokens, standard tier).
Prices change: update the table and this date together."""
BASE_MODELS = {
    "gpt-4o-mini-2024-07-18": BaseModel("o200k_base", 65_536, 3.00),
    "gpt-4o-2024-08-06": BaseModel("o200k_base", 65_536, 25.00),
    "gpt-4.1-2025-04-14": BaseModel("o200k_base", 65_536, 25.00),
    "gpt-4.1-mini-2025-04-14": BaseModel("o200k_base", 65_536, 5.00),
    "gpt-4.1-nano-2025-04-14": BaseModel("o200k_base", 65_536, 1.50),
    "gpt-3.5-turbo-0125": BaseModel("cl100k_base", 16_385, 8.00),
}
ALIASES = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
}
DEFAULT_ENCODING = "o200k_base"
"""The gpt-4o and gpt-4.1 families' tokenizer."""
UNKNOWN_MODEL = BaseModel(DEFAULT_ENCODING, 65_536, None)
"""Any other name (the embedded backend's own models): today's encoding and context, no price."""


def resolve_snapshot(name: str) -> str:
    """The snapshot a name stands for: an alias (`gpt-4o-mini`) or a fine-tuned model (`ft:BASE:org::id`) gives
    its base snapshot; any other name is returned as it is."""
    if name.startswith("ft:"):
        name = name.split(":")[1]
    return ALIASES.get(name, name)


def base_model(name: str) -> BaseModel:
    return BASE_MODELS.get(resolve_snapshot(name), UNKNOWN_MODEL)


CPU_TOKENS_PER_SECOND_NATIVE_BF16 = 770.0
"""LoRA training throughput of the default model on 2 cores with native bf16 (AVX-512, `make bench`, 2026-12-02)."""
CPU_TOKENS_PER_SECOND_FP32 = 160.0
"""The same without native bf16 (fp32 on an AVX2 EPYC, 2026-12-03)."""


@functools.cache
def cpu_tokens_per_second_estimate() -> float:
    """The embedded backend's training speed on this machine, judged from /proc/cpuinfo without importing torch:
    AVX-512 with BF16 (or AMX) means native bf16 products."""
    try:
        flags = next(
            (line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("flags")),
            [],
        )
    except OSError:
        flags = []
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    return CPU_TOKENS_PER_SECOND_NATIVE_BF16 if native else CPU_TOKENS_PER_SECOND_FP32


@functools.cache
def _tokenizer(encoding: str):
    """bpe-openai's Rust tokenizer (tiktoken's encodings, offline). Its `count` is what `len(encode(text))`
    of bpe_openai's tiktoken-compatible `Encoding` computes, without building the list (4x faster).
    Loading takes ~0.1 s and ~65 MB, once per process."""
    return _rust_bindings().tokenizer_for_encoding(encoding)


@functools.cache
def _rust_bindings():
    """bpe_openai's compiled module alone. `import bpe_openai` first runs the package's __init__, which
    decodes every encoding's merge table into Python dicts (~1 s and ~60 MB) for its tiktoken-compatible
    `Encoding`, which token counting does not need."""
    package = importlib.util.find_spec("bpe_openai")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = Path(package.submodule_search_locations[0]) / f"_bindings{suffix}"
        if path.exists():
            loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(path))
            module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
            loader.exec_module(module)
            return module
    from bpe_openai import _bindings

    return _bindings


class TokenCounter:
    """Counts an example's tokens as the cookbook does, extended to what the cookbook cannot count: text
    parts are counted as their text, tool calls and tool definitions as their JSON, `weight` not at all."""

    def __init__(self, encoding: str = DEFAULT_ENCODING):
        self.encoding = encoding
        self._count = _tokenizer(encoding).count
        self._repeated: dict[str, int] = {}

    def text(self, text: str) -> int:
        return self._count(text)

    def _short(self, text: str) -> int:
        """Roles, names and system prompts repeat from example to example: counted once each."""
        count = self._repeated.get(text)
        if count is None:
            if len(self._repeated) > 10_000:
                self._repeated.clear()
            count = self._repeated[text] = self._count(text)
        return count

    def example(self, record: dict) -> int:
        """Tokens of one chat example `{"messages": [...], "tools"?: [...]}` that passed the checks."""
        total = REPLY_PRIMING_TOKENS
        count, repeated = self._count, self._repeated
        for message in record["messages"]:
            content = message.get("content")
            if len(message) == 2 and type(content) is str:  # {"role", "content"}: most messages
                role = message["role"]
                total += TOKENS_PER_MESSAGE + (repeated.get(role) or self._short(role))
                total += self._short(content) if role == "system" else count(content)
            else:
                total += self._message(message)
        for key in ("tools", "functions"):
            if record.get(key):
                total += count(_compact_json(record[key]))
        return total

    def _message(self, message: dict) -> int:
        total = TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "weight" or value is None:
                continue
            if key == "content" and isinstance(value, list):
                total += sum(self._count(part["text"]) for part in value)
            elif key == "content" and message["role"] != "system":
                total += self._count(value)
            elif isinstance(value, str):
                total += self._short(value) + (TOKENS_PER_NAME if key == "name" else 0)
            else:
                total += self._count(_compact_json(value))
        return total


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
