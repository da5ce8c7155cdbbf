"""Markdown to Slack text, and answers cut into messages: bot/mrkdwn.py, and bot/streaming.py's writers
against a fake Slack that refuses long messages as Slack does."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError

from bot import streaming
from bot.mrkdwn import escape, inside_code_block, slack_length, split, to_mrkdwn, unescape


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~gone~~", "~gone~"),
        ("[the docs](https://example.com/a?b=1&c=2)", "<https://example.com/a?b=1&amp;c=2|the docs>"),
        ("[local](file.txt)", "[local](file.txt)"),
        ("# Title\n## **Sub**", "*Title*\n*Sub*"),
        ("- one\n* two\n  + three", "• one\n• two\n  • three"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("<@U123> <!channel> <!here>", "&lt;@U123&gt; &lt;!channel&gt; &lt;!here&gt;"),
        ("`**not bold** <x>`", "`**not bold** &lt;x&gt;`"),
        ("```python\nif a < b and **c**:\n    pass\n```", "```\nif a &lt; b and **c**:\n    pass\n```"),
        ("2 * 3 * 4", "2 * 3 * 4"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown, mrkdwn):
    assert to_mrkdwn(markdown) == mrkdwn


def test_escape_and_unescape_round_trip():
    text = "x &lt; y & <@U1> &amp;lt;"
    assert unescape(escape(text)) == text
    assert slack_length(text) == len(escape(text))


def test_split_keeps_everything_and_fits():
    answer = "Intro paragraph.\n\n" + "word " * 300 + "\n```\n" + "code line < 1\n" * 80 + "```\nThe end & more."
    pieces = split(answer, 500)
    assert len(pieces) > 3
    assert all(slack_length(p) <= 500 for p in pieces)
    assert all(not inside_code_block(p) for p in pieces), "each message closes the code block it opens"
    assert "".join(pieces).replace("\n``````\n", "") == answer
    assert all(len(to_mrkdwn(p)) <= 500 for p in pieces)


def test_split_prefers_paragraphs_and_never_cuts_a_link():
    first = "First paragraph " * 10
    link = "[a long link text with spaces](https://example.com/x)"
    answer = first + "\n\n" + "more " * 40 + link + " tail " * 20
    pieces = split(answer, 200)
    assert pieces[0] == first + "\n\n"
    assert sum(link in p for p in pieces) == 1


class FakeSlack:
    """chat.startStream/appendStream/stopStream, chat.postMessage/update; refuses text over `limit`."""

    def __init__(self, limit: int = 40_000, streams: bool = True):
        self.limit, self.streams = limit, streams
        self.messages: dict[str, str] = {}
        self.calls: list[str] = []

    def _check(self, text: str) -> None:
        if len(text) > self.limit:
            raise SlackApiError("too long", {"ok": False, "error": "msg_too_long"})

    def _new(self, text: str) -> str:
        ts = f"{len(self.messages) + 1}.0"
        self.messages[ts] = text
        return ts

    def chat_stream(self, **kwargs):
        from slack_sdk.web.chat_stream import ChatStream

        return ChatStream(self, logger=streaming.log, **kwargs)

    def chat_startStream(self, *, chunks, **kwargs):
        self.calls.append("chat.startStream")
        if not self.streams:
            raise SlackApiError("no", {"ok": False, "error": "unknown_method"})
        text = "".join(c.text for c in chunks)
        self._check(text)
        return {"ok": True, "ts": self._new(text)}

    def chat_appendStream(self, *, ts, chunks, **kwargs):
        self.calls.append("chat.appendStream")
        text = self.messages[ts] + "".join(c.text for c in chunks)
        self._check(text)
        self.messages[ts] = text
        return {"ok": True, "ts": ts}

    def chat_stopStream(self, *, ts, chunks, **kwargs):
        self.calls.append("chat.stopStream")
        self.messages[ts] += "".join(c.text for c in chunks)
        return {"ok": True, "ts": ts}

    def chat_postMessage(self, *, text, **kwargs):
        self.calls.append("chat.postMessage")
        self._check(text)
        return {"ok": True, "ts": self._new(text)}

    def chat_update(self, *, ts, text, **kwargs):
        self.calls.append("chat.update")
        self._check(text)
        self.messages[ts] = text
        return {"ok": True, "ts": ts}


@pytest.fixture(autouse=True)
def _fresh_capabilities(monkeypatch):
    monkeypatch.setattr(streaming, "unavailable", set())
    monkeypatch.setattr(streaming, "SEND_INTERVAL_S", 0.0)


def _target(slack) -> streaming.StreamTarget:
    return streaming.StreamTarget(client=slack, channel="C1", thread_ts="1.0", user="U1", team="T1")


ANSWER = "Here is **some** code & text:\n\n```\n" + "".join(f"line {i} < {i + 1}\n" for i in range(120)) + "```\n\nDone."


def _deltas(text: str, size: int = 7):
    return (text[i:i + size] for i in range(0, len(text), size))


def test_streams_split_into_messages_at_the_budget():
    slack = FakeSlack()
    used = streaming.write_answer(_target(slack), _deltas(ANSWER), budget=600)
    assert len(used) > 2 and slack.calls[0] == "chat.startStream"
    shown = [slack.messages[ts] for ts in used]
    assert all(len(text) <= 600 for text in shown)
    assert all(not inside_code_block(unescape(text)) for text in shown)
    assert unescape("".join(shown)).replace("\n``````\n", "") == ANSWER


def test_msg_too_long_continues_in_a_new_message_and_loses_nothing():
    slack = FakeSlack(limit=900, streams=False)
    used = streaming.write_answer(_target(slack), _deltas(ANSWER), budget=3500)
    assert "chat.startStream" in streaming.unavailable
    shown = [slack.messages[ts] for ts in used]
    assert len(shown) > 2 and all(len(text) <= 900 for text in shown)
    joined = unescape("".join(shown)).replace("\n``````\n", "")
    assert "line 0 < 1" in joined and "line 119 < 120" in joined and joined.endswith("Done.")
    assert streaming.WRITING_MARK not in "".join(shown)


def test_a_failure_half_way_keeps_what_was_written():
    slack = FakeSlack()

    def failing():
        yield "Half an answer"
        raise RuntimeError("backend died")

    with pytest.raises(RuntimeError):
        streaming.write_answer(_target(slack), failing())
    assert list(slack.messages.values()) == ["Half an answer"]
    assert slack.calls[-1] == "chat.stopStream"
