"""Serving speed: tunehouse's engine through its HTTP API vs plain `transformers.generate`, same machine.

    .venv/bin/python bench/serving.py [--precision auto|bf16|int4|fp32]

Measures one stream (tokens/s and time to first token), then 32 concurrent clients asking for 64 new tokens
each (total tokens/s), and the same 32 requests one after another, then one stream of structured output
(a JSON schema; each token is checked against it), then one stream of greedy answers that repeat much of
their prompt (a rewrite), which guess tokens ahead (docs/serving.md). Tokens are counted from `usage`.

Every request's message begins with its own number, so what two requests share is the model's default
system prompt and the start of the user turn, as in a chat application: the engine runs a shared prefix
once (docs/serving.md). Time to first token is measured both for prompts that share only their first few
tokens (each with its own system message: "You are assistant number N.") and for prompts that share the
default system prompt.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import tempfile
import time
from pathlib import Path

import torch
from server import running_server


PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
STRUCTURED_PROMPT = [{"role": "user", "content": "Write a short story about a dragon who learns to cook, as JSON."}]
REWRITE_PROMPT = [{"role": "user", "content": "Rewrite in the past tense: The dragon cooks soup and sings. The knight "
                                          "eats the soup and laughs. They walk home together under the stars."}]
STORY = {"type": "object", "additionalProperties": False, "required": ["title", "hero", "happy_ending", "story"],
         "properties": {"title": {"type": "string"}, "hero": {"enum": ["dragon", "cook", "knight"]},
                        "happy_ending": {"type": "boolean"}, "story": {"type": "string"}}}


def numbered(messages: list[dict], number: int) -> list[dict]:
    """The messages with the last one's text preceded by `number`, so that no two requests are the same."""
    return [*messages[:-1], {**messages[-1], "content": f"Request {number}: {messages[-1]['content']}"}]


def time_to_first_token(client, messages: list[dict]) -> float:
    """Seconds from sending a short streamed request to its first piece of text."""
    started = time.perf_counter()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=8, stream=True)
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    return first


def baseline(tokens: int) -> tuple[float, float]:
    """transformers.generate on the same model: one stream, and a left-padded batch of 32 (tokens/s)."""
    from transformers import AutoModelForCausalLM

    from tunehouse.data.render import render_chat
    from tunehouse.models.catalog import ensure_default_model, load_tokenizer
    from tunehouse.settings import Settings

    model_dir = ensure_default_model(Settings().resolved_model_cache_dir)
    tokenizer = load_tokenizer(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.tensor([render_chat(PROMPT, tokenizer, add_generation_prompt=True).input_ids])
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, do_sample=False)
        started = time.perf_counter()
        model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        single = tokens / (time.perf_counter() - started)
        batch = ids.repeat(32, 1)
        started = time.perf_counter()
        model.generate(batch, attention_mask=torch.ones_like(batch), max_new_tokens=tokens, min_new_tokens=tokens,
                       do_sample=False)
        batched = 32 * tokens / (time.perf_counter() - started)
    return single, batched


def resolved_precision(precision: str) -> str:
    """What the server made of `precision` for the default model (`auto` depends on its weights and the CPU)."""
    from tunehouse.models.catalog import ensure_default_model
    from tunehouse.serve.llama import LlamaDecoder
    from tunehouse.settings import Settings

    model_dir = ensure_default_model(Settings().resolved_model_cache_dir)
    resolved = LlamaDecoder(model_dir, slots=1, max_len=16, precision=precision).precision
    return resolved if precision == resolved else f"{precision}: {resolved}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "int4", "fp32"])
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    from openai import OpenAI

    hf_single, hf_batch = baseline(args.tokens)
    print(f"transformers.generate (fp32): one stream {hf_single:.1f} tokens/s, batch of 32 {hf_batch:.0f} tokens/s")
    with tempfile.TemporaryDirectory() as data_dir, \
            running_server(Path(data_dir), worker=False, TUNEHOUSE_SERVE_PRECISION=args.precision) as base_url:
        client = OpenAI(base_url=base_url, api_key="bench", max_retries=0)
        ask = lambda number: client.chat.completions.create(  # noqa: E731
            model="gpt-4o-mini", messages=numbered(PROMPT, number), max_tokens=args.tokens, temperature=0.8, seed=1)
        ask(0)  # load the model
        hello = [{"role": "user", "content": "Hi!"}]
        first_alone = statistics.median(time_to_first_token(client, [
            {"role": "system", "content": f"You are assistant number {n}."}, *hello]) for n in range(5))
        first = statistics.median(time_to_first_token(client, numbered(hello, n)) for n in range(5))
        started = time.perf_counter()
        answer = ask(1)
        single = answer.usage.completion_tokens / (time.perf_counter() - started)
        started = time.perf_counter()
        sequential = sum(ask(number).usage.completion_tokens for number in range(2, 10))
        sequential_rate = sequential / (time.perf_counter() - started)
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(ask, range(10, 42)))
        concurrent_rate = sum(a.usage.completion_tokens for a in answers) / (time.perf_counter() - started)
        started = time.perf_counter()
        structured = sum(client.chat.completions.create(
            model="gpt-4o-mini", messages=numbered(STRUCTURED_PROMPT, seed), max_tokens=args.tokens, temperature=0.8, seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": "story", "schema": STORY}},
        ).usage.completion_tokens for seed in range(4))
        structured_rate = structured / (time.perf_counter() - started)
        started = time.perf_counter()
        rewrites = [client.chat.completions.create(model="gpt-4o-mini", messages=numbered(REWRITE_PROMPT, number),
                                                   max_tokens=args.tokens, temperature=0).usage for number in range(4)]
        rewrite_rate = sum(usage.completion_tokens for usage in rewrites) / (time.perf_counter() - started)
        guessed = sum(usage.completion_tokens_details.accepted_prediction_tokens for usage in rewrites) / sum(
            usage.completion_tokens for usage in rewrites)
    mode = resolved_precision(args.precision)
    print(f"tunehouse ({mode}): time to first token {first_alone * 1000:.0f} ms for a prompt that shares its first few tokens, "
          f"{first * 1000:.0f} ms for one that shares the default system prompt (medians of 5), one stream {single:.1f} "
          f"tokens/s ({single / hf_single:.2f}x transformers' single stream), one after another "
          f"{sequential_rate:.1f} tokens/s, 32 concurrent clients {concurrent_rate:.0f} tokens/s in total "
          f"({concurrent_rate / hf_batch:.2f}x the padded transformers batch); structured output (JSON schema), "
          f"one stream {structured_rate:.1f} tokens/s; a greedy rewrite of the prompt, one stream {rewrite_rate:.1f} "
          f"tokens/s, {guessed:.0%} of its tokens guessed ahead")


if __name__ == "__main__":
    main()
