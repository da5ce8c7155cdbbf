"""The bot's dataset intake: a file someone dropped into a channel, read, converted to OpenAI chat JSONL,
checked by OpenAI's rules, and summed up in a report. Nothing here knows Slack.

    report = analyse(path, "faq.xlsx", out_dir, base_model="gpt-4o-mini-2024-07-18", backend="openai")
    if report.ok: ...                                  # report.converted_path is what to train on
    elif report.can_drop_bad: report = drop_bad(report)

Reading, conversion and the example checks are tunehouse.data's (formats.py, validate.py), shared with the
API; this module adds what a person deciding whether to train wants: token statistics, cost or time,
duplicates, likely secrets, and every problem with its line or row. It reads as a stream and keeps per
example only a hash and a token count, so a 50 MB file fits in well under 200 MB.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import tempfile
from array import array
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from tunehouse.data.costs import (
    DEFAULT_ENCODING,
    TRAINING_PRICES_AS_OF,
    BaseModel,
    TokenCounter,
    auto_epochs,
    base_model as base_model_info,
    cpu_tokens_per_second_estimate,
    resolve_snapshot,
)
from tunehouse.data.formats import JSONL, ColumnMapping, DatasetReading, SourceExample, UnreadableFile, open_dataset
from tunehouse.data.jsonl import line_ranges
from tunehouse.data.leaks import find_leaks, mask_leaks
from tunehouse.data.validate import RECOMMENDED_MIN_EXAMPLES
from tunehouse.processes import die_with_parent

__all__ = [
    "ColumnMapping",
    "IntakeLimits",
    "IntakeReport",
    "Issue",
    "TokenStats",
    "analyse",
    "csv_safe",
    "drop_bad",
    "prepare",
    "write_error_report",
]

log = logging.getLogger(__name__)

Backend = Literal["openai", "embedded"]
SHOWN_PLACES = 5
"""How many lines or rows a warning names before it says "..."."""
WRITE_BATCH = 2000
"""Examples per tally when the bot's process reads a file itself: one write and one secrets scan per batch."""


@dataclass(frozen=True)
class IntakeLimits:
    max_bytes: int = 50 * 1024 * 1024
    """Refused before reading: a fine-tuning set this size is already ~100k examples."""
    max_kept_errors: int = 10_000
    """Errors kept in the report (all are counted); the rest are summed up, not listed."""


@dataclass(frozen=True)
class Issue:
    """One error: where (`line 7`, `row 12`, `item 3`, None for the whole file), the field or column, and why."""

    where: str | None
    field: str | None
    message: str
    code: str
    excerpt: str = ""
    """The offending text, abbreviated, with likely secrets masked."""

    def __str__(self) -> str:
        place = " · ".join(part for part in (self.where, self.field) if part)
        return f"{place}: {self.message}" if place else self.message


@dataclass(frozen=True)
class TokenStats:
    """Tokens per converted example, counted as OpenAI's cookbook counts them."""

    encoding: str
    context_limit: int
    min: int
    median: int
    p90: int
    max: int
    total: int
    over_context: int
    """Examples longer than `context_limit`: OpenAI truncates them (and bills only what it keeps)."""


@dataclass(frozen=True)
class IntakeReport:
    """What the intake found. `ok` means the converted file can be trained on as it is."""

    filename: str
    base_model: str
    backend: str
    format_label: str = ""
    examples_read: int = 0
    examples_converted: int = 0
    """Good examples, all in `converted_path` (a bad example is never written there)."""
    examples_skipped: int = 0
    """Examples with at least one error."""
    errors: tuple[Issue, ...] = ()
    error_count: int = 0
    """All errors, `errors` lists the first `IntakeLimits.max_kept_errors`."""
    warnings: tuple[str, ...] = ()
    """Sentences for a person; none of them blocks training."""
    duplicates: int = 0
    examples_with_secrets: int = 0
    tokens: TokenStats | None = None
    epochs: int = 0
    """OpenAI's `auto` for this many examples."""
    trained_tokens: int = 0
    """What training processes (and OpenAI bills): sum of min(tokens, context limit) x epochs."""
    cost_usd: float | None = None
    """OpenAI backend, known model: trained tokens at the price in `price_note`."""
    price_note: str = ""
    estimated_seconds: float | None = None
    """Embedded backend: trained tokens at `tokens_per_second`."""
    tokens_per_second: float | None = None
    first_example: list[dict] | None = None
    """The first converted example's messages, as the model will see them."""
    system_message: str | None = None
    """The system message every example starts with, when they all share one."""
    content_hash: str | None = None
    """sha256 of the converted JSONL."""
    converted_path: Path | None = None
    fatal: str | None = None
    """A whole-file problem that stopped reading, as a sentence."""
    needs_mapping: list[str] | None = None
    """A table without a known column pair: its headers, to map with a ColumnMapping."""
    dropped: int = 0
    """Bad examples left out by `drop_bad`."""

    @property
    def ok(self) -> bool:
        return not (self.fatal or self.errors or self.error_count or self.needs_mapping) and self.examples_converted > 0

    @property
    def can_drop_bad(self) -> bool:
        """Errors are all in single examples, and good ones remain: training on those is an option."""
        file_wide = any(issue.where is None for issue in self.errors)
        return bool(self.error_count) and not self.fatal and not file_wide and self.examples_converted > 0

    def to_dict(self) -> dict:
        """JSON-ready, for storage; `from_dict` gives the report back."""
        data = dataclasses.asdict(self)
        data["converted_path"] = str(self.converted_path) if self.converted_path else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> IntakeReport:
        data = dict(data)
        data["errors"] = tuple(Issue(**issue) for issue in data.get("errors", ()))
        data["warnings"] = tuple(data.get("warnings", ()))
        data["tokens"] = TokenStats(**data["tokens"]) if data.get("tokens") else None
        data["converted_path"] = Path(data["converted_path"]) if data.get("converted_path") else None
        return cls(**data)


def analyse(
    source: Path,
    filename: str,
    out_dir: Path,
    *,
    base_model: str,
    backend: Backend,
    mapping: ColumnMapping | None = None,
    limits: IntakeLimits = IntakeLimits(),
) -> IntakeReport:
    """Read `source` (named `filename` by whoever shared it), write its chat JSONL into `out_dir` as
    `<sha256>.jsonl`, and report. Never raises for what the file holds: a bug in a reader becomes a `fatal`
    "could not read this file" (and a log entry with the traceback)."""
    blank = IntakeReport(filename=filename, base_model=base_model, backend=backend)
    try:
        size = source.stat().st_size
        if size > limits.max_bytes:
            return dataclasses.replace(
                blank,
                fatal=f"The file is {size / 1e6:,.1f} MB, over the {limits.max_bytes / 1e6:,.0f} MB limit; "
                "send a smaller sample (a few thousand examples are plenty to start).",
            )
        reading = open_dataset(source, mapping)
        if reading.needs_mapping:
            return dataclasses.replace(blank, format_label=reading.label, needs_mapping=list(reading.headers))
        return _analyse_examples(reading, blank, out_dir, limits)
    except UnreadableFile as refusal:
        return dataclasses.replace(blank, fatal=str(refusal))
    except Exception as exc:  # a bug in a reader must not take the bot's answer with it
        log.exception("could not read %r", filename)
        return dataclasses.replace(
            blank, fatal=f"could not read this file: the reader failed ({type(exc).__name__}); the error is logged."
        )


def drop_bad(report: IntakeReport) -> IntakeReport:
    """The report for training on the good examples only. The converted file already holds only those, so
    this is the same file, without the errors that blocked it. Raises ValueError when nothing good is left."""
    if not report.can_drop_bad:
        raise ValueError("this report has no bad examples to drop, or nothing would be left")
    return dataclasses.replace(report, errors=(), error_count=0, dropped=report.examples_skipped)


# --- the pass over the file -------------------------------------------------------------------------------

PARALLEL_MIN_BYTES = 8 * 1024 * 1024
"""A JSONL this large is read by the worker processes, a piece each (below it, starting them costs more)."""
PIECE_BYTES = 2 * 1024 * 1024
IN_FLIGHT_PER_WORKER = 2
"""Pieces handed out ahead of the merge, per worker: enough to keep them busy, few enough to bound memory."""

WORKER_COUNT = min(2, os.cpu_count() or 1)
"""Worker processes for large files: the bot's machine has 2 cores, and token counting holds the GIL."""

_workers: ProcessPoolExecutor | None = None


def prepare() -> None:
    """Start the worker processes (each loads the tokenizer as it starts) and load the tokenizer here too:
    ~1 s once, so the bot calls this at start-up and the first large file is read as fast as the next."""
    pool = _pool()
    if pool is not None:
        for started in [pool.submit(int) for _ in range(WORKER_COUNT)]:
            started.result()
    TokenCounter(DEFAULT_ENCODING)


def _pool() -> ProcessPoolExecutor | None:
    """The worker processes, spawned (never a fork of the bot's threads); None on one core."""
    global _workers
    if WORKER_COUNT < 2:
        return None
    if _workers is None:
        _workers = ProcessPoolExecutor(
            max_workers=WORKER_COUNT,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(DEFAULT_ENCODING,),
        )
    return _workers


def _start_worker(encoding: str) -> None:
    """Load the tokenizer, and end with the bot however it ends: a bot killed with SIGKILL (a crash, a
    deploy) would otherwise leave its workers behind, ~80 MB each, at every restart."""
    die_with_parent(signal.SIGTERM)
    TokenCounter(encoding)


@dataclass(frozen=True)
class _Settings:
    """What a worker needs besides the file: the model's tokenizer and context, and the report's caps."""

    encoding: str
    context_limit: int
    max_kept_errors: int


@dataclass
class _Tally:
    """What a stretch of the file gave: the converted lines, and per example only a hash and a token count.

    Filled by `add`, closed by `seal` (in a worker for a piece of a large JSONL, else in the bot's process), and
    merged in file order by `_Merge.absorb`.
    """

    unit: str
    lines: list[str] = field(default_factory=list)
    data: bytes = b""
    read: int = 0
    skipped: int = 0
    error_count: int = 0
    missing_assistant: int = 0
    errors: list[Issue] = field(default_factory=list)
    positions: array = field(default_factory=lambda: array("l"))
    lengths: array = field(default_factory=lambda: array("l"))
    hashes: list[bytes] = field(default_factory=list)
    over_context: list[int] = field(default_factory=list)
    leak_count: int = 0
    leaks: list[tuple[int, str]] = field(default_factory=list)
    no_user_count: int = 0
    no_user: list[int] = field(default_factory=list)
    ignored_keys: Counter = field(default_factory=Counter)
    formula_count: int = 0
    formulas: list[tuple[int, str]] = field(default_factory=list)
    first_example: list[dict] | None = None
    system: str | None = None
    system_shared: bool = True

    def add(self, example: SourceExample, counter: TokenCounter, settings: _Settings) -> None:
        self.read += 1
        if example.ignored_keys:
            self.ignored_keys.update(example.ignored_keys)
        if example.record is None:
            self._bad(example, settings)
            return
        record, position = example.record, example.position
        messages = record["messages"]
        self.lines.append(example.line_text or json.dumps(record, ensure_ascii=False))
        self.positions.append(position)
        tokens = counter.example(record)
        self.lengths.append(tokens)
        if tokens > settings.context_limit and len(self.over_context) < SHOWN_PLACES:
            self.over_context.append(position)
        system = _system_text(messages)
        if self.first_example is None:
            self.first_example, self.system = messages, system
        elif system != self.system:
            self.system_shared = False
        if "user" not in [message.get("role") for message in messages]:
            self.no_user_count += 1
            if len(self.no_user) < SHOWN_PLACES:
                self.no_user.append(position)
        if example.formula_columns:
            self.formula_count += len(example.formula_columns)
            self.formulas += [(position, name) for name in example.formula_columns][: SHOWN_PLACES - len(self.formulas)]

    def _bad(self, example: SourceExample, settings: _Settings) -> None:
        self.skipped += 1
        for problem in example.problems:
            self.error_count += 1
            if problem.code == "example_missing_assistant_message":
                self.missing_assistant += 1
            if len(self.errors) < settings.max_kept_errors:
                self.errors.append(
                    Issue(
                        where=f"{self.unit} {problem.line or example.position}",
                        field=problem.field,
                        message=problem.message,
                        code=problem.code,
                        excerpt=mask_leaks(problem.excerpt or ""),
                    )
                )

    def seal(self) -> _Tally:
        """Encode the converted lines, hash each (for duplicates across pieces) and look for secrets in
        them in one pass per pattern."""
        if not self.lines:
            return self
        text = "\n".join(self.lines) + "\n"
        self.data = text.encode("utf-8")
        self.hashes = [hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest() for line in self.lines]
        starts = array("l", [0])
        for line in self.lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        flagged: dict[int, str] = {}
        for leak in find_leaks(text):
            flagged.setdefault(self.positions[bisect.bisect_right(starts, leak.start) - 1], leak.kind)
        self.leak_count = len(flagged)
        self.leaks = sorted(flagged.items())[:SHOWN_PLACES]
        self.lines = []
        return self


def _tally_piece(reading: DatasetReading, piece: tuple[int, int, int], settings: _Settings) -> _Tally:
    """A worker's share: the examples of one piece of a JSONL, tallied."""
    counter = TokenCounter(settings.encoding)
    tally = _Tally(reading.unit)
    for example in reading.examples_in(*piece):
        tally.add(example, counter, settings)
    return tally.seal()


@dataclass
class _Merge:
    """The tallies of a whole file, absorbed in file order: converted file, duplicates, and the report."""

    reading: DatasetReading
    blank: IntakeReport
    limits: IntakeLimits
    out: BinaryIO
    digest: Any = field(default_factory=hashlib.sha256)
    total: _Tally = field(init=False)
    seen: dict[bytes, int] = field(default_factory=dict)
    duplicate_count: int = 0
    duplicates: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.total = _Tally(self.reading.unit)

    def absorb(self, tally: _Tally) -> None:
        total = self.total
        self.out.write(tally.data)
        self.digest.update(tally.data)
        for position, key in zip(tally.positions, tally.hashes):
            first = self.seen.setdefault(key, position)
            if first != position:
                self.duplicate_count += 1
                if len(self.duplicates) < SHOWN_PLACES:
                    self.duplicates.append((position, first))
        if tally.lengths:
            if total.first_example is None:
                total.first_example, total.system = tally.first_example, tally.system
            total.system_shared = total.system_shared and tally.system_shared and tally.system == total.system
        total.read += tally.read
        total.skipped += tally.skipped
        total.error_count += tally.error_count
        total.missing_assistant += tally.missing_assistant
        total.errors += tally.errors[: self.limits.max_kept_errors - len(total.errors)]
        total.lengths.extend(tally.lengths)
        total.leak_count += tally.leak_count
        total.formula_count += tally.formula_count
        total.no_user_count += tally.no_user_count
        total.ignored_keys.update(tally.ignored_keys)
        for kept, more in (
            (total.over_context, tally.over_context),
            (total.leaks, tally.leaks),
            (total.no_user, tally.no_user),
            (total.formulas, tally.formulas),
        ):
            kept += more[: SHOWN_PLACES - len(kept)]

    def report(self, model: BaseModel, encoding: str, converted_path: Path | None) -> IntakeReport:
        total, unit = self.total, self.reading.unit
        converted = len(total.lengths)
        if total.read == 0:
            return dataclasses.replace(self.blank, format_label=self.reading.label, fatal="The file has no examples.")
        errors, error_count = total.errors, total.error_count
        if converted == 0 and total.missing_assistant == total.read:
            whole_file = Issue(
                None,
                None,
                f"None of the {total.read} examples has an assistant message. A model learns from the assistant's "
                'replies: every example needs at least one {"role": "assistant", "content": ...} turn.',
                "no_assistant_messages",
            )
            errors, error_count = [whole_file, *errors], error_count + 1
        report = dataclasses.replace(
            self.blank,
            format_label=self.reading.label,
            examples_read=total.read,
            examples_converted=converted,
            examples_skipped=total.skipped,
            errors=tuple(errors),
            error_count=error_count,
            duplicates=self.duplicate_count,
            examples_with_secrets=total.leak_count,
            first_example=total.first_example,
            system_message=total.system if total.system_shared else None,
            content_hash=self.digest.hexdigest() if converted else None,
            converted_path=converted_path,
        )
        if converted:
            report = dataclasses.replace(report, **_estimates(total.lengths, model, encoding, self.blank))
        return dataclasses.replace(report, warnings=tuple(self._warnings(report, model.context_tokens, unit)))

    def _warnings(self, report: IntakeReport, limit: int, unit: str) -> list[str]:
        total = self.total
        warnings = []
        converted = report.examples_converted
        if 0 < converted < RECOMMENDED_MIN_EXAMPLES:
            consequence = (
                "OpenAI refuses to train on fewer."
                if report.backend == "openai"
                else "The embedded backend trains anyway; expect the model to learn little from so few."
            )
            warnings.append(
                f"Only {converted} example{'s' if converted != 1 else ''}: OpenAI requires at least "
                f"{RECOMMENDED_MIN_EXAMPLES} and recommends 50 to 100. {consequence}"
            )
        if report.tokens and report.tokens.over_context:
            n = report.tokens.over_context
            warnings.append(
                f"{n} example{'s are' if n != 1 else ' is'} longer than the {limit:,}-token training context of "
                f"{report.base_model} ({_places(unit, total.over_context, n)}): only the first {limit:,} tokens "
                "of each are trained on."
            )
        if self.duplicate_count:
            pairs = "; ".join(f"{unit} {later} repeats {unit} {first}" for later, first in self.duplicates)
            more = ", ..." if self.duplicate_count > len(self.duplicates) else ""
            warnings.append(
                f"{self.duplicate_count} duplicate example{'s' if self.duplicate_count != 1 else ''} ({pairs}{more}): "
                "a repeated example weighs more in training; remove the copies unless that is what you want."
            )
        if total.leak_count:
            found = "; ".join(f"{unit} {position}: {kind}" for position, kind in total.leaks)
            more = "; ..." if total.leak_count > len(total.leaks) else ""
            warnings.append(
                f"Likely secrets in {total.leak_count} example{'s' if total.leak_count != 1 else ''} ({found}{more}): "
                "a fine-tuned model can repeat what it was trained on; remove them before training."
            )
        if total.no_user_count:
            warnings.append(f"Examples without a user message: {_places(unit, total.no_user, total.no_user_count)}.")
        if total.ignored_keys:
            keys = ", ".join(f"`{key}` ({n} {unit}{'s' if n != 1 else ''})" for key, n in total.ignored_keys.most_common(5))
            warnings.append(f"Left out of the converted file, as OpenAI's format has no such keys: {keys}.")
        if total.formula_count:
            n = total.formula_count
            cells = "; ".join(f"row {row}, column {column}" for row, column in total.formulas)
            more = "; ..." if n > len(total.formulas) else ""
            warnings.append(
                f"{n} cell{'s hold formulas' if n != 1 else ' holds a formula'} ({cells}{more}), read as the "
                "formula's text, not its result. To train on the results, paste them as values in your "
                "spreadsheet and share it again."
            )
        return warnings


def _analyse_examples(reading: DatasetReading, blank: IntakeReport, out_dir: Path, limits: IntakeLimits) -> IntakeReport:
    """Tally every example, in worker processes for a large JSONL, and write `<sha256>.jsonl` in `out_dir`."""
    model = base_model_info(blank.base_model)
    settings = _Settings(model.encoding, model.context_tokens, limits.max_kept_errors)
    out_dir.mkdir(parents=True, exist_ok=True)
    handle, part = tempfile.mkstemp(dir=out_dir, prefix=".converting-", suffix=".jsonl")
    try:
        with os.fdopen(handle, "wb") as out:
            merge = _Merge(reading, blank, limits, out)
            pieces = _pieces(reading)
            if pieces:
                _tally_in_workers(reading, pieces, settings, merge)
            else:
                _tally_here(reading, settings, merge)
        converted_path = None
        if merge.total.lengths:
            converted_path = out_dir / f"{merge.digest.hexdigest()}.jsonl"
            os.replace(part, converted_path)
    finally:
        if os.path.exists(part):
            os.unlink(part)
    return merge.report(model, settings.encoding, converted_path)


def _tally_here(reading: DatasetReading, settings: _Settings, merge: _Merge) -> None:
    counter = TokenCounter(settings.encoding)
    tally = _Tally(reading.unit)
    for example in reading.examples():
        tally.add(example, counter, settings)
        if tally.read >= WRITE_BATCH:
            merge.absorb(tally.seal())
            tally = _Tally(reading.unit)
    merge.absorb(tally.seal())


def _pieces(reading: DatasetReading) -> list[tuple[int, int, int]]:
    """Pieces of a large JSONL for the workers, once the file's format is known from its first examples
    (each worker must judge mixed formats against the same first one); [] to read it here."""
    if reading.kind != JSONL or reading.path.stat().st_size < PARALLEL_MIN_BYTES or _pool() is None:
        return []
    for number, _ in enumerate(reading.examples()):
        if reading.checker.format is not None or number > 1000:
            break
    if reading.checker.format is None:
        return []
    return line_ranges(reading.path, PIECE_BYTES)


def _tally_in_workers(reading: DatasetReading, pieces: list, settings: _Settings, merge: _Merge) -> None:
    """Hand the pieces out, a few ahead of the merge, and absorb the results in file order."""
    pool = _pool()
    ahead = IN_FLIGHT_PER_WORKER * WORKER_COUNT
    pending: deque = deque()
    try:
        for piece in pieces:
            pending.append(pool.submit(_tally_piece, reading, piece, settings))
            if len(pending) >= ahead:
                merge.absorb(pending.popleft().result())
        while pending:
            merge.absorb(pending.popleft().result())
    except BrokenProcessPool:
        _reset_pool()
        raise
    finally:
        for future in pending:
            future.cancel()


def _reset_pool() -> None:
    """A worker died (killed for memory, or crashed on a file): the next file gets fresh ones."""
    global _workers
    if _workers is not None:
        _workers.shutdown(wait=False, cancel_futures=True)
        _workers = None


def _estimates(lengths: array, model, encoding: str, blank: IntakeReport) -> dict:
    """Token statistics, `auto` epochs, trained tokens, and cost (OpenAI) or time (embedded)."""
    ordered = sorted(lengths)
    n = len(ordered)
    limit = model.context_tokens
    epochs = auto_epochs(n)
    trained = sum(min(tokens, limit) for tokens in ordered) * epochs
    estimates = {
        "tokens": TokenStats(
            encoding=encoding,
            context_limit=limit,
            min=ordered[0],
            median=ordered[(n - 1) // 2],
            p90=ordered[min(n - 1, int(0.9 * n))],
            max=ordered[-1],
            total=sum(ordered),
            over_context=n - bisect.bisect_right(ordered, limit),
        ),
        "epochs": epochs,
        "trained_tokens": trained,
    }
    if blank.backend == "openai":
        price = model.usd_per_million_training_tokens
        snapshot = resolve_snapshot(blank.base_model)
        if price is None:
            estimates["price_note"] = f"no price known for {blank.base_model}"
        else:
            estimates["cost_usd"] = round(trained * price / 1e6, 6)
            estimates["price_note"] = (
                f"{snapshot} at ${price:.2f} per 1M training tokens, OpenAI's price as of {TRAINING_PRICES_AS_OF}"
            )
    else:
        speed = cpu_tokens_per_second_estimate()
        estimates["tokens_per_second"] = speed
        estimates["estimated_seconds"] = round(trained / speed, 1)
    return estimates


def _system_text(messages: list[dict]) -> str | None:
    first = messages[0]
    if first.get("role") in ("system", "developer") and isinstance(first.get("content"), str):
        return first["content"]
    return None


def _places(unit: str, positions: list[int], total: int) -> str:
    shown = ", ".join(str(position) for position in positions[:SHOWN_PLACES])
    more = ", ..." if total > min(len(positions), SHOWN_PLACES) else ""
    return f"{unit}{'s' if total != 1 else ''} {shown}{more}"


# --- the error report -------------------------------------------------------------------------------------

_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(cell: str) -> str:
    """A cell spreadsheet apps will show as text: one starting with `=`, `+`, `-`, `@`, tab or CR is a formula
    to Excel and LibreOffice (CSV injection), so it gets a leading `'`."""
    return "'" + cell if cell.startswith(_FORMULA_TRIGGERS) else cell


def write_error_report(report: IntakeReport, path: Path) -> Path:
    """Every kept error as CSV (location, field, problem, text), for a spreadsheet; returns `path`.

    UTF-8 with a BOM, so Excel reads non-ASCII text correctly."""
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["where", "field", "problem", "text"])
        for issue in report.errors:
            cells = [issue.where or "whole file", issue.field or "", issue.message, issue.excerpt]
            writer.writerow([csv_safe(cell) for cell in cells])
        unlisted = report.error_count - len(report.errors)
        if unlisted > 0:
            writer.writerow(["", "", f"and {unlisted} more errors, not listed", ""])
    return path
