"""Render examples into token ids and a loss mask with the base model's own chat template.

Training and serving share this module, so what a model is trained on is token for token what it is
prompted with. The rendered text is cut at the boundaries of the turns that carry loss, and each piece is
tokenised on its own: a prompt at serving time is exactly the pieces before the reply, with the same ids.

- chat: loss on every assistant turn (content, tool calls and its end-of-turn token) unless `weight: 0`;
  `developer` is rendered as `system`; text parts are joined; tool definitions and tool calls are written
  as text (Hermes style) when the template has no tool support of its own.
- prompt/completion: the prompt as it is (no chat template), then the completion and the end-of-text token,
  which carry the loss.
- preference pairs: the input conversation plus the preferred answer (DPO renders both answers later).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .validate import CHAT, PREFERENCE, PROMPT_COMPLETION, content_text


class RenderError(ValueError):
    """The model's template cannot render this example consistently."""


@dataclass
class Rendered:
    input_ids: list[int] = field(default_factory=list)
    loss_mask: list[bool] = field(default_factory=list)
    """True where the token is a training target."""
    pieces: list[tuple[str, bool]] = field(default_factory=list)
    """The text in the pieces it was tokenised in, each flagged as loss or context (for previews)."""
    truncated: bool = False

    @property
    def loss_tokens(self) -> int:
        return sum(self.loss_mask)

    def append(self, tokenizer, text: str, loss: bool) -> None:
        if not text:
            return
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        self.input_ids.extend(ids)
        self.loss_mask.extend([loss] * len(ids))
        self.pieces.append((text, loss))

    def truncate(self, max_tokens: int) -> Rendered:
        """Drop tokens from the end (as OpenAI does for over-long examples)."""
        if len(self.input_ids) <= max_tokens:
            return self
        return Rendered(self.input_ids[:max_tokens], self.loss_mask[:max_tokens], self.pieces, truncated=True)


def render_example(record: dict, example_format: str, tokenizer) -> Rendered:
    """Token ids and loss mask for one validated example."""
    if example_format == PROMPT_COMPLETION:
        return render_prompt_completion(record["prompt"], record["completion"], tokenizer)
    if example_format == CHAT:
        return render_chat(record["messages"], tokenizer, tools=record.get("tools") or record.get("functions"))
    if example_format == PREFERENCE:
        messages = record["input"]["messages"] + record["preferred_output"]
        return render_chat(messages, tokenizer, tools=record["input"].get("tools"), train_only_last=True)
    raise RenderError(f"unknown format {example_format!r}")


def render_prompt_completion(prompt: str, completion: str | None, tokenizer) -> Rendered:
    """The raw prompt, then (when training) the completion plus end-of-text; `completion=None` renders a prompt."""
    rendered = Rendered()
    rendered.append(tokenizer, prompt, loss=False)
    if completion is not None:
        rendered.append(tokenizer, completion + (tokenizer.eos_token or ""), loss=True)
    return rendered


def render_chat(
    messages: list[dict],
    tokenizer,
    *,
    tools: list | None = None,
    add_generation_prompt: bool = False,
    train_only_last: bool = False,
) -> Rendered:
    """Render a conversation; with `add_generation_prompt` it is a serving prompt ending where the reply starts."""
    template_has_tools = _template_supports_tools(tokenizer)
    turns = normalize_messages(messages, tools, template_has_tools=template_has_tools)
    template_tools = tools if template_has_tools else None
    full_text = _apply_template(tokenizer, turns, template_tools, add_generation_prompt)
    offset = len(turns) - len(messages)  # a system turn listing the tools may have been put first
    spans = []
    last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    for index, message in enumerate(messages):
        if message.get("role") != "assistant" or message.get("weight", 1) == 0:
            continue
        if train_only_last and index != last_assistant:
            continue
        turn = index + offset
        end_text = _apply_template(tokenizer, turns[: turn + 1], template_tools, False)
        if turn > 0:
            start_text = _apply_template(tokenizer, turns[:turn], template_tools, True)
        else:  # a conversation that opens with the assistant: the reply is the last occurrence of its text
            start_text = end_text[: end_text.rfind(turns[0]["content"])]
        if not (full_text.startswith(start_text) and full_text.startswith(end_text)):
            raise RenderError(
                "the model's chat template does not render a conversation's turns as prefixes of the whole, "
                "so assistant turns cannot be located for the loss mask"
            )
        spans.append((len(start_text), _end_of_turn(end_text, len(start_text), tokenizer.eos_token)))
    rendered = Rendered()
    cursor = 0
    for start, end in spans:
        rendered.append(tokenizer, full_text[cursor:start], loss=False)
        rendered.append(tokenizer, full_text[start:end], loss=True)
        cursor = end
    rendered.append(tokenizer, full_text[cursor:], loss=False)
    return rendered


def _end_of_turn(text: str, start: int, eos: str | None) -> int:
    """Loss covers the reply up to and including its end-of-turn token, not the whitespace after it."""
    if eos:
        found = text.find(eos, start)
        if found != -1:
            return found + len(eos)
    return len(text)


def _apply_template(tokenizer, turns: list[dict], tools: list | None, add_generation_prompt: bool) -> str:
    if not turns:
        return ""
    kwargs = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(
        turns, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )


def _template_supports_tools(tokenizer) -> bool:
    template = tokenizer.chat_template or ""
    return isinstance(template, str) and "tools" in template


def normalize_messages(messages: list[dict], tools: list | None, *, template_has_tools: bool) -> list[dict]:
    """Messages as any chat template can render them: string content, plain roles, tool calls as text."""
    turns = []
    for message in messages:
        role = message["role"]
        text = content_text(message.get("content")) or ""
        if role == "developer":
            role = "system"
        if role == "function":
            role = "tool"
        calls = message.get("tool_calls") or ([{"function": message["function_call"]}] if message.get("function_call") else [])
        if calls and not template_has_tools:
            text += "".join(_tool_call_text(call["function"]) for call in calls)
        turn = {"role": role, "content": text}
        if calls and template_has_tools:
            turn["tool_calls"] = calls
        turns.append(turn)
    if tools and not template_has_tools:
        listing = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
        preamble = f"You can call these tools:\n<tools>\n{listing}\n</tools>"
        if turns and turns[0]["role"] == "system":
            turns[0] = {**turns[0], "content": f"{turns[0]['content']}\n\n{preamble}".lstrip()}
        else:
            turns.insert(0, {"role": "system", "content": preamble})
    return turns


def _tool_call_text(function: dict) -> str:
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError:
        arguments = function.get("arguments")
    call = {"name": function.get("name"), "arguments": arguments}
    return f"<tool_call>\n{json.dumps(call, ensure_ascii=False)}\n</tool_call>"
