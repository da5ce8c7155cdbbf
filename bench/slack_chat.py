"""Talking to a model in Slack as a user feels it: the real bot process against the local Slack, with the
embedded backend, against the same backend asked directly with the `openai` SDK in the same run.

    .venv/bin/python bench/slack_chat.py

- first visible text: seconds from a mention to the first text of the answer in its thread (goal < 500 ms);
- the whole answer: its tokens over the seconds from the mention to the answer complete in Slack, against
  the backend's own tokens per second streamed directly (request to last token), on the same prompts, both
  counted with the model's tokenizer on the text shown (goal: at least 80 %).

Answers are capped at MAX_TOKENS on both sides; one mention first warms the bot's path (reported alone).
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localslack import LocalSlack  # noqa: E402
from tests.bot.conftest import MODEL_CACHE, BotProcess  # noqa: E402

CHANNEL = "fine-tuning"
PROMPTS = [
    "Explain in a few sentences why the sky is blue.",
    "Give three tips for writing clear emails.",
    "Describe how a bicycle works.",
    "What should I pack for a weekend of hiking?",
    "Summarise the water cycle for a child.",
]
SYSTEM = "Answer in a short paragraph."
MAX_TOKENS = 300


def direct(client, prompt: str) -> tuple[float, str]:
    """(seconds from the request to the last token, the answer) streaming from the backend itself."""
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        max_tokens=MAX_TOKENS, stream=True,
    )
    text = "".join(c.delta.content or "" for chunk in stream for c in chunk.choices if c.delta)
    return time.perf_counter() - started, text


def mention(slack, changes: list[dict], prompt: str) -> tuple[float, float, str]:
    """(seconds to the first text in the thread, seconds to the answer complete, the answer as Slack shows it)."""
    mentioned_at = time.time()
    ts = slack.post_message(CHANNEL, "alice", f"<@{slack.bot_user_id}> {prompt}")
    posted = slack.wait_for(lambda: [c for c in changes if c["kind"] == "message_posted" and c.get("thread_ts") == ts], 60)
    done = slack.wait_for(lambda: [c for c in changes if c["kind"] == "message_changed" and c.get("ts") == posted[0]["ts"]], 300)
    return posted[0]["at"] - mentioned_at, done[-1]["at"] - mentioned_at, slack.message(CHANNEL, posted[0]["ts"])["text"]


def main() -> None:
    from openai import OpenAI
    from transformers import AutoTokenizer

    from bot.mrkdwn import unescape

    slack = LocalSlack(manifest=ROOT / "manifest.yml").start()
    changes: list[dict] = []
    slack.subscribe(changes.append)
    bot = BotProcess(slack, Path(tempfile.mkdtemp()) / "data", extra_env={"TUNEHOUSE_CHAT_MAX_TOKENS": str(MAX_TOKENS)}).start()
    try:
        client = OpenAI(base_url=re.search(r"embedded tunehouse at (\S+)", bot.log()).group(1), api_key="sk-local")
        tokenizer = AutoTokenizer.from_pretrained(str(MODEL_CACHE / "smollm2-135m-instruct"))
        slack.slash_command(CHANNEL, "alice", "/finetune", f"use gpt-4o-mini {SYSTEM}").ack()
        slack.wait_for_message(CHANNEL, predicate=lambda m: "set this channel's model" in m.get("text", ""), timeout=30)
        direct(client, "Warm up.")
        cold_first, _, _ = mention(slack, changes, "Hello!")

        backend_rates, slack_rates, firsts = [], [], []
        for prompt in PROMPTS:
            seconds, text = direct(client, prompt)
            backend_rates.append(len(tokenizer(text)["input_ids"]) / seconds)
            first, complete, shown = mention(slack, changes, prompt)
            firsts.append(first)
            slack_rates.append(len(tokenizer(unescape(shown))["input_ids"]) / complete)

        print(f"first visible text after the first mention since the bot started: {cold_first * 1000:.0f} ms")
        print(f"first visible text after a mention: median {statistics.median(firsts) * 1000:.0f} ms, "
              f"max {max(firsts) * 1000:.0f} ms over the next {len(firsts)} mentions (goal < 500 ms)")
        backend, seen = statistics.median(backend_rates), statistics.median(slack_rates)
        print(f"whole answer: {seen:.1f} tokens/s in Slack (mention to answer complete) against {backend:.1f} tokens/s "
              f"from the backend directly (request to last token): {seen / backend:.0%} (goal >= 80%)")
        calls: dict[str, int] = {}
        for _, method in slack.api_calls:
            calls[method] = calls.get(method, 0) + 1
        print("Web API calls: " + ", ".join(f"{m} {n}" for m, n in sorted(calls.items()) if m.startswith(("chat.", "assistant."))))
    finally:
        bot.stop()
        slack.stop()


if __name__ == "__main__":
    main()
