"""Fine-tuning from the report's button to the end, followed live in the thread: real jobs on the embedded
backend, through the real bot process and the local Slack.

The module's bot trains a 2-layer model (`tiny`: the default model's tokenizer, random weights) by default,
so a job with every hyperparameter on `auto` (about 100 steps) ends in seconds; the tests that need a job
still running when they act (cancel, a restart mid-job) choose the real default model in the Options modal.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
from .conftest import BotProcess, add_tiny_model
from .test_datasets_e2e import CHANNEL, buttons, chat, everything_said, jsonl, reports, share, wait_report

JOB_TIMEOUT_S = 420
NUMBERS = [chat(f"Say {i}.", f"{i}", "Answer with the number only.") for i in range(10)]
DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="module")
def bot(local_slack, tmp_path_factory, tiny_model_dir):
    data = tmp_path_factory.mktemp("jobs-bot")
    add_tiny_model(data, tiny_model_dir)
    admin = local_slack.add_user("dana")
    local_slack.join(CHANNEL, "dana")
    process = BotProcess(local_slack, data, extra_env={"TUNEHOUSE_BASE_MODEL": "tiny", "SLACK_ADMIN_USERS": admin}).start()
    yield process
    process.stop()


@pytest.fixture
def own_slack():
    """A workspace of its own, for a test that runs its own bot: Slack hands each delivery to any one of the
    app's connections, so two bots on one workspace would share the work between them."""
    from localslack import LocalSlack

    from .conftest import ROOT

    slack = LocalSlack(manifest=ROOT / "manifest.yml").start()
    yield slack
    slack.stop()


def start_with_options(local_slack, report: dict, base_model: str | None = None, **fields: str) -> None:
    local_slack.click(CHANNEL, report["ts"], "dataset_options", "alice")
    modal = local_slack.wait_for(lambda: local_slack.views("alice"), 15)[-1]
    values = {name: {"value": {"type": "plain_text_input", "value": value}} for name, value in fields.items()}
    if base_model:
        option = {"text": {"type": "plain_text", "text": base_model}, "value": base_model}
        values["base_model"] = {"value": {"type": "static_select", "selected_option": option}}
    answer = local_slack.submit_view(modal["id"], "alice", values)
    assert answer.get("response_action") != "errors", answer


def thread_text(local_slack, ts: str) -> list[str]:
    return [everything_said(m) for m in reports(local_slack, ts)]


def ended(local_slack, ts: str) -> list[dict]:
    """The broadcast replies: the job's one final message (it is also shown in the channel)."""
    return [m for m in reports(local_slack, ts) if m.get("subtype") == "thread_broadcast" or m.get("reply_broadcast")]


def test_the_button_trains_a_model_and_the_thread_follows_it(local_slack, bot):
    ts = share(local_slack, "numbers.jsonl", jsonl(NUMBERS))
    report = wait_report(local_slack, ts)
    local_slack.click(CHANNEL, report["ts"], "dataset_finetune", "alice")
    local_slack.click(CHANNEL, report["ts"], "dataset_finetune", "alice")  # an impatient second click
    status = local_slack.wait_for(lambda: next((m for m in reports(local_slack, ts) if m["ts"] != report["ts"]), None), 10)
    end = local_slack.wait_for(lambda: ended(local_slack, ts), JOB_TIMEOUT_S)
    time.sleep(4)
    texts = thread_text(local_slack, ts)
    assert len(ended(local_slack, ts)) == 1, "exactly one final message"
    final = everything_said(end[0])
    assert "ft:" in final and f"<@{local_slack.user_id('alice')}>" in final
    assert any("Training started" in t for t in texts)
    updated = local_slack.message(CHANNEL, status["ts"])
    assert "Succeeded" in everything_said(updated) and "100%" in everything_said(updated)
    charts = [f for m in local_slack.messages(CHANNEL, thread_ts=ts) for f in m.get("files", []) if f["name"].endswith(".png")]
    assert len(charts) == 1
    png = local_slack.file(charts[0]["id"])["content"]
    assert png.startswith(b"\x89PNG")
    jobs_started = [m for m in reports(local_slack, ts) if "Uploading" in m.get("text", "") or "`ftjob-" in everything_said(m)]
    assert len({m["ts"] for m in jobs_started}) == 1, "one job however many clicks"
    dm = local_slack.messages(local_slack.dm("alice"))
    assert any("ft:" in m.get("text", "") for m in dm), "the starter hears of the end directly"


def test_cancel_and_pause_are_for_the_starter_and_admins_only(local_slack, bot):
    ts = share(local_slack, "cancel-me.jsonl", jsonl([chat(f"Spell {i}.", "x" * 40) for i in range(30)]))
    report = wait_report(local_slack, ts)
    start_with_options(local_slack, report, base_model=DEFAULT_MODEL, n_epochs="3")
    status = local_slack.wait_for(
        lambda: next((m for m in reports(local_slack, ts) if "job_cancel" in buttons(m)), None), 60
    )
    local_slack.click(CHANNEL, status["ts"], "job_cancel", "bob")
    refused = local_slack.wait_for(lambda: [e for e in local_slack.ephemerals(CHANNEL, "bob") if "Only" in e.get("text", "")], 15)
    assert refused
    local_slack.click(CHANNEL, status["ts"], "job_pause", "dana")  # an admin (SLACK_ADMIN_USERS)
    local_slack.wait_for(lambda: "Paused" in everything_said(local_slack.message(CHANNEL, status["ts"])), 60)
    local_slack.click(CHANNEL, status["ts"], "job_cancel", "alice")
    end = local_slack.wait_for(lambda: ended(local_slack, ts), 120)
    assert "cancel" in everything_said(end[0]).lower()
    time.sleep(4)
    assert "Cancelled" in everything_said(local_slack.message(CHANNEL, status["ts"]))
    assert "job_cancel" not in buttons(local_slack.message(CHANNEL, status["ts"]))


def test_a_job_that_fails_says_why_and_what_to_do(own_slack, tmp_path, tiny_model_dir):
    local_slack = own_slack
    marker = tmp_path / "held.pid"
    add_tiny_model(tmp_path / "data", tiny_model_dir)
    crashing = BotProcess(
        local_slack, tmp_path / "data",
        extra_env={"TUNEHOUSE_FAULT_HOLD": "checkpoint.record", "TUNEHOUSE_FAULT_FILE": str(marker), "TUNEHOUSE_BASE_MODEL": "tiny"},
    ).start()
    try:
        ts = share(local_slack, "crash.jsonl", jsonl(NUMBERS))
        report = wait_report(local_slack, ts)
        start_with_options(local_slack, report, n_epochs="1")
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not marker.exists():
            assert time.monotonic() < deadline, "the training process never reached its first checkpoint"
            time.sleep(0.2)
        os.kill(int(marker.read_text()), signal.SIGKILL)  # the training process dies, as out of memory would
        end = local_slack.wait_for(lambda: ended(local_slack, ts), 120)
        said = everything_said(end[0])
        assert "exited unexpectedly" in said and "dataset_finetune_again" in buttons(end[0])
    finally:
        crashing.stop()


def test_a_bot_killed_mid_job_resumes_its_thread_and_ends_it_once(own_slack, tmp_path):
    local_slack = own_slack
    data = tmp_path / "data"
    first = BotProcess(local_slack, data).start()
    second = BotProcess(local_slack, data)
    try:
        ts = share(local_slack, "restart.jsonl", jsonl([chat(f"Echo {i} twice.", f"{i} {i}") for i in range(12)]))
        report = wait_report(local_slack, ts)
        start_with_options(local_slack, report, base_model=DEFAULT_MODEL, n_epochs="1")
        local_slack.wait_for(lambda: any("Training started" in t for t in thread_text(local_slack, ts)), JOB_TIMEOUT_S)
        first.kill()
        posted_before = len(reports(local_slack, ts))
        second.start()
        local_slack.wait_for(lambda: ended(local_slack, ts), JOB_TIMEOUT_S)
        time.sleep(5)
        texts = thread_text(local_slack, ts)
        assert len(ended(local_slack, ts)) == 1
        assert sum("Training started" in t for t in texts) == 1, "a milestone is never posted twice"
        assert len(texts) >= posted_before
        assert "Succeeded" in " ".join(texts)
    finally:
        first.stop()
        second.stop()

def test_finetune_commands(local_slack, bot):
    handle = local_slack.slash_command(CHANNEL, "alice", "/finetune", "list")
    handle.ack()
    replies = local_slack.wait_for(lambda: [e for e in local_slack.ephemerals(CHANNEL, "alice") if "Datasets in this channel" in e.get("text", "")], 15)
    assert "numbers.jsonl" in replies[-1]["text"]
    local_slack.slash_command(CHANNEL, "alice", "/finetune", "status").ack()
    local_slack.wait_for(lambda: [e for e in local_slack.ephemerals(CHANNEL, "alice") if "Jobs in this channel" in e.get("text", "")], 15)
    local_slack.slash_command(CHANNEL, "alice", "/finetune", "models").ack()
    models = local_slack.wait_for(lambda: [e for e in local_slack.ephemerals(CHANNEL, "alice") if "Models fine-tuned" in e.get("text", "")], 15)
    assert "ft:" in models[-1]["text"]
    local_slack.slash_command(CHANNEL, "alice", "/finetune", "frobnicate").ack()
    local_slack.wait_for(lambda: [e for e in local_slack.ephemerals(CHANNEL, "alice") if "frobnicate" in e.get("text", "")], 15)


def test_the_home_tab_lists_the_viewers_jobs_and_datasets(local_slack, bot):
    local_slack.open_home("alice")
    home = local_slack.wait_for(lambda: local_slack.home("alice"), 15)
    said = json.dumps(home["blocks"])
    assert "Your fine-tuning jobs" in said and "ftjob-" in said and "numbers.jsonl" in said
    local_slack.open_home("bob")
    assert "No fine-tuning jobs yet" in json.dumps(local_slack.wait_for(lambda: local_slack.home("bob"), 15)["blocks"])


def test_a_model_answers_only_where_it_was_tuned(local_slack, bot):
    local_slack.slash_command(CHANNEL, "alice", "/finetune", "models").ack()
    listed = local_slack.wait_for(lambda: [e for e in local_slack.ephemerals(CHANNEL, "alice") if "Models fine-tuned" in e.get("text", "")], 15)
    model = re.search(r"`(ft:[^`]+)`", listed[-1]["text"]).group(1)
    secret = local_slack.add_channel("secret-project", ["alice", "bob"], private=True)

    def answer_to(channel: str, user: str, text: str) -> str:
        seen = len(local_slack.ephemerals(channel, user))
        local_slack.slash_command(channel, user, "/finetune", text).ack()
        return local_slack.wait_for(lambda: local_slack.ephemerals(channel, user)[seen:], 15)[0]["text"]

    assert "another conversation" in answer_to(secret, "alice", f"use {model}")
    assert "another conversation" in answer_to(secret, "alice", f"ask {model} Say 3.")
    assert "another conversation" in answer_to(local_slack.dm("bob"), "bob", f"ask {model} Say 3.")
    job_id = re.search(r"ftjob-[A-Za-z0-9]+", answer_to(CHANNEL, "alice", "status")).group(0)
    for verb in ("status", "cancel"):
        assert "I know no job" in answer_to(secret, "alice", f"{verb} {job_id}"), "a job is acted on in its channel only"
    local_slack.slash_command(local_slack.dm("alice"), "alice", "/finetune", f"use {model}").ack()
    local_slack.wait_for(lambda: [m for m in local_slack.messages(local_slack.dm("alice")) if "set this channel's model" in m.get("text", "")], 15)


def test_what_happens_in_a_dm_stays_in_the_dm(local_slack, bot):
    dm = local_slack.dm("bob")
    before = {m["ts"] for m in local_slack.messages(CHANNEL)}
    _, ts = local_slack.share_file(dm, "bob", "diary.jsonl", jsonl([chat(f"Secret {i}?", f"Code {i}.") for i in range(10)]))
    report = wait_report(local_slack, ts, channel=dm)
    local_slack.click(dm, report["ts"], "dataset_finetune", "bob")
    end = local_slack.wait_for(lambda: [m for m in reports(local_slack, ts, dm) if m.get("reply_broadcast") or m.get("subtype") == "thread_broadcast"], JOB_TIMEOUT_S)
    assert "ft:" in everything_said(end[0])
    time.sleep(4)
    new_in_channel = [m for m in local_slack.messages(CHANNEL) if m["ts"] not in before]
    assert not [m for m in new_in_channel if "diary" in everything_said(m) or "Secret" in everything_said(m)]
    assert all(e["channel"] == dm for e in local_slack.ephemerals(user="bob") if "diary" in e.get("text", ""))
