"""Datasets dropped into a channel, end to end: the real bot process, the local Slack, the embedded backend.

Each file is shared as a person shares it (the `file_share` message and the `file_shared` event, both),
and the test reads the thread as that person would see it: exactly one report, the right counts, the
converted JSONL attached with the right content, or a reply naming what is wrong.
"""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest

CHANNEL = "fine-tuning"
SETTLE_S = 1.5


def jsonl(records: list[dict], newline: str = "\n") -> bytes:
    return newline.join(json.dumps(r, ensure_ascii=False) for r in records).encode()


def chat(user: str, assistant: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def xlsx(rows: list[list]) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def share(local_slack, name: str, content: bytes, channel: str = CHANNEL) -> str:
    _, ts = local_slack.share_file(channel, "alice", name, content)
    return ts


def bot_replies(local_slack, ts: str, channel: str = CHANNEL) -> list[dict]:
    return [m for m in local_slack.messages(channel, thread_ts=ts) if m.get("bot_id") == local_slack.bot_id]


def reports(local_slack, ts: str, channel: str = CHANNEL) -> list[dict]:
    """The bot's text replies in a thread (its file uploads are messages too, without text)."""
    return [m for m in bot_replies(local_slack, ts, channel) if m.get("text")]


def wait_report(local_slack, ts: str, channel: str = CHANNEL, count: int = 1, timeout: float = 30) -> dict:
    local_slack.wait_for(lambda: len(reports(local_slack, ts, channel)) >= count, timeout)
    return reports(local_slack, ts, channel)[count - 1]


def attached_jsonl(local_slack, ts: str, channel: str = CHANNEL) -> list[dict]:
    def upload():
        for message in bot_replies(local_slack, ts, channel):
            for file in message.get("files", []):
                if file["name"].endswith(".chat.jsonl"):
                    return file["id"]
        return None

    file_id = local_slack.wait_for(upload, 15)
    content = local_slack.file(file_id)["content"]
    return [json.loads(line) for line in content.decode().splitlines() if line.strip()]


def everything_said(message: dict) -> str:
    """A message's text and every text in its blocks, as a person reads it."""
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks", []), ensure_ascii=False)


def buttons(message: dict) -> dict[str, dict]:
    found = {}
    for block in message.get("blocks", []):
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            found[element["action_id"]] = element
    return found


FORMATS = {
    "chat.jsonl, BOM and CRLF": (
        "chat.jsonl",
        b"\xef\xbb\xbf" + jsonl([chat(f"Question {i}?", f"Answer {i}.", "Be brief.") for i in range(12)], "\r\n"),
        [chat(f"Question {i}?", f"Answer {i}.", "Be brief.") for i in range(12)],
    ),
    "prompt/completion jsonl": (
        "legacy.jsonl",
        jsonl([{"prompt": f"Capital of country {i}?", "completion": f" City {i}"} for i in range(11)]),
        [chat(f"Capital of country {i}?", f" City {i}") for i in range(11)],
    ),
    "alpaca json array": (
        "alpaca.json",
        json.dumps(
            [{"instruction": "Translate to French", "input": f"cat {i}", "output": f"chat {i}"} for i in range(5)]
            + [{"instruction": f"Count to {i}", "input": "", "output": " ".join(map(str, range(1, i + 2)))} for i in range(5)]
        ).encode(),
        [chat(f"Translate to French\n\ncat {i}", f"chat {i}") for i in range(5)]
        + [chat(f"Count to {i}", " ".join(map(str, range(1, i + 2)))) for i in range(5)],
    ),
    "sharegpt jsonl": (
        "sharegpt.jsonl",
        jsonl([{"conversations": [{"from": "system", "value": "Kind."}, {"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": f"hello {i}"}]} for i in range(10)]),
        [chat(f"hi {i}", f"hello {i}", "Kind.") for i in range(10)],
    ),
    "csv question/answer with system": (
        "faq.csv",
        ("Question,Answer,System\n" + "".join(f'"What is {i}, really?","It is ""{i}"".",Short.\n' for i in range(10))).encode(),
        [chat(f"What is {i}, really?", f'It is "{i}".', "Short.") for i in range(10)],
    ),
    "tsv input/output": (
        "pairs.tsv",
        ("input\toutput\n" + "".join(f"in {i}\tout {i}\n" for i in range(10))).encode(),
        [chat(f"in {i}", f"out {i}") for i in range(10)],
    ),
    "xlsx prompt/completion": (
        "sheet.xlsx",
        xlsx([["Prompt", "Completion"]] + [[f"p {i}", f"c {i}"] for i in range(10)]),
        [chat(f"p {i}", f"c {i}") for i in range(10)],
    ),
}


@pytest.mark.parametrize("case", FORMATS)
def test_each_format_gets_one_report_and_its_converted_jsonl(local_slack, bot, case):
    name, content, expected = FORMATS[case]
    ts = share(local_slack, name, content)
    report = wait_report(local_slack, ts)
    said = everything_said(report)
    assert f"{len(expected)} examples" in said
    assert "dataset_finetune" in buttons(report)
    assert attached_jsonl(local_slack, ts) == expected
    time.sleep(SETTLE_S)
    assert len(reports(local_slack, ts)) == 1, "a file shared once is answered once"


BAD_INPUTS = {
    "empty": ("empty.jsonl", b"", ["empty"]),
    "an image": ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, ["image"]),
    "a zip": ("archive.zip", None, ["zip"]),
    "invalid utf-8": ("latin1.jsonl", jsonl([chat("a", "b")] * 2) + b"\n" + '{"prompt": "caf\xe9", "completion": "x"}'.encode("latin-1"), ["line 3", "UTF-8"]),
    "a broken json line": ("broken.jsonl", jsonl([chat(f"q{i}", f"a{i}") for i in range(11)]) + b'\n{"messages": [', ["line 12"]),
    "no assistant message anywhere": ("users.jsonl", jsonl([{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(10)]), ["assistant"]),
    "an xlsx with only a header": ("header.xlsx", xlsx([["prompt", "completion"]]), ["header"]),
    "mixed formats": ("mixed.jsonl", jsonl([chat("q1", "a1"), {"prompt": "p", "completion": "c"}, chat("q2", "a2")]), ["line 2"]),
}


def a_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.jsonl", jsonl([chat("q", "a")]))
    return buffer.getvalue()


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_a_reply_naming_the_problem(local_slack, bot, case):
    name, content, words = BAD_INPUTS[case]
    content = a_zip() if content is None else content
    ts = share(local_slack, name, content)
    report = wait_report(local_slack, ts)
    said = everything_said(report).lower()
    for word in words:
        assert word.lower() in said, f"{word!r} not in the reply: {said[:600]}"
    assert "dataset_finetune" not in buttons(report), "a file with errors cannot be trained as it stands"
    assert "Traceback" not in said
    assert bot.alive()


def test_a_very_long_line_and_a_formula_cell_are_plain_text(local_slack, bot):
    long_answer = "x" * 300_000
    ts = share(local_slack, "long.jsonl", jsonl([chat("q", long_answer)] + [chat(f"q{i}", f"a{i}") for i in range(10)]))
    report = wait_report(local_slack, ts)
    assert "11 examples" in everything_said(report) or "line 1" in everything_said(report)
    ts = share(local_slack, "formula.csv", b"prompt,completion\n" + b"".join(b"=1+%d,=HYPERLINK(\"x\")\n" % i for i in range(10)))
    report = wait_report(local_slack, ts)
    assert "10 examples" in everything_said(report)
    assert attached_jsonl(local_slack, ts)[0] == chat("=1+0", '=HYPERLINK("x")')


def test_an_xlsx_that_expands_absurdly_is_refused_before_expanding(local_slack, bot):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"<" + b" " * 100_000_000 + b">")
    ts = share(local_slack, "bomb.xlsx", buffer.getvalue())
    said = everything_said(wait_report(local_slack, ts)).lower()
    assert "zip bomb" in said and "not opened" in said
    assert bot.alive()


def test_a_repeated_delivery_changes_nothing(local_slack, bot):
    ts = share(local_slack, "again.jsonl", jsonl([chat(f"q{i}", f"a{i}") for i in range(10)]))
    wait_report(local_slack, ts)
    shares = [d for d in local_slack.deliveries if d.type in ("message", "file_shared") and d.retry_attempt == 0]
    for delivery in shares[-2:]:
        local_slack.redeliver(delivery.event_id)
    time.sleep(SETTLE_S * 2)
    assert len(reports(local_slack, ts)) == 1
    uploads = [m for m in bot_replies(local_slack, ts) if m.get("files")]
    assert len(uploads) == 1, "the converted file is attached once"


def test_a_table_without_known_columns_is_mapped_in_a_modal(local_slack, bot):
    table = b"Date,Price,Quantity Sold,City\n" + b"".join(b"2024-01-%02d,%d.50,%d,Oslo\n" % (i + 1, i, i * 3) for i in range(10))
    ts = share(local_slack, "sales.csv", table)
    reply = wait_report(local_slack, ts)
    said = everything_said(reply)
    assert "prompt" in said and "completion" in said and "Quantity Sold" in said
    local_slack.click(CHANNEL, reply["ts"], "dataset_map_columns", "alice")
    modal = local_slack.wait_for(lambda: local_slack.views("alice"), 10)[-1]
    options = modal["blocks"][1]["element"]["options"]
    assert [o["value"] for o in options] == ["Date", "Price", "Quantity Sold", "City"]

    def pick(column):
        return {"value": {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": column}, "value": column}}}

    refused = local_slack.submit_view(modal["id"], "alice", {"prompt": pick("City"), "completion": pick("City")})
    assert refused.get("response_action") == "errors" and "completion" in refused["errors"]
    local_slack.submit_view(modal["id"], "alice", {"prompt": pick("City"), "completion": pick("Price")})
    mapped = wait_report(local_slack, ts, count=2)
    assert "10 examples" in everything_said(mapped)
    assert attached_jsonl(local_slack, ts)[0] == chat("Oslo", "0.50")


def test_bad_examples_can_be_dropped_for_a_new_report(local_slack, bot):
    records = [chat(f"q{i}", f"a{i}") for i in range(12)]
    records.insert(4, {"messages": [{"role": "wizard", "content": "abracadabra"}, {"role": "assistant", "content": "x"}]})
    ts = share(local_slack, "one-bad.jsonl", jsonl(records))
    report = wait_report(local_slack, ts)
    assert "line 5" in everything_said(report)
    drop = buttons(report)["dataset_drop_bad"]
    local_slack.click(CHANNEL, report["ts"], "dataset_drop_bad", "alice")
    local_slack.click(CHANNEL, report["ts"], "dataset_drop_bad", "alice")  # a double click
    cleaned = wait_report(local_slack, ts, count=2)
    assert "12 examples" in everything_said(cleaned) and "dataset_finetune" in buttons(cleaned)
    time.sleep(SETTLE_S)
    assert len(reports(local_slack, ts)) == 2, drop


def test_a_file_in_a_direct_message_is_answered_there(local_slack, bot):
    dm = local_slack.dm("alice")
    ts = share(local_slack, "private.jsonl", jsonl([chat(f"q{i}", f"a{i}") for i in range(10)]), channel=dm)
    report = wait_report(local_slack, ts, channel=dm)
    assert "10 examples" in everything_said(report)


def test_the_bot_kept_serving_and_ignored_its_own_uploads(local_slack, bot):
    assert bot.alive()
    own_files = [f for f in local_slack.files() if f.get("user") == local_slack.bot_user_id]
    assert own_files, "the bot uploaded converted files"
    answered_own = [
        m for f in own_files for m in local_slack.messages(CHANNEL)
        if m.get("bot_id") and f["name"] in m.get("text", "")
    ]
    assert not answered_own
    assert "Traceback" not in bot.log()
