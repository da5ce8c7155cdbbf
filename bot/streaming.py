"""An answer written into a Slack thread as the model produces it.

Where the workspace has Slack's streaming methods (`chat.startStream` / `appendStream` / `stopStream`,
through slack-sdk's `chat_stream`), the answer streams as Markdown, Slack rendering it; elsewhere one message
is posted and updated about once a second with the answer as mrkdwn (Slack's `chat.update` is Tier 3). The
first text is shown as soon as it exists; later text is sent at most once a second, so a long answer costs
about one call a second whatever the model's speed.

Either way an answer longer than a message may hold goes on in a new message, cut at a safe point
(mrkdwn.cut_point), and `msg_too_long` from Slack (whose real limit is below the documented one) is met
the same way with a smaller budget: nothing is ever cut off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from .mrkdwn import CLOSE_FENCE, REOPEN_FENCE, cut_point, inside_code_block, to_mrkdwn, to_stream_markdown

log = logging.getLogger(__name__)

MESSAGE_BUDGET = 3500
"""Characters per message: Slack refuses from about 4,000 in practice (ChatGPT-in-Slack keeps 3,500)."""
SMALLEST_BUDGET = 100
"""Below this Slack's `msg_too_long` is not about length: the error is raised, not met with smaller messages."""
SEND_INTERVAL_S = 1.0
THINKING_STATUS = "is thinking…"
SEEN_REACTION = "eyes"
WRITING_MARK = " :writing_hand:"
EMPTY_ANSWER = "_(the model gave an empty answer)_"
NOT_OFFERED = {"unknown_method", "missing_scope", "not_allowed_token_type", "method_deprecated",
               "feature_not_enabled", "not_allowed", "team_not_allowed"}
"""Errors that mean the workspace does not offer a method at all: the bot stops trying it."""

unavailable: set[str] = set()
"""Methods this workspace refused as not offered, found once per process."""


@dataclass(frozen=True, kw_only=True)
class StreamTarget:
    """Where an answer goes: a thread, and who asked (Slack's streams in channels are shown to a recipient)."""

    client: WebClient
    channel: str
    thread_ts: str
    user: str
    team: str


def show_thinking(target: StreamTarget, message_ts: str | None = None) -> None:
    """Slack's "is thinking…" status in the thread where the workspace offers assistant threads; elsewhere
    an :eyes: reaction on the question, so the asker sees at once that it was heard."""
    if "assistant.threads.setStatus" not in unavailable:
        try:
            target.client.assistant_threads_setStatus(channel_id=target.channel, thread_ts=target.thread_ts, status=THINKING_STATUS)
            return
        except SlackApiError as error:
            _note_refusal("assistant.threads.setStatus", error)
    if message_ts:
        try:
            target.client.reactions_add(channel=target.channel, timestamp=message_ts, name=SEEN_REACTION)
        except SlackApiError as error:
            log.info("could not react to %s: %s", message_ts, error.response.get("error"))


def write_answer(target: StreamTarget, deltas: Iterable[str], *, budget: int = MESSAGE_BUDGET) -> list[str]:
    """Write the text `deltas` yields into the thread as it comes; returns the ts of each message used.

    An exception from `deltas` (the model failing half way) ends the messages with what was written, then
    propagates.
    """
    streams = "chat.startStream" not in unavailable
    writer: _Writer = _StreamWriter(target, budget) if streams else _UpdateWriter(target, budget)
    try:
        for delta in deltas:
            writer.text += delta
            if writer.due():
                writer = _flush_or_fall_back(writer)
    except BaseException:
        _flush_or_fall_back(writer, final=True)
        raise
    writer = _flush_or_fall_back(writer, final=True)
    return writer.message_ts or post_text(target, EMPTY_ANSWER)


def post_text(target: StreamTarget, markdown: str, *, budget: int = MESSAGE_BUDGET) -> list[str]:
    """A whole text (a notice, an error, a finished answer) in the thread as mrkdwn, in as many messages as it needs."""
    writer = _UpdateWriter(target, budget)
    writer.text = markdown
    writer.flush(final=True)
    return writer.message_ts


def _flush_or_fall_back(writer: _Writer, final: bool = False) -> _Writer:
    try:
        writer.flush(final=final)
        return writer
    except _StreamsNotOffered:
        fallback = _UpdateWriter(writer.target, writer.budget)
        fallback.text = writer.text
        fallback.flush(final=final)
        return fallback


def _note_refusal(method: str, error: SlackApiError) -> bool:
    """True (and remembered) when the error says the workspace does not offer `method`."""
    code = error.response.get("error")
    if code in NOT_OFFERED:
        log.info("this workspace does not offer %s (%s); not asking again", method, code)
        unavailable.add(method)
        return True
    log.warning("%s failed: %s", method, code)
    return False


class _StreamsNotOffered(Exception):
    """Slack refused to start a stream: the answer goes as a posted message, updated."""


class _Writer:
    """The answer so far (`text`, Markdown) and the message that shows its end: that message holds
    `text[start:]` (after a reopened code fence when `reopen`), of which Slack has the first `sent` characters."""

    def __init__(self, target: StreamTarget, budget: int):
        self.target = target
        self.budget = budget
        self.text = ""
        self.start = 0
        self.reopen = False
        self.sent = 0
        self.message_ts: list[str] = []
        self.last_sent: float | None = None

    def content(self) -> str:
        return (REOPEN_FENCE if self.reopen else "") + self.text[self.start:]

    def due(self) -> bool:
        """The first text at once; then at most one send a second."""
        if len(self.content()) <= self.sent:
            return False
        return self.last_sent is None or time.monotonic() - self.last_sent >= SEND_INTERVAL_S

    def next_message(self, cut: int) -> None:
        """The current message ends at `cut` (an index into content()); the rest goes into a new one."""
        piece = self.content()[:cut]
        self.start += cut - (len(REOPEN_FENCE) if self.reopen else 0)
        self.reopen = inside_code_block(piece)
        self.sent = 0

    def smaller(self, error: SlackApiError) -> None:
        """Slack refused a message as too long: a smaller budget from now on.

        Raises:
            SlackApiError: `error`, when the budget is already the smallest.
        """
        if self.budget <= SMALLEST_BUDGET:
            raise error
        self.budget = max(SMALLEST_BUDGET, self.budget // 2)

    def flush(self, final: bool = False) -> None:
        raise NotImplementedError


class _StreamWriter(_Writer):
    """Slack's streaming methods: text once appended cannot be taken back, so a cut falls after it."""

    def __init__(self, target: StreamTarget, budget: int):
        super().__init__(target, budget)
        self.stream = None

    def flush(self, final: bool = False) -> None:
        while True:
            content = self.content()
            cut = cut_point(content, self.budget, keep=self.sent)
            if cut >= len(content):
                if not self._send(content[self.sent:]):
                    continue
                if final:
                    self._stop(closing=False)
                return
            piece = content[:cut]
            if not self._send(piece[self.sent:]):
                continue
            self._stop(closing=inside_code_block(piece))
            self.next_message(cut)

    def _send(self, markdown: str) -> bool:
        """Append to the current stream (starting it first); False when Slack found the message too long."""
        if not markdown:
            return True
        if self.stream is None:
            self.stream = self.target.client.chat_stream(
                channel=self.target.channel, thread_ts=self.target.thread_ts, buffer_size=1,
                recipient_user_id=self.target.user, recipient_team_id=self.target.team,
            )
        try:
            self.stream.append(markdown_text=to_stream_markdown(markdown))
        except SlackApiError as error:
            if error.response.get("error") != "msg_too_long":
                if self.stream.ts is not None or self.message_ts:
                    raise
                _note_refusal("chat.startStream", error)  # remembered when the workspace lacks the method
                raise _StreamsNotOffered() from error  # this answer goes as an updated message
            self.smaller(error)
            if self.stream.ts is not None:  # end this message where it is; the rest goes into a new one
                shown = self.content()[:self.sent]
                self._stop(closing=inside_code_block(shown))
                self.next_message(self.sent)
            else:
                self.stream = None
            return False
        if self.stream.ts not in self.message_ts:
            self.message_ts.append(self.stream.ts)
        self.sent += len(markdown)
        self.last_sent = time.monotonic()
        return True

    def _stop(self, closing: bool) -> None:
        stream, self.stream = self.stream, None
        if stream is None or stream.ts is None:
            return
        try:
            stream.stop(markdown_text=CLOSE_FENCE if closing else None)
        except SlackApiError as error:
            log.warning("chat.stopStream failed: %s", error.response.get("error"))


class _UpdateWriter(_Writer):
    """A posted message updated in place (mrkdwn); a new one when it is full."""

    def __init__(self, target: StreamTarget, budget: int):
        super().__init__(target, budget)
        self.current_ts: str | None = None

    def flush(self, final: bool = False) -> None:
        while True:
            if self.current_ts is None and self.message_ts and not self.text[self.start:].strip():
                return  # what is left after the last cut is blank: no message for it
            content = self.content()
            cut = cut_point(content, self.budget - len(WRITING_MARK))
            full = cut < len(content)
            piece = content[:cut]
            text = to_mrkdwn(piece + (CLOSE_FENCE if full and inside_code_block(piece) else ""))
            if not text.strip():
                if not final:
                    return  # nothing to show yet
                text = EMPTY_ANSWER
            elif not final and not full:
                text += WRITING_MARK
            refused = self._show(text)
            if refused:
                self.smaller(refused)
                continue
            self.sent = cut
            if not full:
                return
            self.next_message(cut)
            self.current_ts = None

    def _show(self, text: str) -> SlackApiError | None:
        """Post or update the current message; Slack's error when it found the message too long."""
        target = self.target
        try:
            if self.current_ts:
                target.client.chat_update(channel=target.channel, ts=self.current_ts, text=text)
            else:
                self.current_ts = target.client.chat_postMessage(
                    channel=target.channel, thread_ts=target.thread_ts, text=text
                )["ts"]
                self.message_ts.append(self.current_ts)
        except SlackApiError as error:
            if error.response.get("error") == "msg_too_long":
                return error
            raise
        self.last_sent = time.monotonic()
        return None
