"""End to end: fine-tuning jobs through the real API, create to succeeded, and where the time outside training goes.

    .venv/bin/python bench/job_overhead.py [--train 200] [--jobs 2] [--gap 20]

Starts `tunehouse serve` (with its worker) on a fresh data dir, uploads the same 200 synthetic chat examples
as bench/training_vs_trl.py with the official SDK, and runs `--jobs` jobs (1 epoch, batch 8, LoRA): the first
right after the server started, each next one `--gap` seconds after the one before ended, as a user's next
job comes to a worker that has been idle a while. Each job is polled every 0.1 s (status and newest events),
and its time is split into what the user waits through:

- queue: create -> running (validating the file, the worker claiming the job);
- start: running -> the first step begins (the trainer process, imports, model load, tokenization);
- loop: the first step begins -> the last step's metrics (the per-step times the job reports, summed, and
  the rest: events, stop checks);
- save: the last step -> succeeded (checkpoint, the fine-tuned model, the result file).

Each boundary is seen by polling, so each phase is within about 0.1 s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from openai import OpenAI
from server import running_server
from training_vs_trl import make_dataset

POLL_SECONDS = 0.1


@dataclass
class JobTimeline:
    """Seconds since the create call at which each boundary was seen."""

    running: float
    first_step_begins: float
    last_step: float
    succeeded: float
    loop_steps: float
    """The per-step times the job reports, summed."""
    steps: int
    tokens: int

    def breakdown(self) -> str:
        outside = self.first_step_begins + (self.succeeded - self.last_step)
        loop = self.last_step - self.first_step_begins
        return (f"{self.steps} steps, {self.tokens} tokens; create to succeeded {self.succeeded:.1f} s, "
                f"of which {outside:.1f} s outside the training loop: "
                f"queue {self.running:.1f} s, start {self.first_step_begins - self.running:.1f} s, "
                f"loop {loop:.1f} s ({self.loop_steps:.1f} s in steps, {self.tokens / self.loop_steps:.0f} tokens/s), "
                f"save {self.succeeded - self.last_step:.1f} s")


def follow(client: OpenAI, file_id: str) -> JobTimeline:
    """Create one job and poll it to the end, noting when each boundary is first seen."""
    started = time.perf_counter()
    job = client.fine_tuning.jobs.create(training_file=file_id, model="gpt-4o-mini-2024-07-18",
                                         hyperparameters={"n_epochs": 1, "batch_size": 8})
    seen: dict[str, float] = {}
    metrics: dict[int, dict] = {}
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(POLL_SECONDS)
        job = client.fine_tuning.jobs.retrieve(job.id)
        now = time.perf_counter() - started
        if job.status in ("running", "succeeded"):
            seen.setdefault("running", now)
        for event in client.fine_tuning.jobs.list_events(job.id, limit=5):
            data = event.data or {}
            if event.type == "metrics" and "seconds_per_step" in data and data["step"] not in metrics:
                metrics[data["step"]] = data
                seen.setdefault("first_step", now - data["seconds_per_step"])
                if data["step"] == data["total_steps"]:
                    seen["last_step"] = now
    succeeded = time.perf_counter() - started
    if job.status != "succeeded":
        raise SystemExit(f"the job {job.status}: {job.error}")
    for event in client.fine_tuning.jobs.list_events(job.id, limit=1000):  # any the 5 newest did not show
        if event.type == "metrics" and "seconds_per_step" in (event.data or {}):
            metrics.setdefault(event.data["step"], event.data)
    return JobTimeline(
        running=seen["running"], first_step_begins=seen["first_step"], last_step=seen.get("last_step", succeeded),
        succeeded=succeeded, loop_steps=sum(step["seconds_per_step"] for step in metrics.values()),
        steps=len(metrics), tokens=job.trained_tokens,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--gap", type=float, default=20.0, help="seconds between a job's end and the next create")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, running_server(Path(scratch), worker=True) as base_url:
        client = OpenAI(base_url=base_url, api_key="sk-bench")
        data = "".join(json.dumps(row) + "\n" for row in make_dataset(args.train, seed=1)).encode()
        file_id = client.files.create(file=("train.jsonl", data), purpose="fine-tune").id
        for number in range(args.jobs):
            if number:
                time.sleep(args.gap)
            label = "first job after the server started" if number == 0 else f"job {number + 1}, {args.gap:.0f} s later"
            print(f"{label}: {follow(client, file_id).breakdown()}", flush=True)


if __name__ == "__main__":
    main()
