"""The Slack bot as a user feels it: the real bot process against the local Slack, with the embedded backend.

    .venv/bin/python bench/slack_bot.py

- a 1 MB, 2,000-example JSONL shared in a channel: seconds from the share to the report in its thread
  (goal: within 2 s);
- every Socket Mode delivery of the run: acknowledgement latency, p50 / p99 / max (goal: p99 under 100 ms);
- a real fine-tuning job on the default model (150 steps, about a minute here): for each training step the
  backend reports, seconds until the status message in Slack shows it (goal: under 4 s at the default
  cadence), and the Web API calls the bot makes in the job's busiest minute (goal: at most 25).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localslack import LocalSlack  # noqa: E402
from tests.bot.conftest import BotProcess  # noqa: E402

CHANNEL = "fine-tuning"
STEP = re.compile(r"step (\d+) of (\d+)")


def chat_line(i: int, answer_words: int) -> str:
    answer = " ".join(f"word{(i * 7 + k) % 997}" for k in range(answer_words))
    return json.dumps({"messages": [
        {"role": "system", "content": "You answer in words."},
        {"role": "user", "content": f"Question number {i}: what are the words?"},
        {"role": "assistant", "content": answer},
    ]})


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    slack = LocalSlack(manifest=ROOT / "manifest.yml").start()
    posted: dict[str, float] = {}
    updates: list[tuple[float, str, str]] = []

    def record(change: dict) -> None:
        if change["kind"] == "message_posted" and change.get("thread_ts") and change["thread_ts"] != change["ts"]:
            posted.setdefault(change["thread_ts"], change["at"])
        if change["kind"] == "message_changed":
            updates.append((change["at"], change["ts"], slack.message(change["channel"], change["ts"]).get("text", "")))

    slack.subscribe(record)
    bot = BotProcess(slack, Path(tempfile.mkdtemp()) / "data").start()
    try:
        lines = [chat_line(i, 50) for i in range(2000)]
        content = ("\n".join(lines) + "\n").encode()
        shared_at = time.time()
        _, ts = slack.share_file(CHANNEL, "alice", "big.jsonl", content)
        slack.wait_for(lambda: ts in posted, 30)
        print(f"report for a {len(content) / 1e6:.2f} MB, 2,000-example JSONL: {posted[ts] - shared_at:.2f} s after the share (goal < 2 s)")

        small = "\n".join(chat_line(i, 6) for i in range(30)).encode()
        _, ts = slack.share_file(CHANNEL, "alice", "job.jsonl", small)
        report = slack.wait_for_message(CHANNEL, thread_ts=ts, predicate=lambda m: m.get("bot_id") and m.get("text"), timeout=30)
        slack.click(CHANNEL, report["ts"], "dataset_options", "alice")
        modal = slack.wait_for(lambda: slack.views("alice"), 15)[-1]
        slack.submit_view(modal["id"], "alice", {"n_epochs": {"value": {"type": "plain_text_input", "value": "5"}}})
        status = slack.wait_for(lambda: next((m for m in slack.messages(CHANNEL, thread_ts=ts) if "started by" in json.dumps(m.get("blocks"))), None), 30)
        job_start = time.time()
        slack.wait_for(lambda: any(m.get("subtype") == "thread_broadcast" for m in slack.messages(CHANNEL, thread_ts=ts)), 1800)
        job_end = time.time()
        time.sleep(1)

        shown_at: dict[int, float] = {}
        for at, message_ts, text in updates:
            found = STEP.search(text)
            if message_ts == status["ts"] and found:
                for step in range(1, int(found.group(1)) + 1):
                    shown_at.setdefault(step, at)
        from openai import OpenAI

        backend_url = re.search(r"embedded tunehouse at (\S+)", bot.log()).group(1)
        client = OpenAI(base_url=backend_url, api_key="sk-local")
        job_id = re.search(r"`(ftjob-[^`]+)`", slack.message(CHANNEL, status["ts"])["text"] + json.dumps(slack.message(CHANNEL, status["ts"]).get("blocks"))).group(1)
        events = [e for e in client.fine_tuning.jobs.list_events(job_id, limit=1000).data if e.type == "metrics"]
        # created_at is whole seconds: the middle of its second is the best estimate of when it happened
        lags = [shown_at[e.data["step"]] - (e.created_at + 0.5) for e in events if e.data["step"] in shown_at]
        if lags:
            print(f"backend metrics event -> status message in Slack: median {statistics.median(lags):.2f} s, "
                  f"p90 {percentile(lags, 0.9):.2f} s, max {max(lags):.2f} s over {len(lags)} steps (goal < 4 s)")
        calls = [(at, method) for at, method in slack.api_calls if job_start <= at <= job_end]
        minutes = (job_end - job_start) / 60
        per_method: dict[str, int] = {}
        for _, method in calls:
            per_method[method] = per_method.get(method, 0) + 1
        # Slack counts per minute: the busiest 60 s of the job, and the average (which a short job's few
        # milestones inflate)
        busiest = max((sum(1 for other, _ in calls if at <= other < at + 60) for at, _ in calls), default=0)
        print(f"Web API calls during the job: {len(calls)} in {minutes:.1f} min, {busiest} in its busiest minute "
              f"(goal <= 25), {len(calls) / minutes:.1f} per minute on average: "
              f"{', '.join(f'{m} {n}' for m, n in sorted(per_method.items()))}")

        latencies = [d.ack_latency * 1000 for d in slack.deliveries if d.ack_latency is not None]
        print(f"Socket Mode acknowledgements: {len(latencies)} deliveries, p50 {percentile(latencies, 0.5):.1f} ms, "
              f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms (goal p99 < 100 ms)")
    finally:
        bot.stop()
        slack.stop()


if __name__ == "__main__":
    main()
