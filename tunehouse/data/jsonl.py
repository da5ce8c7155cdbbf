"""Reading JSONL the forgiving way (BOM, CRLF, blank lines, no final newline) and saying exactly what breaks it.

Used at upload, where only what makes a file unusable as JSONL is refused, and by the deeper checks in
validate.py. Files are read line by line from disk: never the whole file in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

UTF8_BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 16 * 1024 * 1024
"""A longer line is reported as a problem (and skipped) instead of being loaded."""
MAX_REPORTED_PROBLEMS = 100


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, located by line (1-based) where it has one, and by the JSON field
    (`messages[2].role`, 0-based as in the file's JSON) where the problem is inside an example."""

    line: int | None
    code: str
    message: str
    field: str | None = None
    excerpt: str | None = None
    """The text at fault, abbreviated, where showing it helps (a line that is not JSON)."""

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class JsonLine(NamedTuple):
    """A line read as JSON (a tuple: one is made per line of a large file, and a frozen dataclass costs
    three times as much to make)."""

    line: int
    value: object
    text: str | None = None
    """The line as read (without BOM or line ending), for callers that write valid lines out unchanged."""


def iter_json_lines(path: Path, start: int = 0, end: int | None = None, first_line: int = 1) -> Iterator[JsonLine | Problem]:
    """Yield each non-blank line parsed as JSON, or a Problem saying why it could not be.

    A file that is one JSON array (pretty-printed or not) yields a single `json_array` problem and stops.
    `start`, `end` and `first_line` read only the lines that start in that byte range (from `line_ranges`),
    numbered as in the whole file.
    """
    with open(path, "rb") as handle:
        handle.seek(start)
        position = start
        line_no = first_line - 1
        first = start == 0
        while end is None or position < end:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            line_start, position = position, position + len(raw)
            line_no += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                position += _skip_rest_of_line(handle)
                yield Problem(line_no, "line_too_long", f"line is longer than {MAX_LINE_BYTES} bytes")
                continue
            if line_start == 0 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Problem(
                    line_no,
                    "invalid_encoding",
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line); "
                    "save the file as UTF-8",
                )
                continue
            if not text.strip():
                continue
            if first and text.lstrip().startswith("["):
                yield Problem(line_no, "json_array", _ARRAY_HINT)
                return
            first = False
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                excerpt = text[max(0, exc.pos - 30) : exc.pos + 30].strip()
                yield Problem(line_no, "invalid_json", f"not valid JSON: {exc.msg} (column {exc.colno})", excerpt=excerpt)
                continue
            except RecursionError:
                yield Problem(line_no, "invalid_json", "not valid JSON: nested too deeply")
                continue
            yield JsonLine(line_no, value, text.rstrip("\r\n"))


def _skip_rest_of_line(handle) -> int:
    skipped = 0
    while True:
        chunk = handle.readline(MAX_LINE_BYTES)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def line_ranges(path: Path, target_bytes: int) -> list[tuple[int, int, int]]:
    """`(start, end, first line number)` of consecutive pieces of about `target_bytes`, each cut after a
    newline, so that pieces can be read (`iter_json_lines`) in parallel and numbered as in the whole file."""
    ranges = []
    start, line = 0, 1
    with open(path, "rb") as handle:
        while True:
            block = handle.read(target_bytes)
            if not block:
                return ranges
            newlines = block.count(b"\n")
            end = start + len(block)
            if not block.endswith(b"\n"):
                rest = handle.readline(MAX_LINE_BYTES + 1)
                too_long = len(rest) > MAX_LINE_BYTES and not rest.endswith(b"\n")  # as iter_json_lines judges it
                end += len(rest) + (_skip_rest_of_line(handle) if too_long else 0)
                newlines += 1
            ranges.append((start, end, line))
            start, line = end, line + newlines


JSONL_EXPECTATION = "Expected file to have JSONL format, where every line is a valid JSON dictionary."


def check_jsonl_objects(path: Path) -> tuple[int, list[Problem], int]:
    """Check only that every line is a JSON object. Returns (objects, first problems, problem count).

    This is the upload-time check: what it refuses cannot be a dataset at all.
    """
    objects = 0
    problems: list[Problem] = []
    problem_count = 0
    for item in iter_json_lines(path):
        if isinstance(item, JsonLine) and isinstance(item.value, dict):
            objects += 1
            continue
        problem = not_an_object(item) if isinstance(item, JsonLine) else item
        problem_count += 1
        if len(problems) < MAX_REPORTED_PROBLEMS:
            problems.append(problem)
    if objects == 0 and problem_count == 0:
        problems.append(EMPTY_FILE)
        problem_count = 1
    return objects, problems, problem_count


EMPTY_FILE = Problem(None, "empty_file", "the file has no examples (it is empty or only blank lines)")


def not_an_object(item: JsonLine) -> Problem:
    return Problem(item.line, "data_type", f"expected a JSON object ({{...}}) on each line, found {json_type_name(item.value)}")


_ARRAY_HINT = (
    "the file is a JSON array, but JSONL needs one JSON object per line "
    "(convert it with: jq -c '.[]' data.json > data.jsonl)"
)


def json_type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def summarize_problems(problems: list[Problem], total: int, *, shown: int = 5) -> str:
    """`line 3: ...; line 9: ... (and 4 more problems)`."""
    text = "; ".join(str(p) for p in problems[:shown])
    if total > shown:
        text += f" (and {total - shown} more problem{'s' if total - shown > 1 else ''})"
    return text
