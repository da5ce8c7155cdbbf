"""Deep dataset validation: which format a file is in, and every problem in it, by line.

The OpenAI example checks live here, once: the API's upload and job validation (`validate_dataset`) and the
Slack bot's intake (`tunehouse.data.formats`, which reads CSV, XLSX and JSON arrays too) call the same
functions. Formats:
- chat: `{"messages": [...], "tools"?: [...]}` (OpenAI's supervised format);
- prompt_completion: `{"prompt": str, "completion": str}` (OpenAI's legacy format, used by its tutorial);
- preference: `{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}` (DPO);
- alpaca: `{"instruction": str, "input"?: str, "output": str}` and sharegpt: `{"conversations": [{"from",
  "value"}]}`, which the API does not train as they are; the bot converts them to chat.

Problem codes follow OpenAI's data-preparation cookbook where it has one (`data_type`, `missing_messages_list`,
`message_missing_key`, `message_unrecognized_key`, `unrecognized_role`, `missing_content`,
`example_missing_assistant_message`); the others are tunehouse's, named the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .jsonl import (
    EMPTY_FILE,
    MAX_REPORTED_PROBLEMS,
    JsonLine,
    Problem,
    iter_json_lines,
    json_type_name,
    not_an_object,
    summarize_problems,
)

CHAT = "chat"
PROMPT_COMPLETION = "prompt_completion"
PREFERENCE = "preference"
ALPACA = "alpaca"
SHAREGPT = "sharegpt"
FORMAT_LABELS = {
    CHAT: "chat messages",
    PROMPT_COMPLETION: "prompt/completion",
    PREFERENCE: "preference pairs",
    ALPACA: "Alpaca instruction/output",
    SHAREGPT: "ShareGPT conversations",
}
TRAINABLE_FORMATS = (CHAT, PROMPT_COMPLETION, PREFERENCE)
"""What the API trains as it is."""

ROLES = ("system", "developer", "user", "assistant", "tool")
LEGACY_ROLES = ("function",)
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"}
CHAT_KEYS = {"messages", "tools", "functions", "parallel_tool_calls"}
PROMPT_COMPLETION_KEYS = {"prompt", "completion"}
PREFERENCE_KEYS = {"input", "preferred_output", "non_preferred_output"}
ALPACA_KEYS = {"instruction", "input", "output"}
SHAREGPT_KEYS = {"conversations"}
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}
"""ShareGPT's `from` values and the chat role each becomes."""
FORMAT_KEYS = {
    CHAT: CHAT_KEYS,
    PROMPT_COMPLETION: PROMPT_COMPLETION_KEYS,
    PREFERENCE: PREFERENCE_KEYS,
    ALPACA: ALPACA_KEYS,
    SHAREGPT: SHAREGPT_KEYS,
}
RECOMMENDED_MIN_EXAMPLES = 10

@dataclass
class Example:
    line: int
    format: str
    record: dict


@dataclass
class DatasetReport:
    """What validation found. `ok` means every line is a usable example of one format."""

    format: str | None = None
    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    problem_codes: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        self.problem_codes[problem.code] += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(problem)

    def summary(self, what: str = "The file", shown: int = 5) -> str:
        """One message that counts each kind of problem and names the first lines."""
        if self.ok:
            return f"{what} is valid: {len(self.examples)} {FORMAT_LABELS.get(self.format, '')} examples."
        counts = ", ".join(f"{n} {code}" for code, n in self.problem_codes.most_common())
        noun = "problem" if self.problem_count == 1 else "problems"
        listing = summarize_problems(self.problems, self.problem_count, shown=shown)
        return f"{what} has {self.problem_count} {noun} ({counts}): {listing}."


def validate_dataset(path: Path) -> DatasetReport:
    """Read the whole file and collect every problem; never raises for bad content."""
    report = DatasetReport()
    checker = RecordChecker()
    for item in iter_json_lines(path):
        if isinstance(item, Problem):
            report.add(item)
            continue
        example_format, problems = checker.check(item.value, item.line)
        for problem in problems:
            report.add(problem)
        if not problems:
            report.examples.append(Example(item.line, example_format, item.value))
    report.format = checker.format
    if not report.examples and report.problem_count == 0:
        report.add(EMPTY_FILE)
    if report.ok and len(report.examples) < RECOMMENDED_MIN_EXAMPLES:
        report.warnings.append(
            f"only {len(report.examples)} example(s): OpenAI requires at least {RECOMMENDED_MIN_EXAMPLES} and "
            "recommends 50 to 100. tunehouse trains anyway; expect the model to learn little from so few."
        )
    return report


@dataclass
class RecordChecker:
    """Checks records one at a time: each must be an object in one of `formats`, the same format as the
    first, and pass that format's checks. Keeps only the file's format, so it works on a stream."""

    formats: tuple[str, ...] = TRAINABLE_FORMATS
    unit: str = "line"
    """What a position counts, as messages name it: "line", or "item" of a JSON array."""
    format: str | None = None
    format_line: int | None = None

    def check(self, value: object, line: int) -> tuple[str | None, list[Problem]]:
        """(the record's format or None, its problems); no problems means a usable example."""
        if not isinstance(value, dict):
            return None, [not_an_object(JsonLine(line, value))]
        example_format = detect_format(value)
        if example_format not in self.formats:
            return example_format, [self._unknown_format(value, line, example_format)]
        if self.format is None:
            self.format, self.format_line = example_format, line
        elif example_format != self.format:
            return example_format, [
                Problem(
                    line,
                    "mixed_formats",
                    f"this {self.unit} is {FORMAT_LABELS[example_format]} but the file is "
                    f"{FORMAT_LABELS[self.format]} (from {self.unit} {self.format_line}); use one format per file",
                )
            ]
        return example_format, CHECKS[example_format](value, line)

    def _unknown_format(self, record: dict, line: int, example_format: str | None) -> Problem:
        keys = ", ".join(sorted(record)) or "none"
        expected = {
            CHAT: 'chat messages {"messages": [...]}',
            PROMPT_COMPLETION: 'a {"prompt", "completion"} pair',
            PREFERENCE: 'a preference pair {"input", "preferred_output", "non_preferred_output"}',
            ALPACA: 'an Alpaca {"instruction", "input", "output"} example',
            SHAREGPT: 'a ShareGPT {"conversations": [{"from", "value"}]} example',
        }
        wanted = [expected[name] for name in self.formats]
        listing = ", ".join(wanted[:-1]) + f" or {wanted[-1]}" if len(wanted) > 1 else wanted[0]
        found = f"{FORMAT_LABELS[example_format]}, which is not accepted here" if example_format else f"keys: {keys}"
        return Problem(line, "unknown_format", f"expected {listing}; found {found}")


def detect_format(record: dict) -> str | None:
    """The format a record is written in, judged by its keys (None when it is in none of them)."""
    if "messages" in record:
        return CHAT
    if "conversations" in record:
        return SHAREGPT
    if "prompt" in record or "completion" in record:
        return PROMPT_COMPLETION
    if "instruction" in record or "output" in record:
        return ALPACA
    if PREFERENCE_KEYS & record.keys():
        return PREFERENCE
    return None


# --- chat -------------------------------------------------------------------------------------------------


_PLAIN_ROLES = frozenset(("system", "developer", "user", "assistant"))


def plainly_valid_chat(record: dict) -> bool:
    """The common example settled in one pass (a third of the full checks' time): only `messages`, each
    exactly a role other than `tool` and non-empty string content, one of them the assistant's. Everything
    this accepts, the full checks accept; anything else goes through them."""
    messages = record.get("messages")
    if len(record) != 1 or type(messages) is not list or not messages:
        return False
    has_assistant = False
    for message in messages:
        if type(message) is not dict or len(message) != 2:
            return False
        role, content = message.get("role"), message.get("content")
        if role not in _PLAIN_ROLES or type(content) is not str or not content:
            return False
        has_assistant = has_assistant or role == "assistant"
    return has_assistant


def check_chat(record: dict, line: int) -> list[Problem]:
    if plainly_valid_chat(record):
        return []
    problems = _unknown_keys(record, CHAT_KEYS, line, "example_unrecognized_key")
    problems += _check_messages(record.get("messages"), line, require_assistant=True)
    problems += _check_tools(record, line)
    return problems


def _check_messages(
    messages: object, line: int, *, require_assistant: bool, where: str = "", path: str = "messages"
) -> list[Problem]:
    if not isinstance(messages, list) or not messages:
        if messages is None:
            found = "it missing"
        elif isinstance(messages, list):
            found = "an empty array"
        else:
            found = json_type_name(messages)
        return [
            Problem(
                line,
                "missing_messages_list",
                f"{where}`messages` must be a non-empty array of messages, found {found}",
                path,
            )
        ]
    problems: list[Problem] = []
    learnable = 0
    for index, message in enumerate(messages):
        at, field_path = f"{where}message {index + 1}", f"{path}[{index}]"
        if not isinstance(message, dict):
            problems.append(
                Problem(line, "data_type", f"{at} must be an object, found {json_type_name(message)}", field_path)
            )
            continue
        found = _check_message(message, line, at, field_path)
        problems += found
        if not found and message.get("role") == "assistant" and message.get("weight", 1) != 0:
            learnable += 1
    if require_assistant and not problems and learnable == 0:
        problems.append(
            Problem(
                line,
                "example_missing_assistant_message",
                "no assistant message to learn from (every example needs at least one assistant message "
                "without weight 0)",
                path,
            )
        )
    return problems


def _check_message(message: dict, line: int, at: str, path: str) -> list[Problem]:
    role = message.get("role")
    if "role" not in message:
        return [
            Problem(
                line, "message_missing_key", f"{at} has no `role` (expected one of {', '.join(ROLES)})", f"{path}.role"
            )
        ]
    if role not in ROLES + LEGACY_ROLES:
        return [
            Problem(
                line,
                "unrecognized_role",
                f"{at} has unknown role {role!r} (expected one of {', '.join(ROLES)})",
                f"{path}.role",
            )
        ]
    problems = _unknown_keys(message, MESSAGE_KEYS, line, "message_unrecognized_key", at=at, path=path)
    calls_tool = bool(message.get("tool_calls") or message.get("function_call"))
    if "weight" in message:
        weight = message["weight"]
        if role != "assistant":
            problems.append(
                Problem(
                    line, "invalid_weight", f"{at}: `weight` is only allowed on assistant messages", f"{path}.weight"
                )
            )
        elif weight not in (0, 1) or isinstance(weight, bool):
            problems.append(
                Problem(line, "invalid_weight", f"{at}: `weight` must be 0 or 1, found {weight!r}", f"{path}.weight")
            )
    if "tool_calls" in message:
        problems += _check_tool_calls(message["tool_calls"], line, at, role, f"{path}.tool_calls")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        problems.append(
            Problem(
                line,
                "message_missing_key",
                f"{at}: a tool message needs a string `tool_call_id`",
                f"{path}.tool_call_id",
            )
        )
    content = message.get("content")
    content_path = f"{path}.content"
    if content is None:
        if not (role == "assistant" and calls_tool):
            problems.append(Problem(line, "missing_content", f"{at} ({role}) has no `content`", content_path))
        return problems
    text = content_text(content)
    if text is None:
        problems.append(
            Problem(
                line,
                "invalid_content",
                f"{at} ({role}): `content` must be a string or an array of text parts "
                f'({{"type": "text", "text": "..."}}), found {_describe_content(content)}',
                content_path,
            )
        )
    elif not text and not calls_tool and role != "system":
        problems.append(Problem(line, "missing_content", f"{at} ({role}) has empty `content`", content_path))
    return problems


def content_text(content: object) -> str | None:
    """The text of a message's content (a string or a list of text parts), or None if it is neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                return None
            texts.append(part["text"])
        return "".join(texts)
    return None


def _describe_content(content: object) -> str:
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") not in (None, "text"):
                return f"a {part.get('type')!r} part (only text can be trained on this model)"
        return "an array with a part that is not {\"type\": \"text\", \"text\": string}"
    return json_type_name(content)


def _check_tool_calls(tool_calls: object, line: int, at: str, role: str, path: str) -> list[Problem]:
    if role != "assistant":
        return [Problem(line, "invalid_tool_calls", f"{at}: only assistant messages can have `tool_calls`", path)]
    if not isinstance(tool_calls, list) or not tool_calls:
        return [Problem(line, "invalid_tool_calls", f"{at}: `tool_calls` must be a non-empty array", path)]
    for number, call in enumerate(tool_calls, start=1):
        function = call.get("function") if isinstance(call, dict) else None
        if not (
            isinstance(function, dict)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), str)
        ):
            return [
                Problem(
                    line,
                    "invalid_tool_calls",
                    f'{at}: tool call {number} must look like {{"id": ..., "type": "function", '
                    '"function": {"name": string, "arguments": JSON string}}',
                    f"{path}[{number - 1}]",
                )
            ]
    return []


def _check_tools(record: dict, line: int, path: str = "") -> list[Problem]:
    for key in ("tools", "functions"):
        if key not in record:
            continue
        tools = record[key]
        if not isinstance(tools, list):
            return [
                Problem(line, "invalid_tools", f"`{key}` must be an array, found {json_type_name(tools)}", path + key)
            ]
        for number, tool in enumerate(tools, start=1):
            spec = tool.get("function") if key == "tools" and isinstance(tool, dict) else tool
            if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)):
                return [
                    Problem(
                        line,
                        "invalid_tools",
                        f"`{key}` entry {number} needs a function with a string `name`",
                        f"{path}{key}[{number - 1}]",
                    )
                ]
    return []


def _unknown_keys(obj: dict, allowed: set[str], line: int, code: str, at: str = "", path: str = "") -> list[Problem]:
    unknown = sorted(set(obj) - allowed)
    if not unknown:
        return []
    where = f"{at} has" if at else "the example has"
    return [
        Problem(
            line,
            code,
            f"{where} unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(allowed))})",
            f"{path}.{unknown[0]}" if path else unknown[0],
        )
    ]


def unknown_keys(record: dict, example_format: str) -> list[str]:
    """Top-level keys that are not part of `example_format` (the bot leaves them out when it converts)."""
    allowed = FORMAT_KEYS[example_format]
    return [key for key in record if key not in allowed]


def _check_text_fields(record: dict, line: int, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[Problem]:
    """Each required key present and a string; each optional one a string or null when present."""
    problems = []
    for key in required:
        if key not in record:
            others = " and ".join(f"`{name}`" for name in required)
            problems.append(Problem(line, f"missing_{key}", f"no `{key}`: every example needs {others}", key))
        elif not isinstance(record[key], str):
            problems.append(
                Problem(line, "invalid_content", f"`{key}` must be a string, found {json_type_name(record[key])}", key)
            )
    for key in optional:
        if record.get(key) is not None and not isinstance(record[key], str):
            problems.append(
                Problem(line, "invalid_content", f"`{key}` must be a string, found {json_type_name(record[key])}", key)
            )
    return problems


# --- prompt / completion ----------------------------------------------------------------------------------


def check_prompt_completion(record: dict, line: int) -> list[Problem]:
    problems = _unknown_keys(record, PROMPT_COMPLETION_KEYS, line, "example_unrecognized_key")
    for key in ("prompt", "completion"):
        if key not in record:
            other = "prompt" if key == "completion" else "completion"
            problems.append(Problem(line, f"missing_{key}", f"{other} without {key}: every example needs both", key))
        elif not isinstance(record[key], str):
            problems.append(
                Problem(line, "invalid_content", f"`{key}` must be a string, found {json_type_name(record[key])}", key)
            )
    if not problems and not record["completion"]:
        problems.append(Problem(line, "missing_completion", "`completion` is empty: nothing to learn", "completion"))
    return problems


# --- Alpaca and ShareGPT (converted to chat by the bot) ---------------------------------------------------


def check_alpaca(record: dict, line: int) -> list[Problem]:
    problems = _unknown_keys(record, ALPACA_KEYS, line, "example_unrecognized_key")
    return problems + _check_text_fields(record, line, ("instruction", "output"), optional=("input",))


def check_sharegpt(record: dict, line: int) -> list[Problem]:
    problems = _unknown_keys(record, SHAREGPT_KEYS, line, "example_unrecognized_key")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        found = "it missing" if turns is None else json_type_name(turns) if not isinstance(turns, list) else "an empty array"
        return problems + [
            Problem(
                line,
                "missing_messages_list",
                f'`conversations` must be a non-empty array of {{"from", "value"}} turns, found {found}',
                "conversations",
            )
        ]
    for index, turn in enumerate(turns):
        at, path = f"turn {index + 1}", f"conversations[{index}]"
        if not isinstance(turn, dict):
            problems.append(Problem(line, "data_type", f"{at} must be an object, found {json_type_name(turn)}", path))
        elif turn.get("from") not in SHAREGPT_ROLES:
            expected = ", ".join(SHAREGPT_ROLES)
            found = "no `from`" if "from" not in turn else f"unknown `from` {turn['from']!r}"
            problems.append(Problem(line, "unrecognized_role", f"{at} has {found} (expected one of {expected})", f"{path}.from"))
        elif not isinstance(turn.get("value"), str):
            found = "no `value`" if "value" not in turn else f"a `value` that is {json_type_name(turn['value'])}"
            problems.append(Problem(line, "missing_content", f"{at} ({turn['from']}) has {found}, not text", f"{path}.value"))
    return problems


# --- preference pairs -------------------------------------------------------------------------------------


def check_preference(record: dict, line: int) -> list[Problem]:
    problems = _unknown_keys(record, PREFERENCE_KEYS, line, "example_unrecognized_key")
    source = record.get("input")
    if not isinstance(source, dict):
        problems.append(Problem(line, "missing_input", "`input` must be an object with `messages`", "input"))
    else:
        problems += _unknown_keys(source, CHAT_KEYS, line, "example_unrecognized_key", at="`input`", path="input")
        problems += _check_messages(
            source.get("messages"), line, require_assistant=False, where="input ", path="input.messages"
        )
        problems += _check_tools(source, line, path="input.")
    for key in ("preferred_output", "non_preferred_output"):
        output = record.get(key)
        valid = (
            isinstance(output, list)
            and len(output) == 1
            and isinstance(output[0], dict)
            and output[0].get("role") == "assistant"
            and content_text(output[0].get("content")) is not None
        )
        if not valid:
            problems.append(
                Problem(
                    line,
                    f"invalid_{key}",
                    f'`{key}` must be an array with exactly one assistant message [{{"role": "assistant", '
                    '"content": "..."}]',
                    key,
                )
            )
    return problems


CHECKS: dict[str, Callable[[dict, int], list[Problem]]] = {
    CHAT: check_chat,
    PROMPT_COMPLETION: check_prompt_completion,
    PREFERENCE: check_preference,
    ALPACA: check_alpaca,
    SHAREGPT: check_sharegpt,
}
