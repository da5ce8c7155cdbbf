"""Talking to a model, without Slack: which model a channel talks to, the context a question is sent with,
the answer as a stream of text from the `openai` SDK, and the per-user rate limit.

The context is the bot's own record of the thread (storage's `conversations`), not Slack's history:
`conversations.replies` is rate-limited (for some apps to one call a minute). It is trimmed to the model's
context window, newest turns kept, the system message always first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import openai

from tunehouse.data.costs import TOKENS_PER_MESSAGE, TokenCounter, base_model

from .backend import refusal_text
from .mrkdwn import unescape

ANSWER_MAX_TOKENS = 1024
"""Room kept for the answer when the context is trimmed, and the longest answer asked for, unless the
caller says otherwise (conversations use the `TUNEHOUSE_CHAT_MAX_TOKENS` setting)."""
EMBEDDED_CONTEXT_TOKENS = 8192
"""The embedded backend's default model (SmolLM2's `max_position_embeddings`)."""
REQUEST_TIMEOUT_S = 60.0
"""A backend that sends nothing for this long is reported as slow rather than waited on."""
RATE_WINDOW_S = 60.0


class ChatFailed(Exception):
    """An answer that could not be had; the message says why, for the person who asked."""


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True)
class ChannelModel:
    model: str
    system_message: str | None
    how: str
    """Why this model: `set with /finetune use by <@U…>`, `fine-tuned here`, ..."""


@dataclass
class AnswerStats:
    """What one answer cost: seconds to the first text and to the end, and tokens as the backend counted."""

    started_at: float = field(default_factory=time.perf_counter)
    first_text_s: float | None = None
    total_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def tokens_per_second(self) -> float | None:
        if not self.completion_tokens or not self.total_s or self.first_text_s is None:
            return None
        generating = self.total_s - self.first_text_s
        return self.completion_tokens / generating if generating > 0 else None


# -- which model ------------------------------------------------------------------------------------------


def channel_model(storage, channel: str, user: str | None = None, *, is_dm: bool = False) -> ChannelModel | None:
    """The channel's model: the latest one fine-tuned here or set with `/finetune use`, whichever came last;
    in a DM without either, the latest model the person fine-tuned anywhere. Its system message is the one
    `/finetune use` gave, else the one its training examples shared."""
    chosen = storage.channel_model(channel)
    trained = storage.latest_fine_tuned_model(channel=channel)
    if chosen and (trained is None or (chosen["set_at"] or 0) >= (trained["finished_at"] or trained["created_at"])):
        system_message = chosen["system_message"] or storage.model_system_message(chosen["model"])
        return ChannelModel(chosen["model"], system_message, f"set with `/finetune use` by <@{chosen['set_by']}>")
    if trained is None and is_dm and user:
        trained = storage.latest_fine_tuned_model(user=user)
    if trained is None:
        return None
    model = trained["fine_tuned_model"]
    return ChannelModel(model, storage.model_system_message(model), "fine-tuned here")


def usable_in(storage, model: str, channel: str, user: str) -> bool:
    """A model fine-tuned in one conversation answers there (it may repeat what was shared there) and in the
    direct messages of whoever started it; models the bot did not tune (base models) answer anywhere."""
    job = storage.job_of_model(model)
    return job is None or job["channel"] == channel or (channel.startswith("D") and job["user"] == user)


def elsewhere_model_text(model: str) -> str:
    return (f"`{model}` was fine-tuned in another conversation: it answers only there (and in direct messages with "
            "whoever started it), so that what was shared there stays there.")


def base_of(model: str, storage, default: str) -> str:
    """The base a tuned model was trained from (its job's, else the name's `ft:BASE:...`), for comparisons."""
    job = storage.job_of_model(model)
    if job and job.get("base_model"):
        return job["base_model"]
    if model.startswith("ft:"):
        return model.split(":")[1]
    return default


# -- the context ------------------------------------------------------------------------------------------


def clean_prompt(text: str, bot_user_id: str | None) -> str:
    """What the person wrote: the bot's own mention removed, Slack's escapes undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", "", text)
    return unescape(text).strip()


def context_window(model: str, backend_kind: str) -> int:
    """Tokens the model reads: the embedded backend's own model, else OpenAI's table (training context, the
    smaller of the two, so the trimmed context fits either way)."""
    if backend_kind == "embedded":
        return EMBEDDED_CONTEXT_TOKENS
    return base_model(model).context_tokens


def build_messages(
    system_message: str | None, history: list[Turn], prompt: str, *, context_tokens: int,
    answer_tokens: int = ANSWER_MAX_TOKENS, counter: TokenCounter | None = None,
) -> list[dict]:
    """System message first, then the newest earlier turns that fit beside the prompt and the answer's room.

    A turn that does not fit is dropped with every older one, so the model never sees a conversation with a
    hole in it; the prompt itself is always sent (the backend says when it alone is too long).
    """
    count = (counter or TokenCounter()).text
    head = [{"role": "system", "content": system_message}] if system_message else []
    tail = [{"role": "user", "content": prompt}]
    budget = context_tokens - answer_tokens - sum(TOKENS_PER_MESSAGE + count(m["content"]) for m in head + tail)
    kept: list[dict] = []
    for turn in reversed(history):
        cost = TOKENS_PER_MESSAGE + count(turn.content)
        if cost > budget:
            break
        budget -= cost
        kept.append({"role": turn.role, "content": turn.content})
    return head + kept[::-1] + tail


# -- the answer -------------------------------------------------------------------------------------------


def stream_answer(
    client: openai.OpenAI, model: str, messages: list[dict], stats: AnswerStats, *,
    max_tokens: int = ANSWER_MAX_TOKENS, temperature: float | None = None, timeout: float = REQUEST_TIMEOUT_S,
) -> Iterator[str]:
    """The answer's text as the backend streams it; `stats` is filled in as it goes.

    Raises:
        ChatFailed: an unknown model, the backend down or slow, or any refusal, said for a person.
    """
    extra = {} if temperature is None else {"temperature": temperature}
    try:
        stream = client.with_options(timeout=timeout, max_retries=1).chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, stream=True,
            stream_options={"include_usage": True}, **extra,
        )
        for chunk in stream:
            if chunk.usage:
                stats.prompt_tokens = chunk.usage.prompt_tokens
                stats.completion_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    if stats.first_text_s is None:
                        stats.first_text_s = time.perf_counter() - stats.started_at
                    yield choice.delta.content
    except openai.NotFoundError:
        raise ChatFailed(f"The backend knows no model `{model}`. `/finetune models` lists this channel's models.") from None
    except openai.APITimeoutError:
        raise ChatFailed(f"The backend did not answer within {timeout:.0f} s; it may be busy. Try again in a moment.") from None
    except openai.APIConnectionError:
        raise ChatFailed("The model's backend cannot be reached right now. Try again in a moment.") from None
    except openai.RateLimitError:
        raise ChatFailed("The backend is busy (rate limited). Try again in a moment.") from None
    except openai.APIStatusError as error:
        raise ChatFailed(f"The backend refused the question: {refusal_text(error)}") from None
    stats.total_s = time.perf_counter() - stats.started_at


def answer(client: openai.OpenAI, model: str, messages: list[dict], **options) -> tuple[str, AnswerStats]:
    """The whole answer at once (commands, comparisons, evaluation)."""
    stats = AnswerStats()
    text = "".join(stream_answer(client, model, messages, stats, **options))
    return text, stats


# -- the rate limit ---------------------------------------------------------------------------------------


def within_rate_limit(storage, user: str, per_minute: int, now: float | None = None) -> float | None:
    """Count one question for `user`; None when it may be answered, else the seconds until it may be."""
    now = time.time() if now is None else now
    recent = storage.chat_requests_since(user, now - RATE_WINDOW_S)
    if len(recent) >= per_minute:
        return max(1.0, recent[-per_minute] + RATE_WINDOW_S - now)
    storage.record_chat_request(user, now)
    return None


# -- base and tuned, side by side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One model's answer in a comparison: its text, or why there is none."""

    model: str
    text: str | None
    stats: AnswerStats
    error: str | None = None


COMPARE_MAX_TOKENS = 400
"""Each side's answer; both must fit side by side in one message."""


def compare(client: openai.OpenAI, models: list[tuple[str, str | None]], prompt: str) -> list[Side]:
    """The same prompt to each (model, system message), at the same time, each with its latency and tokens."""

    def one(model: str, system_message: str | None) -> Side:
        messages = build_messages(system_message, [], prompt, context_tokens=1 << 30)
        try:
            text, stats = answer(client, model, messages, max_tokens=COMPARE_MAX_TOKENS)
        except ChatFailed as failure:
            return Side(model, None, AnswerStats(), str(failure))
        return Side(model, text, stats)

    with ThreadPoolExecutor(max_workers=len(models)) as pool:
        return list(pool.map(lambda pair: one(*pair), models))
