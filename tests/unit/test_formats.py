"""Reading every dataset format into chat examples: detection by content, rows and lines as people count
them, texts kept exactly, and a clear refusal for what cannot be a dataset."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import openpyxl
import pytest

from tunehouse.data import formats
from tunehouse.data.formats import ColumnMapping, UnreadableFile, open_dataset

PAIR = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def xlsx(tmp_path: Path, rows: list[list], name: str = "data.xlsx") -> Path:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Data")
    for row in rows:
        sheet.append(row)
    path = tmp_path / name
    workbook.save(path)
    return path


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def read_all(path: Path, mapping: ColumnMapping | None = None) -> tuple[formats.DatasetReading, list]:
    reading = open_dataset(path, mapping)
    return reading, list(reading.examples())


def messages_of(path: Path) -> list[list[dict]]:
    _, examples = read_all(path)
    assert all(not example.problems for example in examples), [example.problems for example in examples]
    return [example.record["messages"] for example in examples]


# --- every format -----------------------------------------------------------------------------------------

CHAT = {"messages": PAIR}
FORMATS = [
    # (file name, content, label, messages of the first example)
    ("chat.jsonl", jsonl(CHAT, CHAT), "JSONL · chat messages", PAIR),
    ("bom-crlf.jsonl", b"\xef\xbb\xbf" + jsonl(CHAT).replace("\n", "\r\n").encode(), "JSONL · chat messages", PAIR),
    ("gaps.jsonl", "\n\n" + jsonl(CHAT) + "  \n" + json.dumps(CHAT), "JSONL · chat messages", PAIR),
    ("pc.jsonl", jsonl({"prompt": "Q1", "completion": "A1"}), "JSONL · prompt/completion", PAIR),
    ("alpaca.jsonl", jsonl({"instruction": "Sum", "input": "2 2", "output": "4"}), "JSONL · Alpaca instruction/output",
     [{"role": "user", "content": "Sum\n\n2 2"}, {"role": "assistant", "content": "4"}]),
    ("alpaca-no-input.jsonl", jsonl({"instruction": "Hi", "input": "", "output": "Hello"}),
     "JSONL · Alpaca instruction/output", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]),
    ("sharegpt.jsonl",
     jsonl({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}]}),
     "JSONL · ShareGPT conversations", [{"role": "system", "content": "S"}, *PAIR]),
    ("array.json", json.dumps([CHAT, CHAT], indent=2), "JSON array · chat messages", PAIR),
    ("array-bom.json", b"\xef\xbb\xbf" + json.dumps([{"prompt": "Q1", "completion": "A1"}]).replace(",", ",\r\n").encode(),
     "JSON array · prompt/completion", PAIR),
    ("pc.csv", "prompt,completion\r\nQ1,A1\r\n", "CSV · prompt/completion (columns prompt, completion)", PAIR),
    ("qa-bom.csv", b"\xef\xbb\xbfQuestion,ANSWER\r\nQ1,A1", "CSV · question/answer (columns Question, ANSWER)", PAIR),
    ("io.csv", "input,output\nQ1,A1\n", "CSV · input/output (columns input, output)", PAIR),
    ("alpaca.csv", "instruction,input,output\nSum,2 2,4\nHi,,Hello\n",
     "CSV · instruction/input/output (columns instruction, input, output)",
     [{"role": "user", "content": "Sum\n\n2 2"}, {"role": "assistant", "content": "4"}]),
    ("ir.csv", "instruction,response\nQ1,A1\n", "CSV · instruction/response (columns instruction, response)", PAIR),
    ("ua.csv", "user,assistant,system\nQ1,A1,Be kind\n", "CSV · user/assistant (columns user, assistant, system)",
     [{"role": "system", "content": "Be kind"}, *PAIR]),
    ("semicolon.csv", "question;answer\nQ1;A1\n", "CSV · question/answer (columns question, answer)", PAIR),
    ("qa.tsv", "question\tanswer\nQ1\tA1\n", "TSV · question/answer (columns question, answer)", PAIR),
]


@pytest.mark.parametrize("name,content,label,first", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_reads_as_chat(tmp_path, name, content, label, first):
    reading, examples = read_all(write(tmp_path, name, content))
    assert reading.label == label
    assert examples[0].record["messages"] == first
    assert not any(example.problems for example in examples)


def test_xlsx_reads_as_chat_with_rows_as_a_spreadsheet_counts_them(tmp_path):
    path = xlsx(tmp_path, [["Question", "Answer", "System"], ["Q1", "A1", None], [], ["Q2", 42, "Be brief"], [None, 3.0]])
    reading, examples = read_all(path)
    assert reading.label == "XLSX · question/answer (columns Question, Answer, System)"
    assert [example.position for example in examples] == [2, 4, 5]
    assert examples[0].record["messages"] == PAIR  # an empty system cell adds no system turn
    assert examples[1].record["messages"] == [
        {"role": "system", "content": "Be brief"}, {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "42"},
    ]
    assert examples[2].problems[0].field == "column Question"


def test_csv_rows_count_records_not_physical_lines(tmp_path):
    content = 'question,answer\n"two\nlines",A1\n\nQ3,A3\n'
    _, examples = read_all(write(tmp_path, "multi.csv", content))
    assert [example.position for example in examples] == [2, 4]
    assert examples[0].record["messages"][0]["content"] == "two\nlines"


def test_texts_are_kept_exactly(tmp_path):
    texts = ["  leading and trailing  ", "tab\there", "=1+1", "\"quoted\"", "é ✓ 你好", "line\r\nbreak", ""]
    records = [{"prompt": text or "x", "completion": text + "!"} for text in texts]
    assert [m[0]["content"] for m in messages_of(write(tmp_path, "t.jsonl", jsonl(*records)))] == [t or "x" for t in texts]
    cells = [text for text in texts if "\r" not in text]  # XML turns a cell's CR LF into LF (Excel's own line break)
    path = xlsx(tmp_path, [["prompt", "completion"], *[[text or "x", text + "!"] for text in cells]])
    assert [m[1]["content"] for m in messages_of(path)] == [text + "!" for text in cells]


# --- detection by content ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,content,kind",
    [
        ("data.txt", jsonl(CHAT), formats.JSONL),
        ("data.csv", jsonl(CHAT), formats.JSONL),
        ("data.jsonl", "question,answer\nQ1,A1\n", formats.CSV),
        ("data.csv", "question\tanswer\nQ1\tA1, with a comma\n", formats.TSV),
        ("data.jsonl", json.dumps([CHAT]), formats.JSON_ARRAY),
        ("data.txt", "not json\n" + jsonl(CHAT) * 5, formats.JSONL),
    ],
)
def test_kind_is_judged_by_content(tmp_path, name, content, kind):
    assert formats.sniff_kind(write(tmp_path, name, content)) == kind


def test_an_xlsx_is_a_zip_with_a_workbook_whatever_its_name(tmp_path):
    path = xlsx(tmp_path, [["prompt", "completion"], ["Q1", "A1"]], name="upload.bin")
    assert formats.sniff_kind(path) == formats.XLSX


# --- tables without a known pair --------------------------------------------------------------------------


def test_a_table_without_a_known_pair_needs_mapping(tmp_path):
    path = write(tmp_path, "sales.csv", "Date,Price,Quantity Sold,City\n2024-01-01,3.5,2,Oslo\n")
    reading, examples = read_all(path)
    assert reading.needs_mapping and reading.headers == ["Date", "Price", "Quantity Sold", "City"]
    assert examples == []
    reading, examples = read_all(path, ColumnMapping(prompt="city", completion="PRICE", system="Date"))
    assert not reading.needs_mapping
    assert examples[0].record["messages"] == [
        {"role": "system", "content": "2024-01-01"}, {"role": "user", "content": "Oslo"}, {"role": "assistant", "content": "3.5"},
    ]
    assert reading.label == "CSV · mapped columns (City → user, Price → assistant, Date → system)"


def test_a_mapping_to_a_missing_column_says_which_columns_exist(tmp_path):
    path = write(tmp_path, "sales.csv", "Date,Price\n2024-01-01,3.5\n")
    with pytest.raises(UnreadableFile, match="No column named 'Total'.*Date, Price"):
        open_dataset(path, ColumnMapping(prompt="Date", completion="Total"))


# --- problems, with their place ---------------------------------------------------------------------------


def test_a_broken_json_line_is_named_by_line_and_column(tmp_path):
    _, examples = read_all(write(tmp_path, "d.jsonl", jsonl(CHAT) + '{"messages": [}\n' + jsonl(CHAT)))
    problem = examples[1].problems[0]
    assert (problem.line, problem.code) == (2, "invalid_json")
    assert "column 15" in problem.message and problem.excerpt
    assert examples[2].record is not None


def test_invalid_utf8_is_named_by_line_or_row_and_byte(tmp_path):
    _, examples = read_all(write(tmp_path, "d.jsonl", jsonl(CHAT).encode() + b'{"prompt": "caf\xe9"}\n'))
    assert examples[1].problems[0].code == "invalid_encoding"
    assert "byte 0xe9 at byte 16" in examples[1].problems[0].message
    _, examples = read_all(write(tmp_path, "d.csv", b"question,answer\nQ1,A1\ncaf\xe9,A2\nQ3,A3\n"))
    assert [(e.position, e.problems[0].code if e.problems else None) for e in examples] == [
        (2, None), (3, "invalid_encoding"), (4, None),
    ]


@pytest.mark.parametrize(
    "record,field,excerpt,words",
    [
        ({"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]}, "messages[1].role", "robot",
         "unknown role 'robot'"),
        ({"prompt": "Q"}, "completion", '{"prompt": "Q"}', "prompt without completion"),
        ({"prompt": "", "completion": "A"}, "prompt", "", "prompt is empty"),
        ({"instruction": "I", "output": 3}, "output", "3", "must be a string"),
        ({"conversations": [{"from": "human", "value": "Q"}, {"from": "bot", "value": "A"}]}, "conversations[1].from",
         "bot", "unknown `from` 'bot'"),
        ({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": ""}]}, "conversations[1].value", "",
         "conversations[1].value is empty"),
        ({"conversations": [{"from": "human", "value": "Q"}]}, None, '{"conversations": [{"from": "human", "value": "Q"}]}',
         "no assistant message"),
    ],
)
def test_record_problems_name_the_field_in_the_source(tmp_path, record, field, excerpt, words):
    _, examples = read_all(write(tmp_path, "d.jsonl", jsonl(record)))
    problem = examples[0].problems[0]
    assert (problem.field, problem.excerpt) == (field, excerpt)
    assert words in problem.message


def test_a_file_mixing_formats_names_the_lines(tmp_path):
    content = jsonl(CHAT, {"prompt": "Q", "completion": "A"}, CHAT, {"prompt": "Q", "completion": "A"})
    _, examples = read_all(write(tmp_path, "mixed.jsonl", content))
    mixed = [e.position for e in examples if e.problems and e.problems[0].code == "mixed_formats"]
    assert mixed == [2, 4]
    assert "from line 1" in examples[1].problems[0].message


def test_keys_outside_the_format_are_left_out_and_reported(tmp_path):
    _, examples = read_all(write(tmp_path, "d.jsonl", jsonl({"id": 7, **CHAT})))
    assert examples[0].record == CHAT and examples[0].ignored_keys == ("id",)


def test_xlsx_formulas_are_kept_as_their_text_and_flagged(tmp_path):
    path = xlsx(tmp_path, [["question", "answer"], ["What is 1+1?", "=1+1"]])
    _, examples = read_all(path)
    assert examples[0].record["messages"][1]["content"] == "=1+1"
    assert examples[0].formula_columns == ("answer",)


def test_a_csv_cell_starting_with_equals_stays_text(tmp_path):
    assert messages_of(write(tmp_path, "d.csv", 'question,answer\n"=HYPERLINK(""http://x"")",A\n'))[0][0] == {
        "role": "user", "content": '=HYPERLINK("http://x")',
    }


# --- whole-file refusals ----------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
REFUSED = [
    ("empty.jsonl", b"", "The file is empty"),
    ("blank.jsonl", b"\n  \r\n", "only blank lines"),
    ("photo.png", PNG, "PNG image"),
    ("photo.jsonl", b"\xff\xd8\xff\xe0" + b"\x00" * 64, "JPEG image"),
    ("doc.pdf", b"%PDF-1.7\n...", "PDF document"),
    ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, ".xls"),
    ("bin.dat", b"abc\x00def", "binary data"),
    ("notes.txt", "just some notes\nabout nothing\n", "plain text"),
    ("header.csv", "question,answer\n", "no rows under the header"),
    ("header-blank.csv", "question,answer\n,\n\n", "no rows under the header"),
    ("broken.json", '[{"prompt": "a", "completion": "b"},\n {"prompt": }]', "breaks at line 2, column 13"),
    ("empty-array.json", "[]", None),
    ("latin1.json", b'[{"prompt": "caf\xe9", "completion": "x"}]', r"not UTF-8 text \(byte 0xe9 at byte 17 of the file\)"),
]


@pytest.mark.parametrize("name,content,words", REFUSED, ids=[r[0] for r in REFUSED])
def test_what_cannot_be_a_dataset_is_refused_with_a_reason(tmp_path, name, content, words):
    path = write(tmp_path, name, content)
    if words is None:
        assert read_all(path)[1] == []
        return
    with pytest.raises(UnreadableFile, match=words):
        read_all(path)


def test_a_zip_that_is_not_a_workbook_says_what_it_holds(tmp_path):
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.jsonl", jsonl(CHAT))
    with pytest.raises(UnreadableFile, match=r"zip archive of 1 file\(s\) \(train.jsonl\)"):
        open_dataset(path)


def test_an_xlsx_with_only_a_header_is_refused(tmp_path):
    with pytest.raises(UnreadableFile, match=r"header row \(prompt, completion\) but no rows under the header"):
        open_dataset(xlsx(tmp_path, [["prompt", "completion"]]))


def test_an_xlsx_bomb_is_refused_before_it_is_expanded(tmp_path, monkeypatch):
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<row/>" * 2_000_000)
    with pytest.raises(UnreadableFile, match="compressed .* times .*sheet1.xml"):
        open_dataset(path)
    monkeypatch.setattr(formats, "MAX_XLSX_COMPRESSION_RATIO", 10**9)
    monkeypatch.setattr(formats, "MAX_XLSX_UNCOMPRESSED_BYTES", 1_000_000)
    with pytest.raises(UnreadableFile, match="would expand to 12 MB"):
        open_dataset(path)


@pytest.mark.parametrize("chunk", [3, 7, 1 << 20])
def test_a_json_array_is_read_in_pieces_with_the_same_items_and_places(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(formats, "ARRAY_CHUNK_CHARS", chunk)
    items = [{"prompt": f"Q{n} ✓", "completion": f"A{n}"} for n in range(5)]
    assert messages_of(write(tmp_path, "a.json", json.dumps(items, indent=2, ensure_ascii=False)))[4][1]["content"] == "A4"
    broken = write(tmp_path, "b.json", '[\n  {"prompt": "a", "completion": "b"},\n  {"prompt": "a" "completion": "b"}\n]')
    with pytest.raises(UnreadableFile, match=r"line 3, column 18 \(Expecting ',' delimiter\)"):
        read_all(broken)


@pytest.mark.parametrize("piece_bytes", [1, 7, 10, 13, 64])
def test_pieces_read_in_parallel_number_lines_as_the_whole_file(tmp_path, monkeypatch, piece_bytes):
    """A too-long line whose newline falls exactly at the read limit where a piece is cut: it is skipped as one
    line, and the pieces after it keep counting lines as the whole file does."""
    from tunehouse.data import jsonl

    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 20)
    path = tmp_path / "lines.jsonl"
    lines = [b'{"a":1}', b'{"long":"' + b"x" * 10 + b'"}', b'{"c":3}', b'{"d":4}', b'{"e":"' + b"y" * 30 + b'"}', b'{"f":6}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    whole = [(item.line, getattr(item, "value", None)) for item in jsonl.iter_json_lines(path)]
    pieced = [
        (item.line, getattr(item, "value", None))
        for start, end, first in jsonl.line_ranges(path, piece_bytes)
        for item in jsonl.iter_json_lines(path, start, end, first)
    ]
    assert pieced == whole
    assert (4, {"d": 4}) in whole
