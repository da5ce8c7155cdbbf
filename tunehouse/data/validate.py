"""Deep dataset validation: which format a file is in, and every problem in it, by line.

Three formats, one per file:
- chat: `{"messages": [...], "tools"?: [...]}` (OpenAI's supervised format);
- prompt_completion: `{"prompt": str, "completion": str}` (OpenAI's legacy format, used by its tutorial);
- preference: `{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}` (DPO).

Problem codes follow OpenAI's data-preparation cookbook where it has one (`data_type`, `missing_messages_list`,
`message_missing_key`, `message_unrecognized_key`, `unrecognized_role`, `missing_content`,
`example_missing_assistant_message`); the others are tunehouse's, named the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .jsonl import (
    EMPTY_FILE,
    MAX_REPORTED_PROBLEMS,
    Problem,
    iter_json_lines,
    json_type_name,
    not_an_object,
    summarize_problems,
)

CHAT = "chat"
PROMPT_COMPLETION = "prompt_completion"
PREFERENCE = "preference"
FORMAT_LABELS = {CHAT: "chat messages", PROMPT_COMPLETION: "prompt/completion", PREFERENCE: "preference pairs"}

ROLES = ("system", "developer", "user", "assistant", "tool")
LEGACY_ROLES = ("function",)
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"}
CHAT_KEYS = {"messages", "tools", "functions", "parallel_tool_calls"}
PROMPT_COMPLETION_KEYS = {"prompt", "completion"}
PREFERENCE_KEYS = {"input", "preferred_output", "non_preferred_output"}
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
    format_line: int | None = None
    for item in iter_json_lines(path):
        if isinstance(item, Problem):
            report.add(item)
            continue
        if not isinstance(item.value, dict):
            report.add(not_an_object(item))
            continue
        line, record = item.line, item.value
        example_format = detect_format(record)
        if example_format is None:
            keys = ", ".join(sorted(record)) or "none"
            report.add(
                Problem(
                    line,
                    "unknown_format",
                    'expected chat messages {"messages": [...]}, a {"prompt", "completion"} pair or a '
                    f'preference pair {{"input", "preferred_output", "non_preferred_output"}}; found keys: {keys}',
                )
            )
            continue
        if report.format is None:
            report.format, format_line = example_format, line
        elif example_format != report.format:
            report.add(
                Problem(
                    line,
                    "mixed_formats",
                    f"this line is {FORMAT_LABELS[example_format]} but the file is {FORMAT_LABELS[report.format]} "
                    f"(from line {format_line}); use one format per file",
                )
            )
            continue
        problems = CHECKS[example_format](record, line)
        for problem in problems:
            report.add(problem)
        if not problems:
            report.examples.append(Example(line, example_format, record))
    if not report.examples and report.problem_count == 0:
        report.add(EMPTY_FILE)
    if report.ok and len(report.examples) < RECOMMENDED_MIN_EXAMPLES:
        report.warnings.append(
            f"only {len(report.examples)} example(s): OpenAI requires at least {RECOMMENDED_MIN_EXAMPLES} and "
            "recommends 50 to 100. tunehouse trains anyway; expect the model to learn little from so few."
        )
    return report


def detect_format(record: dict) -> str | None:
    if "messages" in record:
        return CHAT
    if "prompt" in record or "completion" in record:
        return PROMPT_COMPLETION
    if PREFERENCE_KEYS & record.keys():
        return PREFERENCE
    return None


# --- chat -------------------------------------------------------------------------------------------------


def check_chat(record: dict, line: int) -> list[Problem]:
    problems = _unknown_keys(record, CHAT_KEYS, line, "example_unrecognized_key")
    problems += _check_messages(record.get("messages"), line, require_assistant=True)
    problems += _check_tools(record, line)
    return problems


def _check_messages(messages: object, line: int, *, require_assistant: bool, where: str = "") -> list[Problem]:
    if not isinstance(messages, list) or not messages:
        if messages is None:
            found = "it missing"
        elif isinstance(messages, list):
            found = "an empty array"
        else:
            found = json_type_name(messages)
        return [Problem(line, "missing_messages_list", f"{where}`messages` must be a non-empty array of messages, found {found}")]
    problems: list[Problem] = []
    learnable = 0
    for index, message in enumerate(messages, start=1):
        at = f"{where}message {index}"
        if not isinstance(message, dict):
            problems.append(Problem(line, "data_type", f"{at} must be an object, found {json_type_name(message)}"))
            continue
        found = _check_message(message, line, at)
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
            )
        )
    return problems


def _check_message(message: dict, line: int, at: str) -> list[Problem]:
    role = message.get("role")
    if "role" not in message:
        return [Problem(line, "message_missing_key", f"{at} has no `role` (expected one of {', '.join(ROLES)})")]
    if role not in ROLES + LEGACY_ROLES:
        return [
            Problem(line, "unrecognized_role", f"{at} has unknown role {role!r} (expected one of {', '.join(ROLES)})")
        ]
    problems = _unknown_keys(message, MESSAGE_KEYS, line, "message_unrecognized_key", at=at)
    calls_tool = bool(message.get("tool_calls") or message.get("function_call"))
    if "weight" in message:
        weight = message["weight"]
        if role != "assistant":
            problems.append(Problem(line, "invalid_weight", f"{at}: `weight` is only allowed on assistant messages"))
        elif weight not in (0, 1) or isinstance(weight, bool):
            problems.append(Problem(line, "invalid_weight", f"{at}: `weight` must be 0 or 1, found {weight!r}"))
    if "tool_calls" in message:
        problems += _check_tool_calls(message["tool_calls"], line, at, role)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        problems.append(Problem(line, "message_missing_key", f"{at}: a tool message needs a string `tool_call_id`"))
    content = message.get("content")
    if content is None:
        if not (role == "assistant" and calls_tool):
            problems.append(Problem(line, "missing_content", f"{at} ({role}) has no `content`"))
        return problems
    text = content_text(content)
    if text is None:
        problems.append(
            Problem(
                line,
                "invalid_content",
                f"{at} ({role}): `content` must be a string or an array of text parts "
                f'({{"type": "text", "text": "..."}}), found {_describe_content(content)}',
            )
        )
    elif not text and not calls_tool and role != "system":
        problems.append(Problem(line, "missing_content", f"{at} ({role}) has empty `content`"))
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


def _check_tool_calls(tool_calls: object, line: int, at: str, role: str) -> list[Problem]:
    if role != "assistant":
        return [Problem(line, "invalid_tool_calls", f"{at}: only assistant messages can have `tool_calls`")]
    if not isinstance(tool_calls, list) or not tool_calls:
        return [Problem(line, "invalid_tool_calls", f"{at}: `tool_calls` must be a non-empty array")]
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
                )
            ]
    return []


def _check_tools(record: dict, line: int) -> list[Problem]:
    for key in ("tools", "functions"):
        if key not in record:
            continue
        tools = record[key]
        if not isinstance(tools, list):
            return [Problem(line, "invalid_tools", f"`{key}` must be an array, found {json_type_name(tools)}")]
        for number, tool in enumerate(tools, start=1):
            spec = tool.get("function") if key == "tools" and isinstance(tool, dict) else tool
            if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)):
                return [Problem(line, "invalid_tools", f"`{key}` entry {number} needs a function with a string `name`")]
    return []


def _unknown_keys(obj: dict, allowed: set[str], line: int, code: str, at: str = "") -> list[Problem]:
    unknown = sorted(set(obj) - allowed)
    if not unknown:
        return []
    where = f"{at} has" if at else "the example has"
    return [
        Problem(
            line,
            code,
            f"{where} unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(allowed))})",
        )
    ]


# --- prompt / completion ----------------------------------------------------------------------------------


def check_prompt_completion(record: dict, line: int) -> list[Problem]:
    problems = _unknown_keys(record, PROMPT_COMPLETION_KEYS, line, "example_unrecognized_key")
    for key in ("prompt", "completion"):
        if key not in record:
            other = "prompt" if key == "completion" else "completion"
            problems.append(Problem(line, f"missing_{key}", f"{other} without {key}: every example needs both"))
        elif not isinstance(record[key], str):
            problems.append(
                Problem(line, "invalid_content", f"`{key}` must be a string, found {json_type_name(record[key])}")
            )
    if not problems and not record["completion"]:
        problems.append(Problem(line, "missing_completion", "`completion` is empty: nothing to learn"))
    return problems


# --- preference pairs -------------------------------------------------------------------------------------


def check_preference(record: dict, line: int) -> list[Problem]:
    problems = _unknown_keys(record, PREFERENCE_KEYS, line, "example_unrecognized_key")
    source = record.get("input")
    if not isinstance(source, dict):
        problems.append(Problem(line, "missing_input", "`input` must be an object with `messages`"))
    else:
        problems += _unknown_keys(source, CHAT_KEYS, line, "example_unrecognized_key", at="`input`")
        problems += _check_messages(source.get("messages"), line, require_assistant=False, where="input ")
        problems += _check_tools(source, line)
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
                )
            )
    return problems


CHECKS = {CHAT: check_chat, PROMPT_COMPLETION: check_prompt_completion, PREFERENCE: check_preference}
