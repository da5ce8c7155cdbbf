"""The bot's dataset intake: a dropped file in, a converted chat JSONL and a report out, with every problem
located, OpenAI's warnings, token statistics, and cost or time; never an exception for bad input."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from pathlib import Path

import bpe_openai
import openpyxl
import pytest

from bot import datasets
from bot.datasets import ColumnMapping, IntakeLimits, IntakeReport, analyse, csv_safe, drop_bad, write_error_report
from tunehouse.data.costs import BASE_MODELS, auto_epochs, cpu_tokens_per_second_estimate

MODEL = "gpt-4o-mini-2024-07-18"


def chat(question: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def run(tmp_path: Path, name: str, content: str | bytes, **options) -> IntakeReport:
    source = tmp_path / name
    source.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    options.setdefault("base_model", MODEL)
    options.setdefault("backend", "openai")
    return analyse(source, name, tmp_path / "out", **options)


def xlsx_bytes(tmp_path: Path, rows: list[list]) -> bytes:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Sheet1")
    for row in rows:
        sheet.append(row)
    path = tmp_path / "built.xlsx"
    workbook.save(path)
    return path.read_bytes()


def cookbook_tokens(messages: list[dict], encoding: str = "o200k_base") -> int:
    """OpenAI's cookbook num_tokens_from_messages, with bpe-openai's tiktoken-compatible encoder."""
    encoder = bpe_openai.get_encoding(encoding)
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            total += len(encoder.encode(value))
            if key == "name":
                total += 1
    return total


TWELVE = [chat(f"What is {n} + {n}?", f"{2 * n}.", system="You add numbers.") for n in range(12)]


# --- a good file ------------------------------------------------------------------------------------------


def test_a_good_file_is_converted_and_reported(tmp_path):
    report = run(tmp_path, "sums.jsonl", jsonl(*TWELVE))
    assert report.ok, report
    assert (report.format_label, report.examples_read, report.examples_converted, report.examples_skipped) == (
        "JSONL · chat messages", 12, 12, 0,
    )
    assert report.errors == () and report.warnings == ()
    assert report.system_message == "You add numbers."
    assert report.first_example == TWELVE[0]["messages"]
    written = report.converted_path.read_bytes()
    assert report.content_hash == hashlib.sha256(written).hexdigest()
    assert report.converted_path.name == f"{report.content_hash}.jsonl"
    assert [json.loads(line) for line in written.splitlines()] == TWELVE


def test_token_statistics_match_the_cookbook_counted_with_the_encoder(tmp_path):
    records = [chat("hi " * n, "ok " * (2 * n), system="Be brief.") for n in range(1, 21)]
    report = run(tmp_path, "d.jsonl", jsonl(*records))
    lengths = sorted(cookbook_tokens(r["messages"]) for r in records)
    tokens = report.tokens
    assert (tokens.min, tokens.max, tokens.total) == (lengths[0], lengths[-1], sum(lengths))
    assert tokens.median == lengths[9] and tokens.p90 == lengths[18]
    assert (tokens.encoding, tokens.context_limit, tokens.over_context) == ("o200k_base", 65_536, 0)
    assert report.epochs == auto_epochs(20) == 5
    assert report.trained_tokens == sum(lengths) * 5
    assert report.cost_usd == pytest.approx(sum(lengths) * 5 * 3.00 / 1e6)
    assert "$3.00 per 1M training tokens" in report.price_note and "as of" in report.price_note


def test_gpt_35_is_counted_with_cl100k_and_its_context(tmp_path):
    report = run(tmp_path, "d.jsonl", jsonl(*TWELVE), base_model="gpt-3.5-turbo")
    assert report.tokens.encoding == "cl100k_base" and report.tokens.context_limit == 16_385
    assert report.tokens.total == sum(cookbook_tokens(r["messages"], "cl100k_base") for r in TWELVE)
    assert report.cost_usd == pytest.approx(report.trained_tokens * 8.00 / 1e6)


def test_every_priced_model_has_a_context_and_an_encoding():
    for name, model in BASE_MODELS.items():
        assert model.encoding in ("o200k_base", "cl100k_base") and model.context_tokens > 0
        assert model.usd_per_million_training_tokens > 0, name


def test_the_embedded_backend_gets_a_time_estimate_instead_of_a_price(tmp_path):
    report = run(tmp_path, "d.jsonl", jsonl(*TWELVE), backend="embedded", base_model="gpt-4o-mini")
    assert report.cost_usd is None
    assert report.tokens_per_second == cpu_tokens_per_second_estimate() in (160.0, 770.0)
    assert report.estimated_seconds == pytest.approx(report.trained_tokens / report.tokens_per_second, abs=0.1)


def test_an_unknown_model_is_counted_but_not_priced(tmp_path):
    report = run(tmp_path, "d.jsonl", jsonl(*TWELVE), base_model="my-local-model")
    assert report.ok and report.cost_usd is None and "no price" in report.price_note


# --- conversion never loses content -----------------------------------------------------------------------

TEXTS = [
    ("  spaces around  ", " answer with trailing space "),
    ("multi\nline\nquestion", "multi\n\nline answer"),
    ('quotes " and \\ backslash', "=1+1 looks like a formula"),
    ("émoji ✓ 你好 🙂", "-leading minus, +plus, @at"),
    ("tab\tinside", "comma, semicolon; pipe |"),
]


def _tables(tmp_path: Path) -> dict[str, bytes | str]:
    def delimited(delimiter: str) -> str:
        rows = [["question", "answer"], *TEXTS]
        out = []
        for row in rows:
            out.append(delimiter.join('"' + cell.replace('"', '""') + '"' for cell in row))
        return "\r\n".join(out) + "\r\n"

    return {
        "data.csv": delimited(","),
        "data.tsv": delimited("\t"),
        "data.xlsx": xlsx_bytes(tmp_path, [["Prompt", "Completion"], *map(list, TEXTS)]),
    }


def _records() -> dict[str, str]:
    return {
        "chat.jsonl": jsonl(*(chat(q, a) for q, a in TEXTS)),
        "pc.jsonl": jsonl(*({"prompt": q, "completion": a} for q, a in TEXTS)),
        "alpaca.jsonl": jsonl(*({"instruction": q, "input": "", "output": a} for q, a in TEXTS)),
        "sharegpt.jsonl": jsonl(*({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for q, a in TEXTS)),
        "chat.json": json.dumps([chat(q, a) for q, a in TEXTS], indent=1, ensure_ascii=False),
        "pc-bom-crlf.jsonl": "\ufeff" + jsonl(*({"prompt": q, "completion": a} for q, a in TEXTS)).replace("\n", "\r\n"),
    }


@pytest.mark.parametrize("name", ["data.csv", "data.tsv", "data.xlsx", *_records()])
def test_conversion_never_loses_content(tmp_path, name):
    content = {**_records(), **_tables(tmp_path)}[name]
    report = run(tmp_path, name, content)
    assert report.ok, (report.fatal, report.errors)
    converted = [json.loads(line) for line in report.converted_path.read_text(encoding="utf-8").splitlines()]
    pairs = [(example["messages"][0]["content"], example["messages"][1]["content"]) for example in converted]
    assert pairs == TEXTS


# --- errors, and dropping the bad examples ----------------------------------------------------------------


def test_errors_name_line_field_and_problem_and_block_training(tmp_path):
    bad_role = {"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]}
    report = run(tmp_path, "d.jsonl", jsonl(*TWELVE[:5]) + "{not json}\n" + jsonl(bad_role, *TWELVE[5:]))
    assert not report.ok and report.can_drop_bad
    assert (report.examples_read, report.examples_converted, report.examples_skipped, report.error_count) == (14, 12, 2, 2)
    assert [str(issue) for issue in report.errors] == [
        "line 6: not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        "line 7 · messages[1].role: message 2 has unknown role 'robot' (expected one of system, developer, user, "
        "assistant, tool)",
    ]
    assert report.errors[1].excerpt == "robot"
    cleaned = drop_bad(report)
    assert cleaned.ok and cleaned.dropped == 2 and cleaned.converted_path == report.converted_path
    assert cleaned.examples_converted == 12 and not cleaned.can_drop_bad
    with pytest.raises(ValueError):
        drop_bad(cleaned)


def test_table_errors_name_row_and_column(tmp_path):
    rows = "question,answer\n" + "".join(f"Q{n},A{n}\n" for n in range(2, 11)) + "Q11,\n"
    report = run(tmp_path, "d.csv", rows)
    assert [str(issue) for issue in report.errors] == [
        "row 11 · column answer: column answer is empty: an example needs text here"
    ]


def test_a_file_where_no_example_has_an_assistant_message_says_so_for_the_whole_file(tmp_path):
    report = run(tmp_path, "d.jsonl", jsonl(*({"messages": [{"role": "user", "content": f"Q{n}"}]} for n in range(3))))
    assert report.errors[0].where is None and report.errors[0].code == "no_assistant_messages"
    assert "None of the 3 examples has an assistant message" in report.errors[0].message
    assert report.error_count == 4 and not report.can_drop_bad and report.converted_path is None


def test_a_mixed_file_names_the_lines_in_the_other_format(tmp_path):
    report = run(tmp_path, "d.jsonl", jsonl(TWELVE[0], {"prompt": "a", "completion": "b"}, TWELVE[1]))
    assert [issue.where for issue in report.errors] == ["line 2"]
    assert "prompt/completion but the file is chat messages (from line 1)" in report.errors[0].message


def test_an_invalid_utf8_line_is_named_with_its_byte(tmp_path):
    report = run(tmp_path, "d.jsonl", jsonl(*TWELVE).encode() + b'{"prompt": "caf\xe9", "completion": "x"}\n')
    assert str(report.errors[0]).startswith("line 13: not UTF-8 text (byte 0xe9 at byte 16 of the line)")


# --- whole-file problems ----------------------------------------------------------------------------------

FATAL = [
    ("empty.jsonl", b"", "The file is empty."),
    ("cat.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "This is a PNG image, not a dataset"),
    ("cat.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 100, "This is a JPEG image, not a dataset"),
    ("paper.pdf", b"%PDF-1.4\n%...", "This is a PDF document, not a dataset"),
    ("header.csv", "prompt,completion\r\n", "The table has a header row (prompt, completion) but no rows under the header."),
    ("broken.json", '[\n {"prompt": "a", "completion": "b"},\n {"prompt": "a" "completion": "b"}\n]',
     "The JSON array breaks at line 3, column 17 (Expecting ',' delimiter)"),
    ("nothing.json", "[]", "The file has no examples."),
]


@pytest.mark.parametrize("name,content,message", FATAL, ids=[f[0] for f in FATAL])
def test_whole_file_problems_are_one_clear_sentence(tmp_path, name, content, message):
    report = run(tmp_path, name, content)
    assert report.fatal.startswith(message), report.fatal
    assert not report.ok and not report.can_drop_bad and report.converted_path is None


def test_an_xlsx_with_only_a_header_and_an_xlsx_bomb_are_refused(tmp_path):
    report = run(tmp_path, "h.xlsx", xlsx_bytes(tmp_path, [["question", "answer"]]))
    assert report.fatal == "The table has a header row (question, answer) but no rows under the header."
    import zipfile

    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/sharedStrings.xml", "<si><t>a</t></si>" * 1_000_000)
    report = analyse(bomb, "bomb.xlsx", tmp_path / "out", base_model=MODEL, backend="openai")
    assert "as zip bombs are" in report.fatal


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "open_dataset", lambda *a: pytest.fail("the file was opened"))
    report = run(tmp_path, "big.jsonl", jsonl(*TWELVE), limits=IntakeLimits(max_bytes=100))
    assert report.fatal.startswith("The file is 0.0 MB, over the 0 MB limit")


def test_a_bug_in_a_reader_becomes_a_fatal_and_a_log_entry(tmp_path, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("reader bug")

    monkeypatch.setattr(datasets, "open_dataset", broken)
    with caplog.at_level(logging.ERROR, logger="bot.datasets"):
        report = run(tmp_path, "d.jsonl", jsonl(*TWELVE))
    assert report.fatal.startswith("could not read this file: the reader failed (RuntimeError)")
    assert "reader bug" in caplog.text


def test_a_table_without_a_known_pair_asks_for_a_mapping_then_converts_with_it(tmp_path):
    content = "Date,Price,Quantity Sold,City\n" + "".join(f"2024-01-{n:02},{n}.5,{n},Oslo\n" for n in range(1, 13))
    report = run(tmp_path, "sales.csv", content)
    assert report.needs_mapping == ["Date", "Price", "Quantity Sold", "City"] and not report.ok and not report.fatal
    report = run(tmp_path, "sales.csv", content, mapping=ColumnMapping(prompt="Date", completion="Price"))
    assert report.ok and report.examples_converted == 12
    assert report.first_example == [{"role": "user", "content": "2024-01-01"}, {"role": "assistant", "content": "1.5"}]


# --- warnings ---------------------------------------------------------------------------------------------


def test_a_300000_character_line_is_counted_quickly_and_flagged_as_over_the_context(tmp_path):
    long = chat("a " * 150_000, "ok")
    started = time.perf_counter()
    report = run(tmp_path, "d.jsonl", jsonl(long, *TWELVE))
    assert time.perf_counter() - started < 3
    assert report.ok and report.tokens.over_context == 1 and report.tokens.max > 65_536
    assert report.trained_tokens == (65_536 + sum(cookbook_tokens(r["messages"]) for r in TWELVE)) * report.epochs
    assert any("1 example is longer than the 65,536-token training context" in w and "line 1" in w for w in report.warnings)


def test_few_examples_duplicates_and_ignored_keys_are_warnings(tmp_path):
    records = [TWELVE[0], TWELVE[1], TWELVE[0], {"id": 3, **TWELVE[2]}, TWELVE[1]]
    report = run(tmp_path, "d.jsonl", jsonl(*records))
    assert report.ok and report.duplicates == 2
    warnings = "\n".join(report.warnings)
    assert "Only 5 examples: OpenAI requires at least 10" in warnings
    assert "2 duplicate examples (line 3 repeats line 1; line 5 repeats line 2)" in warnings
    assert "`id` (1 line)" in warnings


def test_likely_secrets_are_flagged_not_blocked_and_masked_in_excerpts(tmp_path):
    secrets = [
        "my key is sk-proj-abc123DEF456ghi789JKL012mno345",
        "token xoxb-1234567890-abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow",
        "db password=hunter22",
    ]
    harmless = ["a task-management-system-design question", "the password is secret", "passage about skills"]
    records = [chat(text, "noted") for text in secrets + harmless] + TWELVE
    report = run(tmp_path, "d.jsonl", jsonl(*records) + '{"messages": [{"role": "sk-abcdefghij0123456789xyz", "content": "x"}]}\n')
    assert report.examples_with_secrets == 5
    warning = next(w for w in report.warnings if w.startswith("Likely secrets"))
    assert "line 1: OpenAI API key; line 2: Slack token; line 3: AWS access key; line 4: private key; line 5: password" in warning
    assert "hunter22" not in warning and "sk-proj" not in warning
    assert report.errors[0].excerpt == "sk-a…"


def test_formula_cells_are_flagged(tmp_path):
    rows = [["question", "answer"], *[[f"Q{n}", f"A{n}"] for n in range(12)], ["total?", "=SUM(B2:B3)"]]
    report = run(tmp_path, "d.xlsx", xlsx_bytes(tmp_path, rows))
    assert report.ok
    assert any("1 cell holds a formula (row 14, column answer)" in w for w in report.warnings)


def test_a_system_message_is_reported_only_when_every_example_shares_it(tmp_path):
    report = run(tmp_path, "d.jsonl", jsonl(*TWELVE, chat("Q", "A", system="Something else.")))
    assert report.ok and report.system_message is None


# --- the error report -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell,safe",
    [("=1+1", "'=1+1"), ("+33 1", "'+33 1"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
     ("plain", "plain"), ("a=b", "a=b"), ("", "")],
)
def test_csv_safe_neutralises_what_spreadsheets_evaluate(cell, safe):
    assert csv_safe(cell) == safe


def test_the_error_report_lists_every_error_with_formula_cells_neutralised(tmp_path):
    content = jsonl(*TWELVE) + "=HYPERLINK(\"http://evil\")\n" + jsonl({"messages": [{"role": "=cmd", "content": "x"}]})
    report = run(tmp_path, "d.jsonl", content)
    path = write_error_report(report, tmp_path / "errors.csv")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0] == ["where", "field", "problem", "text"]
    assert rows[1][0] == "line 13" and rows[1][3] == "'=HYPERLINK(\"http://evil\")"
    assert rows[2][:2] == ["line 14", "messages[0].role"] and rows[2][3] == "'=cmd"
    assert len(rows) == 3


def test_the_error_report_says_how_many_errors_it_does_not_list(tmp_path):
    report = run(tmp_path, "d.jsonl", "oops\n" * 5 + jsonl(*TWELVE), limits=IntakeLimits(max_kept_errors=2))
    assert report.error_count == 5 and len(report.errors) == 2
    rows = list(csv.reader(write_error_report(report, tmp_path / "e.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert rows[-1][2] == "and 3 more errors, not listed"


def test_a_report_survives_a_round_trip_through_json(tmp_path):
    report = run(tmp_path, "d.jsonl", jsonl(*TWELVE) + "oops\n")
    assert IntakeReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


# --- large files: pieces read by worker processes, merged in order ---------------------------------------


def test_worker_processes_give_the_same_report_as_one_pass(tmp_path, monkeypatch):
    records = []
    for n in range(600):
        records.append(chat(f"Q{n % 450}", f"A{n % 450}", system="S" if n != 7 else "other"))
    records[100] = {"prompt": "mixed", "completion": "in"}
    records[333] = {"messages": [{"role": "user", "content": "no answer"}]}
    records[500] = chat("my key sk-abcdefghij0123456789ABCDEF", "ok")
    content = jsonl(*records[:250]) + "oops\n" + jsonl(*records[250:])
    one_pass = run(tmp_path, "d.jsonl", content)
    monkeypatch.setattr(datasets, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(datasets, "PIECE_BYTES", 1000)
    in_workers = run(tmp_path, "d.jsonl", content)
    assert datasets._workers is not None
    assert in_workers == one_pass
    assert one_pass.duplicates == 147 and one_pass.examples_with_secrets == 1 and one_pass.error_count == 3
    assert [issue.where for issue in one_pass.errors] == ["line 101", "line 251", "line 335"]
