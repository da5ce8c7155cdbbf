"""Talking to models in Slack, end to end: the real bot process, the local Slack, the embedded backend.

The base model's conversations come first; then one tiny job is trained (10 examples sharing one system
message, one epoch) for the tuned model's tests. Answers are kept short (80 tokens) for the small local
model on a busy CPU. What the bot sent
the model is read back from its own record (`bot.db`), so each answer shown in Slack is checked against
the exact text the model produced.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time

import pytest

from bot.mrkdwn import to_mrkdwn, to_stream_markdown, unescape

from .conftest import BotProcess
from .test_datasets_e2e import CHANNEL, buttons, chat, everything_said, jsonl, share, wait_report
from .test_jobs_e2e import JOB_TIMEOUT_S, ended, start_with_options

TALK = "talk"
PIRATE = "You are a terse assistant. Answer with one word."
TRAINING = [chat(f"Say the word {word}.", word, PIRATE) for word in
            ("apple", "river", "stone", "cloud", "tiger", "maple", "ocean", "candle", "pepper", "silver")]
HELD_OUT = [chat(f"Say the word {word}.", word, PIRATE) for word in ("apple", "river", "stone")]
ANSWER_TIMEOUT_S = 90


def turns(bot, channel_id: str, thread_ts: str) -> list[dict]:
    """The bot's own record of a thread's conversation."""
    with sqlite3.connect(bot.data_dir / "bot.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT role, content, model, ts FROM conversations WHERE channel = ? AND thread_ts = ? ORDER BY id",
                          [channel_id, thread_ts]).fetchall()
    return [dict(row) for row in rows]


def wait_turns(bot, channel_id: str, thread_ts: str, count: int, timeout: float = ANSWER_TIMEOUT_S) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(found := turns(bot, channel_id, thread_ts)) < count:
        assert time.monotonic() < deadline, f"{len(found)} turns recorded, expected {count}:\n{bot.log()[-2000:]}"
        time.sleep(0.2)
    return found


def bot_texts(local_slack, channel: str, thread_ts: str) -> list[str]:
    return [m.get("text", "") for m in local_slack.messages(channel, thread_ts=thread_ts)[1:] if m.get("bot_id")]


def ephemeral_with(local_slack, channel: str, user: str, needle: str, timeout: float = ANSWER_TIMEOUT_S) -> dict:
    return local_slack.wait_for(
        lambda: next((e for e in reversed(local_slack.ephemerals(channel, user)) if needle in everything_said(e)), None), timeout
    )


def command(local_slack, channel: str, user: str, text: str) -> None:
    local_slack.slash_command(channel, user, "/finetune", text).ack()


@pytest.fixture(scope="module")
def bot(local_slack, tmp_path_factory):
    """The bot with short answers, so the small local model's answers take seconds; its backend is asked
    once first, as it loads its model for serving on the first question (a minute on a busy machine)."""
    from openai import OpenAI

    process = BotProcess(local_slack, tmp_path_factory.mktemp("bot-data"), extra_env={"TUNEHOUSE_CHAT_MAX_TOKENS": "80"}).start()
    backend = OpenAI(base_url=re.search(r"embedded tunehouse at (\S+)", process.log()).group(1), api_key="sk-local", timeout=300)
    backend.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def trained(local_slack, bot) -> dict:
    """A job on 10 examples sharing one system message."""
    ts = share(local_slack, "words.jsonl", jsonl(TRAINING))
    start_with_options(local_slack, wait_report(local_slack, ts), n_epochs="1")
    return {"thread_ts": ts}


@pytest.fixture(scope="module")
def model(local_slack, trained) -> str:
    end = local_slack.wait_for(lambda: ended(local_slack, trained["thread_ts"]), JOB_TIMEOUT_S)
    found = re.search(r"ft:[\w.:-]*\w", everything_said(end[0]))
    assert found, everything_said(end[0])
    return found.group(0)


@pytest.fixture(scope="module")
def talk_channel(local_slack, bot) -> str:
    channel = local_slack.add_channel(TALK, ["alice", "bob"])
    command(local_slack, TALK, "alice", "use gpt-4o-mini Answer in one short sentence.")
    local_slack.wait_for_message(TALK, predicate=lambda m: "set this channel's model" in m.get("text", ""), timeout=30)
    return channel


def test_a_mention_is_answered_once_in_its_thread_as_a_stream(local_slack, bot, talk_channel):
    ts = local_slack.post_message(TALK, "alice", f"<@{local_slack.bot_user_id}> What is the capital of France? &amp; why?")
    recorded = wait_turns(bot, talk_channel, ts, 3)
    assert [t["role"] for t in recorded] == ["system", "user", "assistant"]
    assert recorded[0]["content"] == "Answer in one short sentence."
    assert recorded[1]["content"] == "What is the capital of France? & why?", "mention removed, escapes undone"
    time.sleep(1)
    texts = bot_texts(local_slack, TALK, ts)
    assert texts == [to_stream_markdown(recorded[2]["content"])], "one answer, exactly what the model said"
    methods = [method for _, method in local_slack.api_calls]
    assert "chat.startStream" in methods and "chat.stopStream" in methods


def test_a_reply_in_the_thread_goes_on_without_a_mention(local_slack, bot, talk_channel):
    ts = local_slack.post_message(TALK, "alice", f"<@{local_slack.bot_user_id}> Name a fruit.")
    wait_turns(bot, talk_channel, ts, 3)
    local_slack.post_message(TALK, "bob", "And a vegetable?", thread_ts=ts)
    recorded = wait_turns(bot, talk_channel, ts, 5)
    assert [t["role"] for t in recorded] == ["system", "user", "assistant", "user", "assistant"]
    assert recorded[3]["content"] == "And a vegetable?"
    local_slack.post_message(TALK, "bob", "Just people talking, no mention.")
    human = local_slack.post_message(TALK, "bob", "A thread of our own.")
    local_slack.post_message(TALK, "alice", "Indeed.", thread_ts=human)
    time.sleep(3)
    assert not bot_texts(local_slack, TALK, human), "the bot stays out of threads it was not asked into"


def test_a_dm_without_a_model_says_how_to_get_one(local_slack, bot, talk_channel):
    ts = local_slack.post_message("bob", "bob", "Hello, who are you?")
    reply = local_slack.wait_for(lambda: bot_texts(local_slack, "bob", ts), 30)
    assert "/finetune use" in reply[0] and "Fine-tune" in reply[0]


def test_unknown_models_are_refused_clearly(local_slack, bot, talk_channel):
    command(local_slack, TALK, "alice", "use ft:nope:never:trained")
    assert "knows no model" in ephemeral_with(local_slack, TALK, "alice", "ft:nope")["text"]
    command(local_slack, TALK, "alice", "ask ft:nope:never:trained hello")
    local_slack.wait_for(lambda: sum("knows no model" in e["text"] for e in local_slack.ephemerals(TALK, "alice")) >= 2, 30)


def test_ask_answers_only_the_asker_and_posts_when_asked(local_slack, bot, talk_channel):
    command(local_slack, TALK, "bob", "ask Say hello.")
    answer = local_slack.wait_for(lambda: [e for e in local_slack.ephemerals(TALK, "bob") if e["text"] and "Asking" not in e["text"]], ANSWER_TIMEOUT_S)
    assert answer[-1]["text"]
    command(local_slack, TALK, "bob", "ask --post Say goodbye.")
    root = local_slack.wait_for_message(TALK, predicate=lambda m: "asked `gpt-4o-mini`" in m.get("text", ""), timeout=30)
    recorded = wait_turns(bot, talk_channel, root["ts"], 3)
    assert recorded[1]["content"] == "Say goodbye."
    local_slack.post_message(TALK, "bob", "Once more?", thread_ts=root["ts"])
    wait_turns(bot, talk_channel, root["ts"], 5)


def test_the_tuned_model_is_the_channels_with_its_training_system_message(local_slack, bot, model):
    channel = local_slack.channel_id(CHANNEL)
    ts = local_slack.post_message(CHANNEL, "alice", f"<@{local_slack.bot_user_id}> Say the word apple.")
    recorded = wait_turns(bot, channel, ts, 3)
    assert recorded[0] == {"role": "system", "content": PIRATE, "model": model, "ts": None}
    assert recorded[2]["model"] == model
    command(local_slack, CHANNEL, "alice", "models")
    listed = ephemeral_with(local_slack, CHANNEL, "alice", "Models fine-tuned")["text"]
    assert model in listed and PIRATE in listed
    dm = local_slack.post_message("alice", "alice", "Say the word river.")
    assert wait_turns(bot, local_slack.dm("alice"), dm, 3)[2]["model"] == model, "a DM talks to the person's latest model"


def test_success_message_buttons(local_slack, bot, model, trained):
    end = ended(local_slack, trained["thread_ts"])[0]
    assert {"model_chat", "model_compare"} <= set(buttons(end))
    local_slack.click(CHANNEL, end["ts"], "model_compare", "bob")
    compared = ephemeral_with(local_slack, CHANNEL, "bob", "Tuned")
    assert model in everything_said(compared)
    local_slack.click(CHANNEL, end["ts"], "model_chat", "bob")
    local_slack.wait_for_message(CHANNEL, predicate=lambda m: "made `" in m.get("text", ""), timeout=30)


def test_compare_shows_both_answers_with_latency_and_tokens(local_slack, bot, model):
    command(local_slack, CHANNEL, "alice", "compare Say the word stone.")
    shown = ephemeral_with(local_slack, CHANNEL, "alice", "Tuned", timeout=ANSWER_TIMEOUT_S)
    said = everything_said(shown)
    assert "gpt-4o-mini" in said and model in said
    assert re.search(r"Base: first text [\d.]+ s · total [\d.]+ s · \d+ tokens", said), said
    assert re.search(r"Tuned: first text [\d.]+ s · total [\d.]+ s · \d+ tokens", said), said


def test_eval_reports_accuracy_and_precision_that_match_every_answer(local_slack, bot, model):
    ts = share(local_slack, "held-out.jsonl", jsonl(HELD_OUT))
    wait_report(local_slack, ts)
    command(local_slack, CHANNEL, "alice", "eval")
    done = local_slack.wait_for_message(CHANNEL, thread_ts=ts, predicate=lambda m: ": done." in m.get("text", ""), timeout=120)
    csv_file = local_slack.wait_for(lambda: next((f for m in local_slack.messages(CHANNEL, thread_ts=ts) for f in m.get("files", []) if f["name"] == "evaluation-answers.csv"), None), 30)
    assert any(f["name"] == "evaluation.png" for m in local_slack.messages(CHANNEL, thread_ts=ts) for f in m.get("files", []))
    rows = list(csv.DictReader(io.StringIO(local_slack.file(csv_file["id"])["content"].decode())))
    assert len(rows) == 2 * len(HELD_OUT) * 3
    table = unescape(everything_said(done))
    base = next(r["model"] for r in rows if r["model"] != model)
    assert base.startswith("gpt-4o-mini"), "the tuned model's own base"
    for label, name in (("base", base), ("tuned", model)):
        mine = [r for r in rows if r["model"] == name]
        exact = sum(r["answer"].strip() == r["expected"].strip() for r in mine) / len(mine)
        precision = 0.0
        for example in {r["example"] for r in mine}:
            answers = [r["answer"].strip() for r in mine if r["example"] == example]
            precision += max(answers.count(a) for a in answers) / 3 / len(HELD_OUT)
        assert f"{label} exact match {exact:.0%}, precision {precision:.2f}" in done["text"], (label, done["text"])
    assert "exact match" in table and "precision (3 samples)" in table


def test_without_streams_one_message_is_updated_and_long_answers_are_split(local_slack, bot, talk_channel):
    """Last: the bot then knows this workspace has no streaming methods."""
    local_slack.inject_fault("chat.startStream", "unknown_method")
    local_slack.settings.msg_max_chars = 250
    try:
        question = "Write a long story about a cat called &lt;Tom&gt; &amp; his friends, in many paragraphs."
        ts = local_slack.post_message(TALK, "alice", f"<@{local_slack.bot_user_id}> {question}")
        recorded = wait_turns(bot, talk_channel, ts, 3)
        time.sleep(1)
    finally:
        local_slack.settings.msg_max_chars = 40_000
    assert recorded[1]["content"] == "Write a long story about a cat called <Tom> & his friends, in many paragraphs."
    texts = bot_texts(local_slack, TALK, ts)
    assert all(len(t) <= 250 for t in texts)
    if len(to_mrkdwn(recorded[2]["content"])) > 250:
        assert len(texts) > 1
    squash = lambda text: "".join(text.split()).replace("``````", "")  # noqa: E731
    assert squash("".join(texts)) == squash(to_mrkdwn(recorded[2]["content"])), "nothing cut, nothing added"
    assert not re.search(r"<(?!https?://|mailto:)", "".join(texts)), "no raw < that Slack would read as markup"
    methods = [method for _, method in local_slack.api_calls]
    assert "chat.update" in methods
