"""Rendering with the real default tokenizer: the loss mask covers exactly what should be learned, and a
serving prompt is token for token the prefix training saw."""

from __future__ import annotations

from tunehouse.data.render import render_chat, render_example, render_prompt_completion
from tunehouse.data.validate import CHAT, PROMPT_COMPLETION


def learned_text(tokenizer, rendered) -> str:
    return tokenizer.decode([t for t, m in zip(rendered.input_ids, rendered.loss_mask) if m])


def test_loss_only_on_assistant_turns_and_weight_zero_is_skipped(tokenizer):
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there", "weight": 0},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "ciao"},
    ]
    rendered = render_example({"messages": messages}, CHAT, tokenizer)
    assert learned_text(tokenizer, rendered) == "ciao<|im_end|>"
    assert len(rendered.input_ids) == len(rendered.loss_mask)
    messages[2].pop("weight")
    both = render_example({"messages": messages}, CHAT, tokenizer)
    assert learned_text(tokenizer, both) == "hello there<|im_end|>ciao<|im_end|>"
    assert both.input_ids == rendered.input_ids  # the weight changes the mask, never the tokens


def test_chat_ids_equal_the_tokenizers_own_template_ids(tokenizer):
    messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
    rendered = render_chat(messages, tokenizer)
    reference = tokenizer.apply_chat_template(messages, tokenize=True)
    reference = reference["input_ids"] if isinstance(reference, dict) or hasattr(reference, "keys") else reference
    assert rendered.input_ids == list(reference)


def test_serving_prompt_is_the_training_prefix_token_for_token(tokenizer):
    history = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "\nBlue"},
        {"role": "user", "content": "Another?"},
    ]
    reply = {"role": "assistant", "content": "Red, of course."}
    trained = render_chat(history + [reply], tokenizer)
    prompt = render_chat(history, tokenizer, add_generation_prompt=True)
    first_target = trained.loss_mask.index(True, len(prompt.input_ids) - 1)
    assert trained.input_ids[: len(prompt.input_ids)] == prompt.input_ids
    assert first_target == len(prompt.input_ids)


def test_prompt_completion_uses_no_template_and_learns_completion_plus_end(tokenizer):
    rendered = render_example({"prompt": "2+2=", "completion": " 4"}, PROMPT_COMPLETION, tokenizer)
    assert tokenizer.decode(rendered.input_ids) == "2+2= 4" + tokenizer.eos_token
    assert learned_text(tokenizer, rendered) == " 4" + tokenizer.eos_token
    prompt = render_prompt_completion("2+2=", None, tokenizer)
    assert rendered.input_ids[: len(prompt.input_ids)] == prompt.input_ids


def test_developer_role_content_parts_and_tool_calls_render_as_text(tokenizer):
    record = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": "weather in Oslo?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "rain"},
            {"role": "assistant", "content": "Rain."},
        ],
        "tools": [{"type": "function", "function": {"name": "weather"}}],
    }
    rendered = render_example(record, CHAT, tokenizer)
    text = tokenizer.decode(rendered.input_ids)
    assert "<|im_start|>system\nUse tools." in text and '"name": "weather"' in text
    learned = learned_text(tokenizer, rendered)
    assert '<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>' in learned
    assert learned.endswith("Rain.<|im_end|>") and "rain" not in learned


def test_truncation_drops_tokens_from_the_end(tokenizer):
    rendered = render_example({"prompt": "one two three four five", "completion": " six"}, PROMPT_COMPLETION, tokenizer)
    short = rendered.truncate(3)
    assert short.truncated and short.input_ids == rendered.input_ids[:3]
    assert rendered.truncate(1000) is rendered
