"""End to end: one fine-tuning job through the real API, create to succeeded, and what is not training.

    .venv/bin/python bench/job_overhead.py [--train 200]

Starts `tunehouse serve` (with its worker) on a fresh data dir, uploads the same 200 synthetic chat examples
as bench/training_vs_trl.py with the official SDK, creates a job (1 epoch, batch 8, LoRA), and polls it
every 0.1 s until it succeeds. The training loop's time is the sum of the per-step times the job reports
in its metrics events; everything else (queueing, validation, starting the trainer process, loading the
model, rendering the data, checkpointing, saving the model) is the overhead.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from openai import OpenAI
from server import running_server
from training_vs_trl import make_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, running_server(Path(scratch), worker=True) as base_url:
        client = OpenAI(base_url=base_url, api_key="sk-bench")
        data = "".join(json.dumps(row) + "\n" for row in make_dataset(args.train, seed=1)).encode()
        file_id = client.files.create(file=("train.jsonl", data), purpose="fine-tune").id
        started = time.perf_counter()
        job = client.fine_tuning.jobs.create(training_file=file_id, model="gpt-4o-mini-2024-07-18",
                                             hyperparameters={"n_epochs": 1, "batch_size": 8})
        while job.status not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.1)
            job = client.fine_tuning.jobs.retrieve(job.id)
        total = time.perf_counter() - started
        if job.status != "succeeded":
            raise SystemExit(f"the job {job.status}: {job.error}")
        steps = [e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)
                 if e.type == "metrics" and "seconds_per_step" in (e.data or {})]
        loop = sum(step["seconds_per_step"] for step in steps)
    overhead = total - loop
    print(f"job {job.id}: {len(steps)} steps, {job.trained_tokens} tokens; create to succeeded {total:.1f} s, "
          f"training loop {loop:.1f} s ({job.trained_tokens / loop:.0f} tokens/s), "
          f"overhead {overhead:.1f} s ({overhead / total:.0%}: queue, validation, trainer start, model load, "
          f"checkpoint, saving)")


if __name__ == "__main__":
    main()
