"""The bot under Slack's faults and where it may not work: the real bot process against the local Slack, with
faults injected into the Web API and the Socket Mode connection as Slack produces them.

The module's bot works only in #fine-tuning (`SLACK_ALLOWED_CHANNELS`) and direct messages.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import ROOT, BotProcess
from .test_datasets_e2e import CHANNEL, SETTLE_S, bot_replies, chat, everything_said, jsonl, reports, share, wait_report

WEB_API_TIMEOUT_S = 30  # slack_sdk's WebClient default
TEN = jsonl([chat(f"q{i}", f"a{i}") for i in range(10)])


@pytest.fixture(scope="module")
def bot(local_slack, tmp_path_factory):
    allowed = local_slack.channel_id(CHANNEL)
    process = BotProcess(local_slack, tmp_path_factory.mktemp("reliability-bot"),
                         extra_env={"SLACK_ALLOWED_CHANNELS": allowed}).start()
    yield process
    process.stop()


def uploads(local_slack, ts: str, channel: str = CHANNEL) -> list[dict]:
    return [f for m in bot_replies(local_slack, ts, channel) for f in m.get("files", [])]


def test_outside_its_channels_the_bot_declines_once_and_does_nothing(local_slack, bot):
    local_slack.add_user("carol")
    elsewhere = local_slack.add_channel("random", ["alice", "bob", "carol"])
    ts = share(local_slack, "there.jsonl", TEN, channel=elsewhere)
    mention = local_slack.post_message(elsewhere, "bob", f"<@{local_slack.bot_user_id}> hello?")
    command = local_slack.slash_command(elsewhere, "carol", "/finetune", "list")
    acked = command.ack()
    assert "only work in" in acked["text"] and f"<#{local_slack.channel_id(CHANNEL)}>" in acked["text"]
    local_slack.wait_for(lambda: local_slack.ephemerals(elsewhere, "alice") and local_slack.ephemerals(elsewhere, "bob"), 15)
    time.sleep(SETTLE_S * 2)
    assert len(local_slack.ephemerals(elsewhere, "alice")) == 1, "the file's sharer is told once, not per delivery"
    assert len(local_slack.ephemerals(elsewhere, "bob")) == 1, "a mention (app_mention and message) is declined once"
    assert all("only work in" in e["text"] for e in local_slack.ephemerals(elsewhere))
    assert not bot_replies(local_slack, ts, elsewhere) and not bot_replies(local_slack, mention, elsewhere)
    assert not [m for m in local_slack.messages(elsewhere) if m.get("bot_id")]
    # where it works, it works
    here = share(local_slack, "here.jsonl", TEN)
    assert "10 examples" in everything_said(wait_report(local_slack, here))
    dm = local_slack.dm("alice")
    private = share(local_slack, "mine.jsonl", TEN, channel=dm)
    assert "10 examples" in everything_said(wait_report(local_slack, private, channel=dm))


def test_rate_limits_and_server_errors_are_retried_and_nothing_is_posted_twice(local_slack, bot):
    local_slack.inject_fault("chat.postMessage", http_status=429, retry_after=1, times=2)
    local_slack.inject_fault("files.getUploadURLExternal", http_status=503, times=1)
    local_slack.inject_fault("files.completeUploadExternal", error="internal_error", http_status=500, times=1)
    ts = share(local_slack, "limited.jsonl", TEN)
    report = wait_report(local_slack, ts, timeout=60)
    assert "10 examples" in everything_said(report)
    local_slack.wait_for(lambda: uploads(local_slack, ts), 30)
    time.sleep(SETTLE_S * 2)
    assert len(reports(local_slack, ts)) == 1 and len(uploads(local_slack, ts)) == 1


def test_a_web_api_call_that_times_out_is_tried_again(local_slack, bot):
    local_slack.inject_fault("files.getUploadURLExternal", delay=WEB_API_TIMEOUT_S + 2, times=1)
    ts = share(local_slack, "slow.jsonl", TEN)
    wait_report(local_slack, ts)
    local_slack.wait_for(lambda: uploads(local_slack, ts), WEB_API_TIMEOUT_S + 30)
    time.sleep(SETTLE_S)
    assert len(uploads(local_slack, ts)) == 1


def test_blocks_slack_refuses_fall_back_to_the_text(local_slack, bot):
    local_slack.inject_fault("chat.postMessage", error="invalid_blocks", times=1)
    ts = share(local_slack, "plain.jsonl", TEN)
    report = wait_report(local_slack, ts, timeout=30)
    assert "10 examples" in report["text"] and not report.get("blocks")


def test_socket_disconnects_and_a_dropped_socket_lose_nothing(local_slack, bot):
    for reason in ("warning", "refresh_requested"):
        local_slack.disconnect_sockets(reason)
        local_slack.wait_connected(timeout=30)
        ts = share(local_slack, f"after-{reason}.jsonl", TEN)
        wait_report(local_slack, ts, timeout=30)
    local_slack.drop_sockets()
    # sent into the cut socket and unacknowledged: Slack sends it again at once, then a minute later
    ts = share(local_slack, "while-dropped.jsonl", TEN)
    wait_report(local_slack, ts, timeout=120)
    time.sleep(SETTLE_S * 2)
    assert len(reports(local_slack, ts)) == 1


def test_a_file_deleted_before_its_download_is_said_in_its_thread(local_slack, bot):
    file_id, ts = local_slack.share_file(CHANNEL, "alice", "gone.jsonl", TEN)
    local_slack.delete_file(file_id)
    reply = wait_report(local_slack, ts)
    assert "deleted" in everything_said(reply) or "gone" in everything_said(reply).lower()


def test_a_channel_the_bot_was_removed_from_costs_nothing_else(local_slack, bot):
    local_slack.inject_fault("chat.postMessage", error="not_in_channel", times=1)
    ts = share(local_slack, "removed.jsonl", TEN)
    time.sleep(SETTLE_S * 2)
    assert not reports(local_slack, ts)
    told = local_slack.wait_for(lambda: [m for m in local_slack.messages(local_slack.dm("alice"))
                                         if "removed.jsonl" in m.get("text", "")], 15)
    assert "not in" in told[-1]["text"] or "removed" in told[-1]["text"]
    later = share(local_slack, "later.jsonl", TEN)
    wait_report(local_slack, later)


def embedded_backend_pid(bot) -> int:
    for task in Path(f"/proc/{bot.process.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"serve" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise AssertionError("the bot's embedded backend is not running")


def test_an_embedded_backend_that_dies_is_started_again(local_slack, bot):
    def model_set() -> int:
        return len([m for m in local_slack.messages(CHANNEL) if "set this channel's model" in m.get("text", "")])

    def use_model() -> str:
        """`/finetune use`: "" once the channel says the model is set, else what only alice was told."""
        seen, sets = len(local_slack.ephemerals(CHANNEL, "alice")), model_set()
        local_slack.slash_command(CHANNEL, "alice", "/finetune", "use gpt-4o-mini-2024-07-18").ack()
        local_slack.wait_for(lambda: len(local_slack.ephemerals(CHANNEL, "alice")) > seen or model_set() > sets, 30)
        return " ".join(e["text"] for e in local_slack.ephemerals(CHANNEL, "alice")[seen:])

    os.kill(embedded_backend_pid(bot), signal.SIGKILL)
    # the SDK's own retries may outlast the restart; if they do not, the person is told plainly
    while_down = use_model()
    assert not while_down or "cannot be reached" in while_down, while_down
    local_slack.wait_for(lambda: "embedded tunehouse at" in bot.log().split("starting it again")[-1], 120)
    assert use_model() == ""
    assert bot.alive()


def test_a_file_the_backend_refuses_is_said_in_its_thread(tmp_path):
    from localslack import LocalSlack

    slack = LocalSlack(manifest=ROOT / "manifest.yml").start()
    # the embedded backend inherits the bot's environment: it refuses uploads over 100 bytes
    refusing = BotProcess(slack, tmp_path / "data", extra_env={"TUNEHOUSE_MAX_UPLOAD_BYTES": "100"})
    try:
        refusing.start()
        ts = share(slack, "refused.jsonl", TEN)
        slack.click(CHANNEL, wait_report(slack, ts)["ts"], "dataset_finetune", "alice")
        said = slack.wait_for(lambda: [everything_said(m) for m in reports(slack, ts) if "TUNEHOUSE_MAX_UPLOAD_BYTES" in everything_said(m)], 60)
        assert "100" in said[0], said
        assert refusing.alive()
    finally:
        refusing.stop()
        slack.stop()


def test_a_restart_after_all_this_repeats_nothing(local_slack, bot):
    def said_in_threads() -> dict[str, list[str]]:
        return {m["ts"]: [everything_said(r)[:80] for r in bot_replies(local_slack, m["ts"])]
                for m in local_slack.messages(CHANNEL)}

    time.sleep(SETTLE_S)
    before = said_in_threads()
    answered = [d.event_id for d in local_slack.deliveries if d.type in ("message", "file_shared") and d.status == "acked"]
    bot.stop()
    bot.start()
    for event_id in answered[-6:]:  # Slack's retries, arriving after the restart
        local_slack.redeliver(event_id, "timeout")
    time.sleep(SETTLE_S * 2)
    after = said_in_threads()
    assert {ts: said for ts, said in after.items() if before.get(ts) != said} == {}


def test_the_logs_hold_no_token(local_slack, bot):
    log = bot.log()
    assert "ready" in log
    for secret in (local_slack.bot_token, local_slack.app_token):
        assert secret not in log
    assert "xoxb-" not in log and "xapp-" not in log
    # slack_sdk logs the acknowledgement it could not send on the cut socket with a traceback; ours never fail
    ours = [line for line in log.splitlines() if line.strip().startswith("File") and f"{ROOT}/" in line
            and "/.venv/" not in line]
    assert not ours, ours
