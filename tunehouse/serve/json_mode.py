"""JSON mode (`response_format: {"type": "json_object"}`): decoding constrained to one JSON object.

At each step the most likely candidate tokens are checked against a small JSON prefix scanner; tokens that
would make the text anything but the beginning of a JSON object are masked out, and the answer ends as soon
as the object is complete.
"""

from __future__ import annotations

import re

import torch

INVALID, PARTIAL, COMPLETE = "invalid", "partial", "complete"
CANDIDATES = 64
_NUMBER_PREFIX = re.compile(r"-?(0|[1-9]\d*)?(\.\d*)?([eE][+-]?\d*)?")
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_LITERALS = ("true", "false", "null")


def scan(text: str) -> str:
    """Is `text` (leading whitespace allowed) a JSON object, the beginning of one, or neither?"""
    stack: list[str] = []
    expect = "start"  # start | key_or_close | key | colon | value | value_or_close | after_value | done
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if expect == "done":
            return COMPLETE if text[i:].strip() == "" else INVALID
        if char in " \t\r\n":
            i += 1
            continue
        if expect == "start":
            if char != "{":
                return INVALID
            stack.append("{")
            expect, i = "key_or_close", i + 1
        elif expect in ("key_or_close", "key"):
            if char == "}" and expect == "key_or_close":
                expect, i = _close(stack, "{"), i + 1
            elif char == '"':
                i = _skip_string(text, i)
                if i < 0:
                    return PARTIAL if i == -1 else INVALID
                expect = "colon"
            else:
                return INVALID
        elif expect == "colon":
            if char != ":":
                return INVALID
            expect, i = "value", i + 1
        elif expect in ("value", "value_or_close"):
            if char == "]" and expect == "value_or_close":
                expect, i = _close(stack, "["), i + 1
            elif char in "{[":
                stack.append(char)
                expect, i = ("key_or_close" if char == "{" else "value_or_close"), i + 1
            elif char == '"':
                i = _skip_string(text, i)
                if i < 0:
                    return PARTIAL if i == -1 else INVALID
                expect = "after_value"
            elif char == "-" or char.isdigit():
                end = i
                while end < n and text[end] in "+-.eE0123456789":
                    end += 1
                token = text[i:end]
                if end == n:
                    return PARTIAL if _NUMBER_PREFIX.fullmatch(token) else INVALID
                if not _NUMBER.fullmatch(token):
                    return INVALID
                expect, i = "after_value", end
            elif char.isalpha():
                end = i
                while end < n and text[end].isalpha():
                    end += 1
                word = text[i:end]
                if end == n:
                    return PARTIAL if any(literal.startswith(word) for literal in _LITERALS) else INVALID
                if word not in _LITERALS:
                    return INVALID
                expect, i = "after_value", end
            else:
                return INVALID
        elif expect == "after_value":
            if char == ",":
                expect = "key" if stack[-1] == "{" else "value"
            elif char in "}]":
                expect = _close(stack, "{" if char == "}" else "[")
                if expect == "invalid":
                    return INVALID
            else:
                return INVALID
            i += 1
    return COMPLETE if expect == "done" else PARTIAL


def _close(stack: list[str], opener: str) -> str:
    if not stack or stack[-1] != opener:
        return "invalid"
    stack.pop()
    return "done" if not stack else "after_value"


def _skip_string(text: str, start: int) -> int:
    """Index after the string opening at `start`; -1 if it runs to the end (partial), -2 if invalid."""
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                return -1
            escape = text[i + 1]
            if escape == "u":
                digits = text[i + 2 : i + 6]
                if not all(c in "0123456789abcdefABCDEF" for c in digits):
                    return -2
                if len(digits) < 4:
                    return -1
                i += 6
                continue
            if escape not in '"\\/bfnrt':
                return -2
            i += 2
            continue
        if char == '"':
            return i + 1
        if ord(char) < 0x20:
            return -2
        i += 1
    return -1


def constrain(logits: torch.Tensor, generated: list[int], tokenizer, stop_ids: set[int]) -> torch.Tensor:
    """Logits with every candidate that would break the JSON object masked out (and all but the top
    candidates, which are the only ones checked). End-of-turn tokens are never allowed: the answer ends when
    the object completes."""
    masked = torch.full_like(logits, float("-inf"))
    ranked = torch.argsort(logits, descending=True).tolist()
    allowed = 0
    # the top candidates first; when none of them fits (the model wants prose), look further down
    for start in range(0, len(ranked), CANDIDATES):
        for token in ranked[start : start + CANDIDATES]:
            if token in stop_ids:
                continue
            if scan(tokenizer.decode(generated + [token], skip_special_tokens=True)) != INVALID:
                masked[token] = logits[token]
                allowed += 1
        if allowed:
            break
    return masked
