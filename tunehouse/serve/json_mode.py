"""JSON mode (`response_format: {"type": "json_object"}`): decoding constrained to one JSON object.

At each step the most likely candidate tokens are checked against a small JSON prefix scanner; tokens that
would make the text anything but the beginning of a JSON object are masked out, and the answer ends as soon
as the object is complete.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

INVALID, PARTIAL, COMPLETE = "invalid", "partial", "complete"
CANDIDATES = 64
_NUMBER_PREFIX = re.compile(r"-?(0|[1-9]\d*)?(\.\d*)?([eE][+-]?\d*)?")
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_LITERALS = ("true", "false", "null")


class JsonPrefix:
    """Whether the text fed so far (leading whitespace allowed) is a JSON object, the beginning of one, or
    neither, kept as where the scan stands, so that more text is checked without reading it all again: a
    sequence keeps one for its answer, and each candidate token is checked on a copy.

    It reads one character at a time; a string, number or literal cut short is partial, not invalid.
    """

    __slots__ = ("stack", "expect", "lexeme", "buffer", "escape", "is_key", "invalid")

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.expect = "start"  # start | key_or_close | key | colon | value | value_or_close | after_value | done
        self.lexeme: str | None = None  # None | "string" | "number" | "literal": one being read
        self.buffer = ""  # the number or literal read so far
        self.escape = 0  # in a string: 0, -1 after a backslash, n > 0 while n hex digits of \uXXXX remain
        self.is_key = False
        self.invalid = False

    def copy(self) -> JsonPrefix:
        other = JsonPrefix.__new__(JsonPrefix)
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        other.stack = list(self.stack)
        return other

    def feed(self, text: str) -> str:
        for char in text:
            if self.invalid:
                break
            self._char(char)
        return self.result()

    def result(self) -> str:
        if self.invalid:
            return INVALID
        return COMPLETE if self.expect == "done" else PARTIAL

    def _char(self, char: str) -> None:
        if self.lexeme == "string":
            return self._in_string(char)
        if self.lexeme is not None:  # a number or a literal: this character extends it, or it has ended
            if self._extends_lexeme(char):
                return
            complete = _NUMBER.fullmatch(self.buffer) if self.lexeme == "number" else self.buffer in _LITERALS
            if not complete:
                return self._fail()
            self.lexeme, self.expect = None, "after_value"
        if char in " \t\r\n":
            return
        expect = self.expect
        if expect == "start":
            if char != "{":
                return self._fail()
            self.stack.append("{")
            self.expect = "key_or_close"
        elif expect in ("key_or_close", "key"):
            if char == "}" and expect == "key_or_close":
                self._close("{")
            elif char == '"':
                self.lexeme, self.is_key = "string", True
            else:
                self._fail()
        elif expect == "colon":
            if char != ":":
                return self._fail()
            self.expect = "value"
        elif expect in ("value", "value_or_close"):
            if char == "]" and expect == "value_or_close":
                self._close("[")
            elif char in "{[":
                self.stack.append(char)
                self.expect = "key_or_close" if char == "{" else "value_or_close"
            elif char == '"':
                self.lexeme, self.is_key = "string", False
            elif char == "-" or char.isdigit():
                self.lexeme, self.buffer = "number", char
            elif char.isalpha():
                self.lexeme, self.buffer = "literal", ""
                self._extends_lexeme(char)
            else:
                self._fail()
        elif expect == "after_value":
            if char == ",":
                self.expect = "key" if self.stack[-1] == "{" else "value"
            elif char in "}]":
                self._close("{" if char == "}" else "[")
            else:
                self._fail()
        else:  # done: only whitespace may follow the object
            self._fail()

    def _in_string(self, char: str) -> None:
        if self.escape == -1:
            if char == "u":
                self.escape = 4
            elif char in '"\\/bfnrt':
                self.escape = 0
            else:
                self._fail()
        elif self.escape > 0:
            if char not in "0123456789abcdefABCDEF":
                return self._fail()
            self.escape -= 1
        elif char == "\\":
            self.escape = -1
        elif char == '"':
            self.lexeme = None
            self.expect = "colon" if self.is_key else "after_value"
        elif ord(char) < 0x20:
            self._fail()

    def _extends_lexeme(self, char: str) -> bool:
        if self.lexeme == "number":
            if char not in "+-.eE0123456789":
                return False
            self.buffer += char
            if not _NUMBER_PREFIX.fullmatch(self.buffer):
                self._fail()
            return True
        if not char.isalpha():
            return False
        self.buffer += char
        if not any(literal.startswith(self.buffer) for literal in _LITERALS):
            self._fail()
        return True

    def _close(self, opener: str) -> None:
        if not self.stack or self.stack[-1] != opener:
            return self._fail()
        self.stack.pop()
        self.expect = "done" if not self.stack else "after_value"

    def _fail(self) -> None:
        self.invalid = True


def constrain(logits: torch.Tensor, state: JsonPrefix, continuation: Callable[[int], str],
              stop_ids: set[int]) -> torch.Tensor:
    """Logits with every candidate that would break the JSON object masked out (and all but the top
    candidates, which are the only ones checked). `state` is the scan of the answer so far and
    `continuation(token)` the text a token would add to it. End-of-turn tokens are never allowed: the answer
    ends when the object completes."""
    masked = torch.full_like(logits, float("-inf"))
    allowed = 0
    for candidates in _likeliest_first(logits):
        for token in candidates:
            if token not in stop_ids and state.copy().feed(continuation(token)) != INVALID:
                masked[token] = logits[token]
                allowed += 1
        if allowed:
            break
    return masked


def _likeliest_first(logits: torch.Tensor):
    """Token ids in groups of CANDIDATES, likeliest first: the top group from topk, and the whole vocabulary
    sorted only when no candidate of that group fits (the model wants prose)."""
    yield torch.topk(logits, min(CANDIDATES, len(logits))).indices.tolist()
    ranked = torch.argsort(logits, descending=True).tolist()
    for start in range(CANDIDATES, len(ranked), CANDIDATES):
        yield ranked[start : start + CANDIDATES]
