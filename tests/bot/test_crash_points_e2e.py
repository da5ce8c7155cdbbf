"""The bot SIGKILLed at chosen moments, then started again on the same data dir: nothing lost, nothing twice.

A bot started with `TUNEHOUSE_FAULT_HOLD=<point>` stops at that point (`tunehouse/faults.py`: it writes its
pid to `TUNEHOUSE_FAULT_FILE` and waits); the test then kills it (its embedded backend goes with it, as in a
crash of the machine's bot process) and starts a plain bot on the same data dir and workspace.
Jobs train the 2-layer `tiny` model, so each ends within seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storage import Storage

from .conftest import BotProcess, add_tiny_model
from .test_datasets_e2e import CHANNEL, SETTLE_S, bot_replies, chat, everything_said, jsonl, reports, share, wait_report
from .test_jobs_e2e import DEFAULT_MODEL, JOB_TIMEOUT_S, ended, start_with_options

HOLD_TIMEOUT_S = 120
NUMBERS = jsonl([chat(f"Say {i}.", f"{i}") for i in range(10)])


@pytest.fixture
def crash(local_slack, tmp_path, tiny_model_dir):
    """`crash(point)`: a bot that stops at `point`, killed there; returns the plain bot to start next."""
    data = tmp_path / "data"
    add_tiny_model(data, tiny_model_dir)
    plain_env = {"TUNEHOUSE_BASE_MODEL": "tiny", "TUNEHOUSE_CHAT_MAX_TOKENS": "40"}
    started: list[BotProcess] = []

    def held_at(point: str, act) -> BotProcess:
        marker = tmp_path / f"held-{point}"
        first = BotProcess(local_slack, data, extra_env={
            **plain_env, "TUNEHOUSE_FAULT_HOLD": point, "TUNEHOUSE_FAULT_FILE": str(marker)}).start()
        started.append(first)
        act()
        deadline = time.monotonic() + HOLD_TIMEOUT_S
        while not marker.exists():
            assert time.monotonic() < deadline, f"the bot never reached {point}:\n{first.log()[-2000:]}"
            assert first.alive(), first.log()[-2000:]
            time.sleep(0.1)
        first.kill()
        second = BotProcess(local_slack, data, extra_env=plain_env)
        started.append(second)
        return second

    yield held_at
    for process in started:
        process.stop()
    assert not any("Traceback" in process.log() for process in started[-1:]), started[-1].log()[-3000:]


def settle_and_count(local_slack, ts: str) -> int:
    time.sleep(SETTLE_S * 2)
    return len(reports(local_slack, ts))


def test_killed_after_the_download_the_report_comes_once(local_slack, crash):
    thread = {}
    restarted = crash("bot.downloaded", lambda: thread.update(ts=share(local_slack, "downloaded.jsonl", NUMBERS)))
    restarted.start()
    report = wait_report(local_slack, thread["ts"])
    assert "10 examples" in everything_said(report)
    assert settle_and_count(local_slack, thread["ts"]) == 1
    assert len([f for m in bot_replies(local_slack, thread["ts"]) for f in m.get("files", [])]) == 1


def fine_tune(local_slack, name: str, thread: dict):
    """What the held bot is given: share `name`, wait for its report, click Fine-tune; `thread` keeps both."""
    def act():
        thread["ts"] = share(local_slack, name, NUMBERS)
        thread["report"] = wait_report(local_slack, thread["ts"])
        local_slack.click(CHANNEL, thread["report"]["ts"], "dataset_finetune", "alice")
    return act


def test_killed_after_the_training_file_was_uploaded_the_start_can_be_clicked_again(local_slack, crash):
    thread = {}
    restarted = crash("bot.training_file_created", fine_tune(local_slack, "uploaded.jsonl", thread))
    restarted.start()
    ts = thread["ts"]
    local_slack.wait_for(lambda: any("restarted before the job was created" in everything_said(m)
                                     for m in reports(local_slack, ts)), 30)
    local_slack.click(CHANNEL, thread["report"]["ts"], "dataset_finetune", "alice")
    end = local_slack.wait_for(lambda: ended(local_slack, ts), JOB_TIMEOUT_S)
    assert "ft:" in everything_said(end[0])
    time.sleep(SETTLE_S * 2)
    assert len(ended(local_slack, ts)) == 1


def test_killed_after_the_job_was_created_the_job_is_adopted_and_ends_once(local_slack, crash):
    thread = {}
    restarted = crash("bot.job_created", fine_tune(local_slack, "created.jsonl", thread))
    restarted.start()
    ts = thread["ts"]
    end = local_slack.wait_for(lambda: ended(local_slack, ts), JOB_TIMEOUT_S)
    assert "ft:" in everything_said(end[0])
    time.sleep(SETTLE_S * 2)
    texts = [everything_said(m) for m in reports(local_slack, ts)]
    assert len(ended(local_slack, ts)) == 1
    assert sum("Training started" in t for t in texts) == 1
    assert "adopted" in restarted.log()


def test_killed_mid_answer_the_question_is_answered_after_the_restart(local_slack, crash, tmp_path):
    thread = {}

    def ask():
        local_slack.slash_command(CHANNEL, "alice", "/finetune", "use tiny").ack()
        local_slack.wait_for(lambda: [m for m in local_slack.messages(CHANNEL) if "set this channel's model" in m.get("text", "")], 30)
        thread["ts"] = local_slack.post_message(CHANNEL, "bob", f"<@{local_slack.bot_user_id}> Count to ten.")

    restarted = crash("bot.answering", ask)
    restarted.start()
    storage = Storage(Path(restarted.data_dir) / "bot.db")
    channel = local_slack.channel_id(CHANNEL)
    turns = local_slack.wait_for(lambda: storage.conversation(channel, thread["ts"]), 60)
    time.sleep(SETTLE_S * 2)
    turns = storage.conversation(channel, thread["ts"])
    assert [t["role"] for t in turns] == ["user", "assistant"], "the question and its answer, recorded once"
    assert turns[1]["content"].strip()
    assert bot_replies(local_slack, thread["ts"]), "the answer is in the question's thread"


def test_a_job_the_bot_lost_its_records_of_is_found_on_the_backend_and_followed(local_slack, tmp_path):
    data = tmp_path / "data"
    first = BotProcess(local_slack, data).start()
    second = BotProcess(local_slack, data)
    try:
        ts = share(local_slack, "lost.jsonl", jsonl([chat(f"Echo {i} twice.", f"{i} {i}") for i in range(12)]))
        start_with_options(local_slack, wait_report(local_slack, ts), base_model=DEFAULT_MODEL, n_epochs="2")
        local_slack.wait_for(lambda: any("Training started" in everything_said(m) for m in reports(local_slack, ts)), JOB_TIMEOUT_S)
        first.kill()
        for suffix in ("", "-wal", "-shm"):
            (data / f"bot.db{suffix}").unlink(missing_ok=True)
        second.start()
        end = local_slack.wait_for(lambda: ended(local_slack, ts), JOB_TIMEOUT_S)
        assert "ft:" in everything_said(end[0])
        time.sleep(SETTLE_S * 2)
        assert len(ended(local_slack, ts)) == 1
        assert "a job this bot had no record of" in second.log()
        # the new status message, posted by the second bot, followed the job to its end
        assert any("Succeeded" in everything_said(m) and "job_cancel" not in everything_said(m) for m in reports(local_slack, ts))
    finally:
        first.stop()
        second.stop()
