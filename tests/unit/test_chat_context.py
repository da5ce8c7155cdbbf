"""Which model a channel talks to, the context a question is sent with, and the per-user rate limit
(bot/chat.py, with storage in a temporary file and freezegun's clock)."""

from __future__ import annotations

import time

import pytest
from freezegun import freeze_time

from bot.chat import Turn, build_messages, channel_model, clean_prompt, within_rate_limit
from storage import Storage
from tunehouse.data.costs import TokenCounter


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(tmp_path / "bot.db")


def test_clean_prompt_drops_the_mention_and_undoes_slacks_escapes():
    assert clean_prompt("<@UBOT> is 1 &lt; 2 &amp;&amp; 3 &gt; 2?", "UBOT") == "is 1 < 2 && 3 > 2?"
    assert clean_prompt("hey <@UBOT|tunehouse> and <@UOTHER>", "UBOT") == "hey  and <@UOTHER>"


def test_system_message_first_then_the_newest_turns_that_fit():
    counter = TokenCounter()
    history = [turn for i in range(20) for turn in (Turn("user", f"question {i} " + "word " * 50), Turn("assistant", f"answer {i} " + "word " * 50))]
    messages = build_messages("Be brief.", history, "latest?", context_tokens=1000, answer_tokens=200, counter=counter)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[-1] == {"role": "user", "content": "latest?"}
    kept = messages[1:-1]
    assert 0 < len(kept) < len(history)
    assert kept == [{"role": t.role, "content": t.content} for t in history[-len(kept):]], "the newest turns, in order"
    used = sum(3 + counter.text(m["content"]) for m in messages)
    assert used <= 1000 - 200


def test_everything_fits_in_a_large_window():
    history = [Turn("user", "hi"), Turn("assistant", "hello")]
    assert len(build_messages(None, history, "next", context_tokens=8192)) == 3


def test_channel_model_is_the_latest_of_trained_and_chosen(storage):
    assert channel_model(storage, "C1") is None
    dataset = storage.save_dataset(channel="C1", report={"system_message": "Answer in French."})
    with freeze_time("2026-01-01 10:00:00"):
        storage.save_job(channel="C1", user="U1", status="succeeded", fine_tuned_model="ft:a", finished_at=time.time(),
                         job_id="ftjob-1", dataset_id=dataset["id"])
    chosen = channel_model(storage, "C1")
    assert (chosen.model, chosen.system_message) == ("ft:a", "Answer in French.")
    with freeze_time("2026-01-01 11:00:00"):
        storage.set_channel_model("C1", "gpt-4o-mini", "Be terse.", "U2")
    assert (channel_model(storage, "C1").model, channel_model(storage, "C1").system_message) == ("gpt-4o-mini", "Be terse.")
    with freeze_time("2026-01-01 12:00:00"):
        storage.save_job(channel="C1", user="U1", status="succeeded", fine_tuned_model="ft:b", finished_at=time.time(), job_id="ftjob-2")
    assert channel_model(storage, "C1").model == "ft:b"
    assert channel_model(storage, "D9") is None
    assert channel_model(storage, "D9", "U1", is_dm=True).model == "ft:b", "a DM falls back on the person's latest model"


def test_rate_limit_per_user_per_minute(storage):
    with freeze_time("2026-01-01 10:00:00") as clock:
        for _ in range(3):
            assert within_rate_limit(storage, "U1", 3) is None
        wait = within_rate_limit(storage, "U1", 3)
        assert wait == pytest.approx(60)
        assert within_rate_limit(storage, "U2", 3) is None, "each person has their own limit"
        clock.tick(30)
        assert within_rate_limit(storage, "U1", 3) == pytest.approx(30)
        clock.tick(31)
        assert within_rate_limit(storage, "U1", 3) is None


def test_a_backend_that_is_down_is_said_plainly():
    import socket

    import openai

    from bot.chat import AnswerStats, ChatFailed, stream_answer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
    with pytest.raises(ChatFailed, match="cannot be reached"):
        list(stream_answer(client, "gpt-4o-mini", [{"role": "user", "content": "hi"}], AnswerStats(), timeout=2))
