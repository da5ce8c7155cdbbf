"""Load: 20 people share a dataset each and ask 50 questions within one minute, in two channels, while a job
trains the default model on the same two cores. Every delivery is acknowledged within Slack's 3 s, every file
gets its one report, every question its answer, nothing fails, no call is refused for Slack's rate limits
(the local Slack holds each method to its tier, and chat.postMessage to about one a second per channel), and
the bot's memory stays level.

The figures (acknowledgement p50/p99/max, time to the last answer, memory) are printed for
docs/reliability.md: `pytest tests/bot/test_load_e2e.py -s`.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import pytest

from .conftest import BotProcess, add_tiny_model
from .test_datasets_e2e import CHANNEL, bot_replies, chat, jsonl, reports, wait_report
from .test_jobs_e2e import DEFAULT_MODEL, ended, start_with_options

PEOPLE = 20
QUESTIONS = 50
WINDOW_S = 60
ANSWER_TIMEOUT_S = 300
OTHER = "ml-team"


@pytest.fixture(scope="module")
def bot(local_slack, tmp_path_factory, tiny_model_dir):
    data = tmp_path_factory.mktemp("load-bot")
    add_tiny_model(data, tiny_model_dir)
    # short answers from the 2-layer model: the load is in the number of requests, not in their length
    process = BotProcess(local_slack, data, extra_env={"TUNEHOUSE_CHAT_MAX_TOKENS": "24"}).start()
    yield process
    process.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_twenty_files_and_fifty_mentions_in_a_minute_while_a_job_trains(local_slack, bot):
    people = [f"person{n:02d}" for n in range(PEOPLE)]
    for person in people:
        local_slack.add_user(person)
        local_slack.join(CHANNEL, person)
    local_slack.add_channel(OTHER, people)
    # a job on the default model, training through the whole minute
    _, job_thread = local_slack.share_file(CHANNEL, "alice", "long.jsonl", jsonl([chat(f"Spell {i}.", "x" * 40) for i in range(30)]))
    start_with_options(local_slack, wait_report(local_slack, job_thread), base_model=DEFAULT_MODEL, n_epochs="10")
    local_slack.wait_for(lambda: any("Training started" in m.get("text", "") for m in reports(local_slack, job_thread)), 300)
    for channel in (CHANNEL, OTHER):
        local_slack.slash_command(channel, "alice" if channel == CHANNEL else "person00", "/finetune", "use tiny").ack()
    local_slack.wait_for(lambda: all(any("set this channel's model" in m.get("text", "") for m in local_slack.messages(c))
                                     for c in (CHANNEL, OTHER)), 30)
    rss_before = rss_mb(bot.process.pid)
    first_delivery = len(local_slack.deliveries)

    files, questions = [], []
    actions = ["file"] * PEOPLE + ["mention"] * QUESTIONS
    started = time.monotonic()
    for number, action in enumerate(actions[i] for i in _interleaved(PEOPLE, QUESTIONS)):
        time.sleep(max(0.0, started + number * WINDOW_S / len(actions) - time.monotonic()))
        person = people[number % PEOPLE]
        channel = (CHANNEL, OTHER)[number % 2]
        if action == "file":
            records = [chat(f"{person} question {i}?", f"answer {i}") for i in range(10 + len(files))]
            _, ts = local_slack.share_file(channel, person, f"{person}.jsonl", jsonl(records))
            files.append((channel, ts))
        else:
            ts = local_slack.post_message(channel, person, f"<@{local_slack.bot_user_id}> Question {number}: say something.")
            questions.append((channel, ts))
    sent_in = time.monotonic() - started
    window_end = time.time()

    def unanswered() -> list:
        missing = [("file", c, ts) for c, ts in files if not reports(local_slack, ts, c)]
        return missing + [("question", c, ts) for c, ts in questions if not bot_replies(local_slack, ts, c)]

    try:
        local_slack.wait_for(lambda: not unanswered(), ANSWER_TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"unanswered after {ANSWER_TIMEOUT_S} s: {unanswered()[:10]}")
    answered_in = time.monotonic() - started
    time.sleep(3)
    rss_after = rss_mb(bot.process.pid)

    deliveries = [d for d in local_slack.deliveries[first_delivery:] if d.kind == "events_api"]
    firsts = [d for d in deliveries if d.retry_attempt == 0]
    latencies = sorted(d.ack_latency for d in firsts if d.ack_latency is not None)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"\n{PEOPLE} files and {QUESTIONS} mentions sent in {sent_in:.0f} s while a job trained; "
          f"{len(firsts)} event deliveries acknowledged: p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; every file and question answered "
          f"{answered_in:.0f} s after the first; bot RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after")
    assert all(d.status == "acked" for d in firsts), [(d.type, d.status) for d in firsts if d.status != "acked"]
    assert latencies[-1] < 3.0
    assert not [d for d in deliveries if d.retry_attempt > 0], "nothing was redelivered: every ack was in time"
    assert all(len(reports(local_slack, ts, c)) == 1 for c, ts in files), "one report per file"
    assert all(len([m for m in bot_replies(local_slack, ts, c) if m.get("text")]) == 1 for c, ts in questions)
    assert rss_after < rss_before + 150, "memory stays level"
    log = bot.log()
    assert "RateLimitErrorRetryHandler" not in log, "paced below Slack's tiers (the local Slack applies them): no 429"
    assert not re.search(r" (ERROR|CRITICAL) (bot|handlers|storage)\.", log) and "Traceback" not in log, log[-3000:]
    job_end = ended(local_slack, job_thread)
    assert not job_end or float(job_end[0]["ts"]) > window_end, "the job trained through the whole minute"


def _interleaved(files: int, mentions: int) -> list[int]:
    """Indexes into [files..., mentions...] spreading the files evenly among the mentions."""
    order, every = [], (files + mentions) / files
    file_slots = {round(n * every) for n in range(files)}
    f, m = 0, files
    for slot in range(files + mentions):
        if slot in file_slots and f < files:
            order.append(f)
            f += 1
        else:
            order.append(m)
            m += 1
    return order
