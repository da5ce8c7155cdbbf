"""Likely credentials in training data: a fine-tuned model can repeat what it was trained on, so a key in a
dataset is a key anyone who talks to the model may get. Flagged, never blocked (false positives happen).

Every pattern starts with a literal (`sk-`, `AKIA`, ...), so Python's regex engine jumps between occurrences
of it instead of trying each position: a 37 MB file scans in ~0.1 s. Boundaries that would need `\\b` at the
front (which defeats that) are checked on the few matches instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class _Pattern:
    kind: str
    regex: re.Pattern
    starts_word: bool = True
    """The character before the match must not be a letter or digit."""
    needs_digit: bool = False
    """Random keys have digits; `sk-management-system-design` is a phrase, not a key."""
    preceded_by: str = ""
    """The match must follow one of these characters (`p` of `password`, kept out of the literal prefix)."""


_PATTERNS = [
    _Pattern("OpenAI API key", re.compile(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"), needs_digit=True),
    _Pattern("Slack token", re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}"), needs_digit=True),
    _Pattern("Slack app token", re.compile(r"xapp-[0-9]-[A-Za-z0-9-]{10,}")),
    _Pattern("AWS access key", re.compile(r"AKIA[0-9A-Z]{16}")),
    _Pattern("AWS access key", re.compile(r"ASIA[0-9A-Z]{16}")),
    _Pattern("private key", re.compile(r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----"), starts_word=False),
    _Pattern("GitHub token", re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}")),
    _Pattern("GitHub token", re.compile(r"github_pat_[A-Za-z0-9_]{22,}")),
    _Pattern("Google API key", re.compile(r"AIza[0-9A-Za-z_-]{35}")),
    # `password=...`, `Password: ...`, and `"password": "..."` inside a JSON string (quotes escaped)
    _Pattern("password", re.compile(r'assw(?:or)?d(?:\\?")?[ \t]*[=:][ \t]*(?:\\?")?[^\s"\\]{4,}'), False, preceded_by="pP"),
    _Pattern("password", re.compile(r'ASSW(?:OR)?D(?:\\?")?[ \t]*[=:][ \t]*(?:\\?")?[^\s"\\]{4,}'), False, preceded_by="P"),
]


@dataclass(frozen=True)
class Leak:
    start: int
    end: int
    kind: str


def find_leaks(text: str) -> Iterator[Leak]:
    """Likely secrets in `text`, pattern by pattern (not in text order)."""
    for pattern in _PATTERNS:
        for match in pattern.regex.finditer(text):
            start = match.start()
            if pattern.preceded_by:
                if start == 0 or text[start - 1] not in pattern.preceded_by:
                    continue
                start -= 1
            if pattern.starts_word and start and text[start - 1].isalnum():
                continue
            if pattern.needs_digit and not any(char.isdigit() for char in match.group()):
                continue
            yield Leak(start, match.end(), pattern.kind)


def mask_leaks(text: str) -> str:
    """`text` with each likely secret cut to its first 4 characters and `…`, for reports and logs."""
    leaks = sorted(find_leaks(text), key=lambda leak: leak.start)
    if not leaks:
        return text
    pieces, cursor = [], 0
    for leak in leaks:
        if leak.start < cursor:
            continue
        pieces += [text[cursor : leak.start], text[leak.start : leak.start + 4], "…"]
        cursor = leak.end
    pieces.append(text[cursor:])
    return "".join(pieces)
