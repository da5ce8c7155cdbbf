"""Block Kit for talking to models: a comparison side by side, an evaluation's report, within Slack's limits
(a section field holds 2,000 characters, a section 3,000, a message 50 blocks).

Answers are never cut: two that fit go side by side; longer ones go one under the other, each in as many
sections as it needs.
"""

from __future__ import annotations

from . import mrkdwn
from .blocks import context, escape, section
from .chat import Side

FIELD_LIMIT = 2000
SECTION_BUDGET = 2900


def stats_line(side: Side) -> str:
    stats = side.stats
    if side.error or stats.total_s is None:
        return "no answer"
    parts = []
    if stats.first_text_s is not None:
        parts.append(f"first text {stats.first_text_s:.2f} s")
    parts.append(f"total {stats.total_s:.2f} s")
    if stats.completion_tokens is not None:
        parts.append(f"{stats.completion_tokens} tokens")
    if stats.tokens_per_second:
        parts.append(f"{stats.tokens_per_second:.0f} tokens/s")
    return " · ".join(parts)


def compare_message(prompt: str, sides: list[Side], labels: list[str]) -> dict:
    """`{"text", "blocks"}`: the prompt, then each model's answer with its latency and tokens."""
    bodies = [
        f":warning: {escape(side.error)}" if side.error else (mrkdwn.to_mrkdwn(side.text) or "_(empty answer)_")
        for side in sides
    ]
    headers = [f"*{escape(label)}* `{escape(side.model)}`" for label, side in zip(labels, sides)]
    blocks = [section(f"*Prompt*\n>{escape(prompt[:1500]).replace(chr(10), chr(10) + '>')}")]
    if all(len(h) + len(b) + 1 <= FIELD_LIMIT for h, b in zip(headers, bodies)):
        blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"{h}\n{b}"} for h, b in zip(headers, bodies)]})
        blocks.append(context("   |   ".join(f"{label}: {stats_line(side)}" for label, side in zip(labels, sides))))
    else:
        for header, side in zip(headers, sides):
            blocks.append(section(header))
            pieces = [f":warning: {escape(side.error)}"] if side.error else [
                mrkdwn.to_mrkdwn(piece) for piece in mrkdwn.split(side.text or "_(empty answer)_", SECTION_BUDGET)
            ]
            blocks += [section(piece) for piece in pieces]
            blocks.append(context(stats_line(side)))
    summary = " vs ".join(f"{label} ({stats_line(side)})" for label, side in zip(labels, sides))
    return {"text": f"Comparison: {summary}", "blocks": blocks[:50]}
