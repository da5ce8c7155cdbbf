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
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_vs_trl import make_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "TUNEHOUSE_MODEL_CACHE_DIR": str(ROOT / ".cache" / "models")}
        server = subprocess.Popen([sys.executable, "-m", "tunehouse", "serve", "--port", str(port),
                                   "--data-dir", str(Path(scratch) / "data")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-bench")
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
        finally:
            server.terminate()
            server.wait(timeout=30)
    overhead = total - loop
    print(f"job {job.id}: {len(steps)} steps, {job.trained_tokens} tokens; create to succeeded {total:.1f} s, "
          f"training loop {loop:.1f} s ({job.trained_tokens / loop:.0f} tokens/s), "
          f"overhead {overhead:.1f} s ({overhead / total:.0%}: queue, validation, trainer start, model load, "
          f"checkpoint, saving)")


if __name__ == "__main__":
    main()
