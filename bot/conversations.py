"""A question asked in Slack (a mention, a reply in the bot's thread, a DM) answered in its thread: the
steps between the listener and the plain pieces of bot/chat.py and bot/streaming.py.

A thread keeps the model (and system message) it started with, so a conversation is not switched to
another model half way because the channel's model changed.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient

from tunehouse.faults import hold_point

from .chat import (
    AnswerStats,
    ChatFailed,
    Turn,
    build_messages,
    channel_model,
    clean_prompt,
    context_window,
    stream_answer,
    within_rate_limit,
)
from .streaming import StreamTarget, post_text, show_thinking, write_answer

log = logging.getLogger(__name__)


def no_model_text(base_model: str) -> str:
    """Markdown, as every notice posted with streaming.post_text."""
    return (
        ":information_source: There is no model to talk to here yet. Share a dataset in this channel and "
        "fine-tune it (the **Fine-tune** button under my report), or choose one with `/finetune use MODEL` "
        f"(for instance `/finetune use {base_model}`, the base model)."
    )


def rate_limited_text(per_minute: int, wait: float) -> str:
    return f":hourglass: You have asked {per_minute} questions in the last minute; ask again in {wait:.0f} s."


def is_bot_conversation(storage, channel: str, thread_ts: str) -> bool:
    """Whether the bot holds a conversation that this thread is: one that began at the thread's root, so
    replies there need no mention (a mention in someone else's thread answers that mention only)."""
    turns = storage.conversation(channel, thread_ts)
    return any(turn["role"] == "user" and turn["ts"] == thread_ts for turn in turns)


def answer_in_thread(
    services, client: WebClient, *, channel: str, thread_ts: str, ts: str, user: str, team: str, text: str,
    bot_user_id: str | None, is_dm: bool,
) -> None:
    """Answer what `user` wrote (message `ts`) in the thread `thread_ts`, streamed, and record both turns."""
    storage, settings = services.storage, services.settings
    target = StreamTarget(client=client, channel=channel, thread_ts=thread_ts, user=user, team=team)
    prompt = clean_prompt(text, bot_user_id)
    if not prompt:
        post_text(target, "Ask me anything: I answer with this channel's model. `/finetune help` lists the rest.")
        return
    wait = within_rate_limit(storage, user, settings.chat_per_minute)
    if wait is not None:
        post_text(target, rate_limited_text(settings.chat_per_minute, wait))
        return
    turns = storage.conversation(channel, thread_ts)
    model = storage.conversation_model(channel, thread_ts)
    system_message = next((t["content"] for t in turns if t["role"] == "system"), None)
    if model is None:
        chosen = channel_model(storage, channel, user, is_dm=is_dm)
        if chosen is None:
            post_text(target, no_model_text(settings.base_model))
            return
        model, system_message = chosen.model, chosen.system_message
    stream_and_record(services, target, model=model, system_message=system_message, turns=turns, prompt=prompt, ts=ts)


def stream_and_record(
    services, target: StreamTarget, *, model: str, system_message: str | None, turns: list[dict], prompt: str, ts: str,
) -> None:
    """Stream `model`'s answer to `prompt` (after the thread's earlier `turns`) into the target's thread, then
    record the question and the answer there; a failure is said in the thread and nothing is recorded."""
    storage = services.storage
    history = [Turn(t["role"], t["content"]) for t in turns if t["role"] != "system"]
    max_tokens = services.settings.chat_max_tokens
    messages = build_messages(
        system_message, history, prompt, context_tokens=context_window(model, services.backend.kind),
        answer_tokens=max_tokens,
    )
    show_thinking(target, ts)
    said: list[str] = []

    def deltas():
        for delta in stream_answer(services.backend.client, model, messages, AnswerStats(), max_tokens=max_tokens):
            said.append(delta)
            yield delta
            if len(said) == 5:
                hold_point("bot.answering")

    try:
        write_answer(target, deltas())
    except ChatFailed as failure:
        post_text(target, f":warning: {failure}")
        return
    channel, thread_ts = target.channel, target.thread_ts
    if not turns and system_message:
        storage.add_turn(channel=channel, thread_ts=thread_ts, role="system", content=system_message, model=model)
    storage.add_turn(channel=channel, thread_ts=thread_ts, role="user", content=prompt, ts=ts, model=model, user=target.user)
    storage.add_turn(channel=channel, thread_ts=thread_ts, role="assistant", content="".join(said), model=model)
