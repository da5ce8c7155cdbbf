"""Any dataset file people drop into Slack, read as a stream of OpenAI chat examples.

What a file is gets judged by its content, not its name (a `.txt` that is JSONL is JSONL; an XLSX is a zip
holding `xl/workbook.xml`): JSONL or a JSON array of chat `messages`, `prompt`/`completion`, Alpaca or
ShareGPT records, or a CSV, TSV or XLSX table whose header row names a column pair. Every example keeps
where it came from: line N of a JSONL, item N of a JSON array, row N of a table as a spreadsheet shows it
(header = row 1), and is checked by the same functions the API uses (validate.py). Texts are kept exactly as
written: nothing is stripped, and a cell starting with `=` is text, never evaluated.

    reading = open_dataset(path)                    # raises UnreadableFile for a whole-file problem
    if reading.needs_mapping: ...                   # a table without a known pair: reading.headers
    for example in reading.examples(): ...          # SourceExample, in file order; may raise UnreadableFile
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .jsonl import MAX_LINE_BYTES, UTF8_BOM, Problem, iter_json_lines
from .validate import (
    ALPACA,
    CHAT,
    FORMAT_LABELS,
    PROMPT_COMPLETION,
    SHAREGPT,
    SHAREGPT_ROLES,
    RecordChecker,
    check_chat,
    detect_format,
    plainly_valid_chat,
    unknown_keys,
)

JSONL, JSON_ARRAY, CSV, TSV, XLSX = "JSONL", "JSON array", "CSV", "TSV", "XLSX"
CONVERTIBLE_FORMATS = (CHAT, PROMPT_COMPLETION, ALPACA, SHAREGPT)
"""Record formats the bot turns into chat examples (preference pairs are not trained from Slack)."""

SNIFF_BYTES = 64 * 1024
EXCERPT_CHARS = 80
MAX_XLSX_UNCOMPRESSED_BYTES = 300 * 1024 * 1024
MAX_XLSX_COMPRESSION_RATIO = 100
"""Real spreadsheets compress 5-20x; a zip bomb, thousands of times."""


class UnreadableFile(ValueError):
    """A whole-file problem that stops reading; the message says what and where, for a person."""


@dataclass(frozen=True)
class ColumnMapping:
    """Which table columns (header names, any case) become the user turn, the assistant turn and the system turn."""

    prompt: str
    completion: str
    system: str | None = None


@dataclass
class SourceExample:
    """One example as read: its chat form when it passed every check, else the problems that stop it."""

    position: int
    """Line, item or row number, 1-based, as the person who made the file counts."""
    record: dict | None
    problems: list[Problem] = field(default_factory=list)
    line_text: str | None = None
    """The JSONL line itself when `record` is it unchanged (written out as it is: no re-encoding)."""
    ignored_keys: tuple[str, ...] = ()
    """Keys outside OpenAI's format, left out of `record`."""
    formula_columns: tuple[str, ...] = ()
    """XLSX columns whose cell in this row is a formula, read as its text (`=A2*2`), not its result."""


# --- what kind of file ------------------------------------------------------------------------------------

_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (.xls or .doc); save it as .xlsx or CSV"),
    (b"PAR1", "a Parquet file; export it as JSONL or CSV"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program (ELF)"),
    (b"\xff\xfe", "UTF-16 text; save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text; save it as UTF-8"),
]
_EXPECTED = (
    "a dataset is JSONL (one JSON object per line), a JSON array, or a CSV, TSV or XLSX table with a header "
    "row such as prompt,completion"
)


def sniff_kind(path: Path) -> str:
    """JSONL, JSON_ARRAY, CSV, TSV or XLSX from the first bytes; raises UnreadableFile for anything else."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        raise UnreadableFile("The file is empty.")
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head[:12].startswith(b"RIFF") and head[8:12] == b"WEBP":
        raise UnreadableFile(f"This is a WebP image, not a dataset: {_EXPECTED}.")
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise UnreadableFile(f"This is {what}, not a dataset: {_EXPECTED}.")
    if b"\x00" in head:
        raise UnreadableFile(f"This is binary data, not text: {_EXPECTED}.")
    text = head.removeprefix(UTF8_BOM).decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UnreadableFile("The file has no examples: it holds only blank lines.")
    if lines[0].startswith("["):
        return JSON_ARRAY
    sample = lines[:20]
    if lines[0].startswith("{") or sum(line.startswith("{") for line in sample) * 2 > len(sample):
        return JSONL
    return TSV if _delimiter(lines[0]) == "\t" else CSV


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise UnreadableFile(f"This looks like a zip file but it is damaged ({exc}).") from None
    if "xl/workbook.xml" in names:
        return XLSX
    if "word/document.xml" in names:
        raise UnreadableFile(f"This is a Word document, not a dataset: {_EXPECTED}.")
    if any(name.startswith("ppt/") for name in names):
        raise UnreadableFile(f"This is a PowerPoint file, not a dataset: {_EXPECTED}.")
    if "content.xml" in names:
        raise UnreadableFile("This is an OpenDocument file; save the spreadsheet as .xlsx or CSV.")
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise UnreadableFile(
        f"This is a zip archive of {len(names)} file(s) ({shown}), not a dataset: send the dataset file itself."
    )


def _delimiter(header: str) -> str:
    """The separator a header line uses: tab, semicolon (European Excel) or comma, whichever it has most of."""
    counts = {delimiter: header.count(delimiter) for delimiter in (",", "\t", ";")}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


# --- the dataset being read -------------------------------------------------------------------------------

TABLE_PAIRS = [
    # (name, user column(s), assistant column(s)); the first pair whose columns all exist wins
    ("prompt/completion", ("prompt",), ("completion",)),
    ("question/answer", ("question",), ("answer",)),
    ("instruction/input/output", ("instruction", "input"), ("output",)),
    ("instruction/input/response", ("instruction", "input"), ("response",)),
    ("instruction/output", ("instruction",), ("output",)),
    ("instruction/response", ("instruction",), ("response",)),
    ("input/output", ("input",), ("output",)),
    ("user/assistant", ("user",), ("assistant",)),
]
MAPPED = "mapped columns"
TABLE_NEEDS = (
    "a header row naming a pair of columns: prompt/completion, question/answer, input/output, "
    "instruction (+ input)/output or response, or user/assistant, with an optional system column"
)


@dataclass
class _TableColumns:
    """Column indexes of a table's pair: user text is `instruction`, or instruction + blank line + input."""

    pair: str
    user: int
    assistant: int
    extra_input: int | None = None
    system: int | None = None
    headers: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[int]:
        """The columns read, in the order the turns use them."""
        return [index for index in (self.user, self.extra_input, self.assistant, self.system) if index is not None]

    @property
    def names(self) -> list[str]:
        """The header cells used, as written in the file."""
        return [self.headers[index] for index in self.used]


@dataclass
class DatasetReading:
    """An opened dataset: what it is, and its examples as a stream (read once)."""

    path: Path
    kind: str
    unit: str
    headers: list[str] = field(default_factory=list)
    """A table's header row, as written."""
    header_row: int = 1
    needs_mapping: bool = False
    """A table without a known column pair: convert it with a ColumnMapping."""
    columns: _TableColumns | None = None
    checker: RecordChecker | None = None

    @property
    def format(self) -> str | None:
        """The record format of a JSONL or JSON array, as far as it has been read (tables have none)."""
        return self.checker.format if self.checker is not None else None

    @property
    def label(self) -> str:
        """`JSONL · chat messages`, `CSV · question/answer (columns Question, Answer)`,
        `CSV · mapped columns (City → user, Price → assistant)`."""
        columns = self.columns
        if columns is not None and columns.pair == MAPPED:
            roles = [(columns.user, "user"), (columns.assistant, "assistant"), (columns.system, "system")]
            mapped = ", ".join(f"{columns.headers[index]} → {role}" for index, role in roles if index is not None)
            return f"{self.kind} · {MAPPED} ({mapped})"
        if columns is not None:
            return f"{self.kind} · {columns.pair} (columns {', '.join(columns.names)})"
        if self.needs_mapping:
            return f"{self.kind} · columns to map"
        return f"{self.kind} · {FORMAT_LABELS.get(self.format or '', 'no examples')}"

    def examples_in(self, start: int, end: int, first_line: int) -> Iterator[SourceExample]:
        """The examples of a JSONL on the lines that start in bytes [start, end) (see jsonl.line_ranges)."""
        return _jsonl_examples(self.path, self.checker, start, end, first_line)

    def examples(self) -> Iterator[SourceExample]:
        if self.kind == JSONL:
            return _jsonl_examples(self.path, self.checker)
        if self.kind == JSON_ARRAY:
            return _array_examples(self.path, self.checker)
        if self.needs_mapping:
            return iter(())
        rows = _xlsx_rows(self.path) if self.kind == XLSX else _text_rows(self.path, self.kind)
        for number, _ in rows:  # up to the header, read again
            if number == self.header_row:
                break
        return _table_examples(rows, self.columns)


def open_dataset(path: Path, mapping: ColumnMapping | None = None) -> DatasetReading:
    """Judge what `path` holds (by content: its name is not trusted) and get ready to read it; `mapping`
    names a table's columns. Raises UnreadableFile for a file that cannot be a dataset, with the reason."""
    kind = sniff_kind(path)
    if kind in (JSONL, JSON_ARRAY):
        unit = "line" if kind == JSONL else "item"
        return DatasetReading(path, kind, unit, checker=RecordChecker(CONVERTIBLE_FORMATS, unit=unit))
    if kind == XLSX:
        check_xlsx_size(path)
    rows = _xlsx_rows(path) if kind == XLSX else _text_rows(path, kind)
    header_row, header = next(((number, row) for number, row in rows if _is_row_with_text(row)), (0, None))
    if header is None:
        raise UnreadableFile("The table is empty.")
    if isinstance(header, Problem):
        raise UnreadableFile(f"The header row (row {header_row}) is {header.message}.")
    headers = [_cell_text(cell) for cell in header]
    named = [name for name in headers if name.strip()]
    if len(named) < 2:
        if kind != XLSX:
            raise UnreadableFile(f"This looks like plain text, not a dataset: {_EXPECTED}.")
        raise UnreadableFile(f"The sheet has one column ({', '.join(named)}); a dataset needs {TABLE_NEEDS}.")
    if not any(_is_row_with_text(row) for _, row in rows):
        raise UnreadableFile(f"The table has a header row ({', '.join(named)}) but no rows under the header.")
    reading = DatasetReading(path, kind, "row", headers=headers, header_row=header_row)
    if mapping is not None:
        reading.columns = _mapped_columns(headers, mapping)
    else:
        reading.columns = _known_columns(headers)
        reading.needs_mapping = reading.columns is None
    return reading


def check_xlsx_size(path: Path) -> None:
    """Refuse a workbook that would expand to an absurd size, before expanding anything."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    if total > MAX_XLSX_UNCOMPRESSED_BYTES:
        raise UnreadableFile(
            f"This workbook would expand to {total / 1e6:,.0f} MB, over the {MAX_XLSX_UNCOMPRESSED_BYTES / 1e6:,.0f} MB "
            "limit; export the sheet as CSV or JSONL instead."
        )
    for info in infos:
        if info.compress_size and info.file_size / info.compress_size > MAX_XLSX_COMPRESSION_RATIO:
            raise UnreadableFile(
                f"This workbook is compressed {info.file_size / info.compress_size:,.0f} times ({info.filename}), "
                "as zip bombs are, not spreadsheets; it was not opened."
            )


# --- JSONL and JSON arrays --------------------------------------------------------------------------------


def _jsonl_examples(
    path: Path, checker: RecordChecker, start: int = 0, end: int | None = None, first_line: int = 1
) -> Iterator[SourceExample]:
    for item in iter_json_lines(path, start, end, first_line):
        if isinstance(item, Problem):
            yield SourceExample(item.line, None, [item])
        else:
            yield convert_record(item.value, item.line, checker, item.text)


ARRAY_CHUNK_CHARS = 1 << 20


def _array_examples(path: Path, checker: RecordChecker) -> Iterator[SourceExample]:
    """Items of a top-level JSON array one at a time (never the whole document in memory)."""
    for number, value in enumerate(_iter_array_items(path), start=1):
        yield convert_record(value, number, checker)


def _iter_array_items(path: Path) -> Iterator[object]:
    decoder = json.JSONDecoder()
    with open(path, "rb") as handle:
        chunks = _decoded_chunks(handle)
        buffer, offset = "", 0
        lines_before, column_before = 0, 0  # where `buffer` starts in the file
        at_eof = False

        def more() -> bool:
            nonlocal buffer, offset, lines_before, column_before, at_eof
            chunk = next(chunks, None)
            if chunk is None:
                at_eof = True
                return False
            dropped = buffer[:offset]
            newlines = dropped.count("\n")
            lines_before += newlines
            column_before = len(dropped) - dropped.rfind("\n") - 1 if newlines else column_before + len(dropped)
            buffer, offset = buffer[offset:] + chunk, 0
            return True

        def skip_space() -> None:
            nonlocal offset
            while True:
                while offset < len(buffer) and buffer[offset] in " \t\r\n":
                    offset += 1
                if offset < len(buffer) or not more():
                    return

        def broken(what: str, at: int) -> UnreadableFile:
            newlines = buffer.count("\n", 0, at)
            line = lines_before + newlines + 1
            column = at - buffer.rfind("\n", 0, at) if newlines else column_before + at + 1
            return UnreadableFile(
                f"The JSON array breaks at line {line}, column {column} ({what}): nothing after that point can be "
                "read. Fix the file, or send it as JSONL (one example per line)."
            )

        skip_space()
        if buffer[offset : offset + 1] != "[":
            raise broken("expected `[`", offset)
        offset += 1
        expect_item = True
        while True:
            skip_space()
            if offset >= len(buffer):
                raise broken("the file ends before the array's closing `]`", offset)
            if buffer[offset] == "]":
                offset += 1
                skip_space()
                if offset < len(buffer):
                    raise broken("text after the array's closing `]`", offset)
                return
            if not expect_item:
                if buffer[offset] != ",":
                    raise broken(f"expected `,` or `]` between items, found {buffer[offset]!r}", offset)
                offset += 1
                expect_item = True
                continue
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, offset)
                    break
                except json.JSONDecodeError as exc:
                    if at_eof or not more():
                        raise broken(exc.msg, exc.pos) from None
                except RecursionError:
                    raise broken("an item nested too deeply", offset) from None
            offset = end
            expect_item = False
            yield value


def _decoded_chunks(handle) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    read = 0
    first = True
    while True:
        raw = handle.read(ARRAY_CHUNK_CHARS)
        if first:
            raw, first = raw.removeprefix(UTF8_BOM), False
        try:
            text = decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            raise UnreadableFile(
                f"The file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte {read + exc.start + 1} of the "
                "file); save it as UTF-8."
            ) from None
        read += len(raw)
        if not raw:
            return
        yield text


def convert_record(value: object, position: int, checker: RecordChecker, line_text: str | None = None) -> SourceExample:
    """Check a JSON record with the shared checks and turn it into a chat example."""
    if checker.format == CHAT and type(value) is dict and plainly_valid_chat(value):
        return SourceExample(position, value, line_text=line_text)  # most lines of a chat file, settled at once
    ignored: tuple[str, ...] = ()
    if isinstance(value, dict):
        from_format = detect_format(value)
        if from_format is not None:
            extra = unknown_keys(value, from_format)
            if extra:
                ignored = tuple(extra)
                value = {key: item for key, item in value.items() if key not in extra}
                line_text = None
    from_format, problems = checker.check(value, position)
    if problems:
        return SourceExample(position, None, [_with_excerpt(p, value) for p in problems], ignored_keys=ignored)
    if from_format == CHAT:
        return SourceExample(position, value, line_text=line_text, ignored_keys=ignored)
    record, origins = _CONVERTERS[from_format](value)
    problems = [_from_origin(problem, record, origins, value) for problem in check_chat(record, position)]
    return SourceExample(position, None if problems else record, problems, ignored_keys=ignored)


def abbreviate(text: str, limit: int = EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _with_excerpt(problem: Problem, value: object) -> Problem:
    """The problem with the text it is about: the value its field names (`'robot'` for `messages[2].role`),
    or the start of the whole record when it names none."""
    if problem.excerpt is not None:
        return problem
    found = value
    for name, index in _PATH_STEP.findall(problem.field or ""):
        try:
            found = found[int(index)] if index else found[name]
        except (KeyError, IndexError, TypeError, ValueError):
            found = value
            break
    text = found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)
    return dataclasses.replace(problem, excerpt=abbreviate(text))


def _from_prompt_completion(record: dict) -> tuple[dict, list[str]]:
    return _pair(record["prompt"], record["completion"]), ["prompt", "completion"]


def _from_alpaca(record: dict) -> tuple[dict, list[str]]:
    extra = record.get("input") or ""
    user = record["instruction"] + "\n\n" + extra if extra else record["instruction"]
    return _pair(user, record["output"]), ["instruction", "output"]


def _from_sharegpt(record: dict) -> tuple[dict, list[str]]:
    turns = record["conversations"]
    messages = [{"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]} for turn in turns]
    return {"messages": messages}, [f"conversations[{index}].value" for index in range(len(turns))]


_CONVERTERS = {PROMPT_COMPLETION: _from_prompt_completion, ALPACA: _from_alpaca, SHAREGPT: _from_sharegpt}


def _pair(user: str, assistant: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": messages}


def _from_origin(problem: Problem, record: dict, origins: list[str], source: object) -> Problem:
    """A problem found in `record`, converted from `source`, named by the field or column it came from."""
    target = problem.field or ""
    if not target.startswith("messages["):
        return _with_excerpt(dataclasses.replace(problem, field=None), source)
    problem = _with_excerpt(problem, record)
    index = int(target[len("messages[") : target.index("]")])
    source = origins[index] if index < len(origins) else None
    if problem.code == "missing_content" and source:
        return dataclasses.replace(problem, message=f"{source} is empty: an example needs text here", field=source)
    return dataclasses.replace(problem, field=source)


# --- tables -----------------------------------------------------------------------------------------------


def _known_columns(headers: list[str]) -> _TableColumns | None:
    index = _header_index(headers)
    for pair, users, assistants in TABLE_PAIRS:
        if all(name in index for name in users + assistants):
            columns = _TableColumns(pair, index[users[0]], index[assistants[0]])
            if len(users) > 1:
                columns.extra_input = index[users[1]]
            columns.system = index.get("system")
            return _with_names(columns, headers)
    return None


def _mapped_columns(headers: list[str], mapping: ColumnMapping) -> _TableColumns:
    index = _header_index(headers)
    wanted = [mapping.prompt, mapping.completion] + ([mapping.system] if mapping.system else [])
    missing = [name for name in wanted if name.strip().lower() not in index]
    if missing:
        raise UnreadableFile(
            f"No column named {', '.join(map(repr, missing))} in this table; its columns are: "
            f"{', '.join(name for name in headers if name.strip())}."
        )
    columns = _TableColumns(
        MAPPED,
        index[mapping.prompt.strip().lower()],
        index[mapping.completion.strip().lower()],
        system=index[mapping.system.strip().lower()] if mapping.system else None,
    )
    return _with_names(columns, headers)


def _with_names(columns: _TableColumns, headers: list[str]) -> _TableColumns:
    columns.headers = headers
    return columns


def _header_index(headers: list[str]) -> dict[str, int]:
    """Lower-cased header -> its first column."""
    index: dict[str, int] = {}
    for number, name in enumerate(headers):
        index.setdefault(name.strip().lower(), number)
    return index


def _table_examples(rows: Iterator[tuple[int, list | Problem]], columns: _TableColumns) -> Iterator[SourceExample]:
    headers = columns.headers
    user_origin, assistant_origin = f"column {headers[columns.user]}", f"column {headers[columns.assistant]}"
    system_origin = f"column {headers[columns.system]}" if columns.system is not None else ""
    for number, row in rows:
        if isinstance(row, Problem):
            yield SourceExample(number, None, [row])
            continue
        if not _has_text(row):
            continue
        cell = lambda index: _cell_text(row[index]) if index is not None and index < len(row) else ""  # noqa: E731
        user = cell(columns.user)
        extra = cell(columns.extra_input)
        if extra:
            user = user + "\n\n" + extra
        system = cell(columns.system)
        record = _pair(user, cell(columns.assistant), system)
        origins = ([system_origin] if system else []) + [user_origin, assistant_origin]
        problems = [_from_origin(problem, record, origins, record) for problem in check_chat(record, number)]
        formulas = tuple(headers[index] for index in columns.used if index < len(row) and _is_formula(row[index]))
        yield SourceExample(number, None if problems else record, problems, formula_columns=formulas)


class _Formula(str):
    """An XLSX formula cell's text, marked so the report can say it was not evaluated."""


def _is_formula(cell: object) -> bool:
    return isinstance(cell, _Formula)


def _cell_text(value: object) -> str:
    """A cell as the person sees it in a spreadsheet: numbers without a spurious `.0`, dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def _has_text(row: list) -> bool:
    return any(_cell_text(cell) for cell in row)


def _is_row_with_text(row: list | Problem) -> bool:
    """A row that counts: one with text, or one that could not be read (which must be reported)."""
    return isinstance(row, Problem) or _has_text(row)


def _text_rows(path: Path, kind: str) -> Iterator[tuple[int, list | Problem]]:
    """(row number, cells) of a CSV or TSV, or (row number, Problem) for a row that is not UTF-8.

    Rows are records as a spreadsheet shows them: a quoted cell spanning lines is one row, a blank line is
    an (empty) row of its own.
    """
    csv.field_size_limit(MAX_LINE_BYTES)
    bad_lines: dict[int, str] = {}
    with open(path, "rb") as handle:
        lines = _decoded_lines(handle, bad_lines)
        first = next(lines, "")
        delimiter = "\t" if kind == TSV else _delimiter(first)
        reader = csv.reader(_chain_first(first, lines), delimiter=delimiter)
        last_line = 0
        number = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise UnreadableFile(f"Row {number + 1} cannot be read as {kind}: {exc}.") from None
            number += 1
            broken = [bad_lines.pop(line) for line in range(last_line + 1, reader.line_num + 1) if line in bad_lines]
            last_line = reader.line_num
            if broken:
                yield number, Problem(number, "invalid_encoding", broken[0])
            else:
                yield number, row


def _chain_first(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


def _decoded_lines(handle, bad_lines: dict[int, str]) -> Iterator[str]:
    """Each physical line as text; a line that is not UTF-8 is noted in `bad_lines` and read with U+FFFD."""
    for number, raw in enumerate(handle, start=1):
        if number == 1:
            raw = raw.removeprefix(UTF8_BOM)
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad_lines[number] = (
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line); "
                "save the file as UTF-8 (in Excel: CSV UTF-8)"
            )
            yield raw.decode("utf-8", errors="replace")


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list]]:
    """(row number, cell values) of the first worksheet, formulas as their text (never evaluated)."""
    import openpyxl

    handle = open(path, "rb")  # a file object: openpyxl refuses a path whose name lacks .xlsx (stored by id)
    try:
        workbook = openpyxl.load_workbook(handle, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises many types for a damaged workbook
        handle.close()
        raise UnreadableFile(f"This XLSX workbook cannot be opened: {exc}.") from None
    try:
        sheet = workbook.worksheets[0]
        number = 0
        for cells in sheet.iter_rows():
            number = next((cell.row for cell in cells if getattr(cell, "row", None)), number + 1)
            yield number, [_Formula(cell.value) if cell.data_type == "f" else cell.value for cell in cells]
    finally:
        workbook.close()
        handle.close()
