"""Dataset validation: every broken-file category is refused with its line and a precise message;
awkward but valid files pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunehouse.data.jsonl import check_jsonl_objects
from tunehouse.data import validate
from tunehouse.data.validate import CHAT, PREFERENCE, PROMPT_COMPLETION, validate_dataset

CHAT_LINE = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write(tmp_path: Path, content: bytes | str, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def lines(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\xef\xbb\xbf" + lines(CHAT_LINE).encode(), id="utf8-bom"),
        pytest.param(lines(CHAT_LINE).replace("\n", "\r\n"), id="crlf"),
        pytest.param("\n\n" + lines(CHAT_LINE) + "\n  \n" + lines(CHAT_LINE), id="blank-lines"),
        pytest.param(lines(CHAT_LINE).rstrip("\n"), id="no-final-newline"),
        pytest.param(json.dumps(CHAT_LINE, ensure_ascii=False).replace("hello", "héllo ✓ 你好") + "\n", id="non-ascii"),
    ],
)
def test_awkward_but_valid_files_pass(tmp_path, content):
    report = validate_dataset(write(tmp_path, content))
    assert report.ok, report.summary()
    assert report.format == CHAT
    assert check_jsonl_objects(tmp_path / "data.jsonl")[1] == []


def test_all_three_formats_are_recognised(tmp_path):
    chat = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny.", "weight": 1},
        ],
        "tools": [{"type": "function", "function": {"name": "w", "parameters": {}}}],
    }
    assert validate_dataset(write(tmp_path, lines(chat), "c.jsonl")).format == CHAT
    pair = {"prompt": "2+2=", "completion": " 4"}
    assert validate_dataset(write(tmp_path, lines(pair), "p.jsonl")).format == PROMPT_COMPLETION
    preference = {
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "go away"}],
    }
    report = validate_dataset(write(tmp_path, lines(preference), "d.jsonl"))
    assert report.ok and report.format == PREFERENCE


BROKEN = [
    # (content, line, code, words the message must contain)
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', 1, "invalid_encoding", "UTF-8"),
    (lines(CHAT_LINE) + '{"messages": [}\n', 2, "invalid_json", "not valid JSON"),
    (lines(CHAT_LINE) + '"just a string"\n', 2, "data_type", "found a string"),
    ('[{"messages": []}]\n', 1, "json_array", "JSON array"),
    ('[\n  {"prompt": "a", "completion": "b"}\n]\n', 1, "json_array", "jq -c"),
    (lines({"messages": []}), 1, "missing_messages_list", "non-empty array"),
    (lines({"messages": "hello"}), 1, "missing_messages_list", "found a string"),
    (lines({"tools": []} | {"messages": [{"content": "x"}]}), 1, "message_missing_key", "no `role`"),
    (lines({"messages": [{"role": "robot", "content": "x"}]}), 1, "unrecognized_role", "'robot'"),
    (lines({"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]}), 1,
     "invalid_content", "found a number"),
    (lines({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                         {"role": "assistant", "content": "x"}]}), 1, "invalid_content", "'image_url'"),
    (lines({"messages": [{"role": "user", "content": "hi"}]}), 1, "example_missing_assistant_message",
     "no assistant message"),
    (lines({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 0}]}),
     1, "example_missing_assistant_message", "weight 0"),
    (lines({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 2}]}),
     1, "invalid_weight", "0 or 1"),
    (lines({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}), 1, "missing_content",
     "no `content`"),
    (lines({"messages": [{"role": "user", "content": "hi", "mood": "x"}, {"role": "assistant", "content": "y"}]}),
     1, "message_unrecognized_key", "'mood'"),
    (lines({"prompt": "2+2="}), 1, "missing_completion", "prompt without completion"),
    (lines({"prompt": "2+2=", "completion": 4}), 1, "invalid_content", "must be a string"),
    (lines(CHAT_LINE, {"prompt": "a", "completion": "b"}), 2, "mixed_formats", "one format per file"),
    (lines({"text": "hello"}), 1, "unknown_format", "found keys: text"),
    ("", None, "empty_file", "no examples"),
    ("\n \n\r\n", None, "empty_file", "no examples"),
]


@pytest.mark.parametrize("content,line,code,words", BROKEN, ids=[f"{c[2]}-{i}" for i, c in enumerate(BROKEN)])
def test_broken_files_are_refused_with_line_and_reason(tmp_path, content, line, code, words):
    report = validate_dataset(write(tmp_path, content))
    assert not report.ok
    problem = report.problems[0]
    assert (problem.line, problem.code) == (line, code), report.summary()
    assert words in problem.message
    summary = report.summary("Training file")
    assert code in summary and (line is None or f"line {line}:" in summary)


def test_upload_check_refuses_only_what_is_not_jsonl(tmp_path):
    schema_problem = write(tmp_path, lines({"messages": [{"role": "robot", "content": "x"}]}), "a.jsonl")
    assert check_jsonl_objects(schema_problem)[1] == []
    not_jsonl = write(tmp_path, lines(CHAT_LINE) + "oops\n" + "[1]\n", "b.jsonl")
    objects, problems, count = check_jsonl_objects(not_jsonl)
    assert objects == 1 and count == 2
    assert [(p.line, p.code) for p in problems] == [(2, "invalid_json"), (3, "data_type")]


def test_summary_counts_each_problem_kind_and_names_first_lines(tmp_path):
    bad = [{"messages": [{"role": "robot", "content": "x"}]}] * 7 + [{"prompt": "x"}]
    report = validate_dataset(write(tmp_path, lines(CHAT_LINE, *bad)))
    assert report.problem_count == 8
    summary = report.summary("Training file")
    assert summary.startswith("Training file has 8 problems (7 unrecognized_role, 1 mixed_formats)")
    assert "line 2:" in summary and "(and 3 more problems)" in summary


def test_few_examples_are_allowed_with_a_warning(tmp_path):
    report = validate_dataset(write(tmp_path, lines({"prompt": "a", "completion": "b"}) * 2))
    assert report.ok and len(report.examples) == 2
    assert any("at least 10" in w for w in report.warnings)
    report = validate_dataset(write(tmp_path, lines(CHAT_LINE) * 10))
    assert report.warnings == []


def test_deeply_nested_and_huge_lines_are_problems_not_crashes(tmp_path, monkeypatch):
    nested = "[" * 100_000 + "]" * 100_000
    report = validate_dataset(write(tmp_path, nested + "\n" + lines(CHAT_LINE)))
    assert report.problems[0].line == 1 and report.problems[0].code in {"invalid_json", "json_array", "data_type"}
    monkeypatch.setattr("tunehouse.data.jsonl.MAX_LINE_BYTES", 1000)
    report = validate_dataset(write(tmp_path, '{"prompt": "' + "x" * 5000 + '", "completion": "y"}\n' + lines(CHAT_LINE)))
    assert (report.problems[0].line, report.problems[0].code) == (1, "line_too_long")
    assert len(report.examples) == 1 and report.examples[0].line == 2


@pytest.mark.parametrize(
    "record",
    [
        CHAT_LINE,
        {"messages": [{"role": "developer", "content": "be brief"}, *CHAT_LINE["messages"]]},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ["hello"]}]},
        {"messages": [{"role": "tool", "content": "42"}, {"role": "assistant", "content": "ok"}]},
        {"messages": [{"role": "narrator", "content": "once"}, {"role": "assistant", "content": "ok"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok", "weight": 2}]},
        {"messages": CHAT_LINE["messages"], "notes": "extra"},
        {"messages": []},
        {"messages": "hi"},
    ],
)
def test_the_shortcut_for_plain_chat_accepts_only_what_the_full_checks_accept(record):
    """`plainly_valid_chat` settles most lines of a chat file without the full checks: anything it accepts
    must pass them, and anything they refuse it must leave to them."""
    full = validate._unknown_keys(record, validate.CHAT_KEYS, 1, "example_unrecognized_key")
    full += validate._check_messages(record.get("messages"), 1, require_assistant=True)
    full += validate._check_tools(record, 1)
    if validate.plainly_valid_chat(record):
        assert full == []
    assert (validate.check_chat(record, 1) == []) == (full == [])
