"""JSON mode (`response_format: {"type": "json_object"}`) and structured outputs (`"json_schema"`): decoding
constrained to one JSON object, or one that matches a schema.

At each step the most likely candidate tokens are checked against a small JSON prefix scanner (JsonPrefix,
or SchemaPrefix for a schema); tokens that would make the text anything but the beginning of such an object
are masked out, and the answer ends as soon as the object is complete.
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
MAX_BLANKS = 16
"""Whitespace allowed in a row between tokens of the JSON: enough for any indentation, and it stops a model
that would otherwise pad an answer with blank lines until max_tokens."""


class JsonPrefix:
    """Whether the text fed so far (leading whitespace allowed) is a JSON object, the beginning of one, or
    neither, kept as where the scan stands, so that more text is checked without reading it all again: a
    sequence keeps one for its answer, and each candidate token is checked on a copy.

    It reads one character at a time; a string, number or literal cut short is partial, not invalid. The
    `_on_*` methods are where a schema (SchemaPrefix) checks what is being written; here they accept all.
    """

    __slots__ = ("stack", "expect", "lexeme", "buffer", "escape", "is_key", "invalid", "blanks")

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.expect = "start"  # start | key_or_close | key | colon | value | value_or_close | after_value | done
        self.lexeme: str | None = None  # None | "string" | "number" | "literal": one being read
        self.buffer = ""  # the number or literal read so far
        self.escape = 0  # in a string: 0, -1 after a backslash, n > 0 while n hex digits of \uXXXX remain
        self.is_key = False
        self.invalid = False
        self.blanks = 0  # whitespace characters in a row, outside strings

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
            self.blanks += 1
            if self.blanks > MAX_BLANKS:
                self._fail()
            return
        self.blanks = 0
        expect = self.expect
        if expect == "start":
            if char != "{":
                return self._fail()
            self._on_value_start("object", char)
            self.stack.append("{")
            self.expect = "key_or_close"
        elif expect in ("key_or_close", "key"):
            if char == "}" and expect == "key_or_close":
                self._close("{")
            elif char == '"':
                self.lexeme, self.is_key = "string", True
                self._on_key_start()
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
                self._on_value_start("object" if char == "{" else "array", char)
                self.stack.append(char)
                self.expect = "key_or_close" if char == "{" else "value_or_close"
            elif char == '"':
                self.lexeme, self.is_key = "string", False
                self._on_value_start("string", char)
            elif char == "-" or char.isdigit():
                self._on_value_start("number", char)
                self.lexeme, self.buffer = "number", char
            elif char.isalpha():
                self._on_value_start("literal", char)
                self.lexeme, self.buffer = "literal", ""
                self._extends_lexeme(char)
            else:
                self._fail()
        elif expect == "after_value":
            if char == ",":
                self._on_comma()
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
            self._on_string_end()
        elif ord(char) < 0x20:
            self._fail()
        else:
            self._on_string_char(char)

    def _extends_lexeme(self, char: str) -> bool:
        if self.lexeme == "number":
            if char not in "+-.eE0123456789":
                return False
            self.buffer += char
            if not _NUMBER_PREFIX.fullmatch(self.buffer):
                self._fail()
            self._on_lexeme_char(char)
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
        self._on_close(opener)
        self.stack.pop()
        self.expect = "done" if not self.stack else "after_value"

    def _fail(self) -> None:
        self.invalid = True

    # what a schema checks (SchemaPrefix); plain JSON mode accepts everything
    def _on_value_start(self, kind: str, char: str) -> None:
        """A value begins: `kind` is object, array, string, number or literal (its first `char` says which)."""

    def _on_key_start(self) -> None: ...

    def _on_string_char(self, char: str) -> None:
        """A character of a key or string value (escapes are not passed)."""

    def _on_string_end(self) -> None: ...

    def _on_lexeme_char(self, char: str) -> None:
        """A character of a number after its first."""

    def _on_comma(self) -> None: ...

    def _on_close(self, opener: str) -> None: ...


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


# --- structured outputs: `response_format: {"type": "json_schema", ...}` ----------------------------------

ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$comment", "$id"}
"""Keywords that describe a schema without constraining it: accepted and ignored."""
CONSTRAINTS = {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
               "$ref", "$defs", "definitions"}
"""Keywords decoding enforces; any other keyword is refused, never silently ignored."""
_KINDS = {"object": "object", "array": "array", "string": "string", "number": "number", "integer": "number",
          "boolean": "literal", "null": "literal"}
_ANY = [{"type": kind} for kind in ("object", "array", "string", "number", "boolean", "null")]


class UnsupportedSchema(ValueError):
    """A JSON schema decoding cannot enforce (the message names the keyword and where it is)."""


def check_schema(schema: dict) -> None:
    """Refuse what SchemaPrefix cannot enforce, before any decoding: an object at the root, the keywords
    above only, string enums, and anyOf alternatives that differ in their first character's kind."""
    seen: set[int] = set()

    def walk(node, path: str) -> None:
        if not isinstance(node, dict):
            raise UnsupportedSchema(f"{path} must be a schema object")
        if id(node) in seen:
            return
        seen.add(id(node))
        _check_shapes(node, path)
        for index, option in enumerate(node.get("anyOf", ())):
            walk(option, f"{path}.anyOf.{index}")
        alternatives = _alternatives(node, schema)
        for keyword in [keyword for part in [node, *alternatives] for keyword in part]:
            if keyword not in CONSTRAINTS and keyword not in ANNOTATIONS:
                raise UnsupportedSchema(f"the keyword `{keyword}` (at {path}) is not supported")
        kinds = [_kind(alternative) for alternative in alternatives]
        if len(set(kinds)) < len(kinds) and not all(kind == "literal" for kind in kinds):
            raise UnsupportedSchema(f"the alternatives at {path} must differ in type (one object, one string, ...)")
        for alternative in alternatives:
            for value in alternative.get("enum", ()):
                if not isinstance(value, str):
                    raise UnsupportedSchema(f"enum values must be strings (at {path})")
            if alternative.get("type") not in _KINDS and "enum" not in alternative:
                raise UnsupportedSchema(f"the type at {path} must be one of {', '.join(_KINDS)}")
            for name, child in alternative.get("properties", {}).items():
                walk(child, f"{path}.properties.{name}")
            if isinstance(alternative.get("additionalProperties"), dict):
                walk(alternative["additionalProperties"], f"{path}.additionalProperties")
            if "items" in alternative:
                walk(alternative["items"], f"{path}.items")

    walk(schema, "schema")
    if [alternative.get("type") for alternative in _alternatives(schema, schema)] != ["object"]:
        raise UnsupportedSchema("the root of the schema must be an object (`\"type\": \"object\"`)")


_SHAPES = {"properties": dict, "required": list, "enum": list, "anyOf": list, "items": dict,
           "additionalProperties": (bool, dict), "type": (str, list), "$ref": str, "$defs": dict, "definitions": dict}


def _check_shapes(node: dict, path: str) -> None:
    for keyword, shape in _SHAPES.items():
        if keyword in node and not isinstance(node[keyword], shape):
            raise UnsupportedSchema(f"`{keyword}` at {path} has the wrong kind of value")
    if not all(isinstance(name, str) for name in node.get("required", ())):
        raise UnsupportedSchema(f"`required` at {path} must list property names")
    if isinstance(node.get("type"), list) and not (node["type"] and all(isinstance(t, str) for t in node["type"])):
        raise UnsupportedSchema(f"`type` at {path} must name one type or list several")
    for keyword in ("anyOf", "enum"):
        if node.get(keyword) == []:
            raise UnsupportedSchema(f"`{keyword}` at {path} must list at least one choice")


def _resolve(node: dict, root: dict) -> dict:
    followed: list[str] = []
    while "$ref" in node:
        reference = node["$ref"]
        if not isinstance(reference, str) or not reference.startswith("#") or reference in followed:
            raise UnsupportedSchema(f"the reference {reference} must be local (#...) and lead to a schema")
        followed.append(reference)
        target = root
        for part in reference[2:].split("/") if reference != "#" else ():
            if not isinstance(target, dict) or part not in target:
                raise UnsupportedSchema(f"the reference {reference} points nowhere")
            target = target[part]
        if not isinstance(target, dict):
            raise UnsupportedSchema(f"the reference {reference} points nowhere")
        node = target
    return node


def _alternatives(node: dict, root: dict, unfolding: tuple[int, ...] = ()) -> list[dict]:
    """The schemas a value may match, each with one `type` (or an `enum`): anyOf, type lists and const
    unfolded, references resolved."""
    node = _resolve(node, root)
    _check_shapes(node, "a referenced schema")
    if "anyOf" in node:
        if not all(isinstance(option, dict) for option in node["anyOf"]):
            raise UnsupportedSchema("every `anyOf` choice must be a schema object")
        if id(node) in unfolding:
            raise UnsupportedSchema("`anyOf` and `$ref` lead in a circle without reaching a type")
        return [alternative for option in node["anyOf"]
                for alternative in _alternatives(option, root, (*unfolding, id(node)))]
    if "const" in node:
        return [{**node, "enum": [node["const"]], "type": "string"}]
    kind = node.get("type")
    if isinstance(kind, list):
        return [{**node, "type": single} for single in kind]
    if kind is None:
        implied = [kind for keyword, kind in (("properties", "object"), ("items", "array"), ("enum", "string"))
                   if keyword in node]
        return [{**node, "type": implied[0]}] if implied else _ANY
    return [node]


def _kind(alternative: dict) -> str:
    return _KINDS.get(alternative.get("type"), "string")


class SchemaPrefix(JsonPrefix):
    """JsonPrefix that also holds the object to a JSON schema (checked first by `check_schema`): keys are
    the properties still unwritten (a key is refused as soon as no property starts with it), values have
    the property's type, enums are held to their values character by character, integers never take a
    fraction or exponent, and an object closes only once its required properties are written."""

    __slots__ = ("root", "pending", "frames", "text")

    def __init__(self, schema: dict) -> None:
        super().__init__()
        self.root = schema
        self.pending: list[dict] = _alternatives(schema, schema)
        """What the next value may be."""
        self.frames: list[dict] = []
        """Per open object or array: its schema and, for an object, the keys written so far."""
        self.text: str | None = None
        """The key or enum string being read (None when no check needs it)."""

    def copy(self) -> SchemaPrefix:
        other = SchemaPrefix.__new__(SchemaPrefix)
        for name in JsonPrefix.__slots__ + SchemaPrefix.__slots__:
            setattr(other, name, getattr(self, name))
        other.stack = list(self.stack)
        other.frames = [{**frame, "seen": list(frame["seen"])} if "seen" in frame else frame
                        for frame in self.frames]
        return other

    def _in_string(self, char: str) -> None:
        if char == "\\" and self.escape == 0 and self.text is not None:
            return self._fail()  # keys and enum values are written plainly, so they can be checked as they come
        super()._in_string(char)

    def _on_value_start(self, kind: str, char: str) -> None:
        wanted = "boolean" if char in "tf" else "null" if char == "n" else None
        matching = [a for a in self.pending if _kind(a) == kind and (wanted is None or a.get("type") == wanted)]
        if not matching:
            return self._fail()
        alternative = matching[0]
        if kind == "object":
            self.frames.append({"schema": alternative, "seen": []})
        elif kind == "array":
            self.frames.append({"schema": alternative})
            self.pending = _alternatives(alternative.get("items", {}), self.root)
        elif kind == "string":
            enums = [a["enum"] for a in matching if "enum" in a]
            free = any("enum" not in a for a in matching)
            self.pending = [] if free else [{"enum": [v for values in enums for v in values]}]
            self.text = None if free else ""
        elif kind == "number":
            self.pending = matching

    def _on_key_start(self) -> None:
        if not self._unwritten_keys() and not self._any_key_allowed():
            return self._fail()
        self.text = ""

    def _on_string_char(self, char: str) -> None:
        if self.text is None:
            return
        self.text += char
        if self.is_key:
            if not self._any_key_allowed() and not any(key.startswith(self.text) for key in self._unwritten_keys()):
                self._fail()
        elif not any(value.startswith(self.text) for value in self.pending[0]["enum"]):
            self._fail()

    def _on_string_end(self) -> None:
        text, self.text = self.text, None
        if self.is_key:
            frame = self.frames[-1]
            properties = frame["schema"].get("properties", {})
            if text in properties and text not in frame["seen"]:
                schema = properties[text]
            elif self._any_key_allowed() and text not in frame["seen"]:
                extra = frame["schema"].get("additionalProperties", True)
                schema = extra if isinstance(extra, dict) else {}
            else:
                return self._fail()
            frame["seen"] = frame["seen"] + [text]
            self.pending = _alternatives(schema, self.root)
        elif text is not None and text not in self.pending[0]["enum"]:
            self._fail()

    def _on_lexeme_char(self, char: str) -> None:
        if char in ".eE" and all(a.get("type") == "integer" for a in self.pending):
            self._fail()

    def _on_comma(self) -> None:
        frame = self.frames[-1]
        if "seen" in frame:
            if not self._unwritten_keys() and not self._any_key_allowed():
                self._fail()
        else:
            self.pending = _alternatives(frame["schema"].get("items", {}), self.root)

    def _on_close(self, opener: str) -> None:
        frame = self.frames.pop()
        if opener == "{" and any(key not in frame["seen"] for key in frame["schema"].get("required", ())):
            self._fail()

    def _unwritten_keys(self) -> list[str]:
        frame = self.frames[-1]
        return [key for key in frame["schema"].get("properties", {}) if key not in frame["seen"]]

    def _any_key_allowed(self) -> bool:
        schema = self.frames[-1]["schema"]
        return "properties" not in schema and schema.get("additionalProperties", True) is not False
