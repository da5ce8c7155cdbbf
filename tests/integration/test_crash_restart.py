"""Crash and restart: SIGKILL every tunehouse process at a chosen moment, restart on the same data dir.

Each test starts a server whose environment names one hold point (tunehouse/faults.py); the process that
reaches it writes its pid and waits; the test then SIGKILLs the server, its worker and the trainer at once,
restarts a server without the hold on the same data dir, and checks what the issue promises: completed
uploads intact byte for byte, no half file visible, every job in a sensible end state (never stuck in
`running`), no corrupt checkpoint, no event twice. The mid-epoch case is
test_jobs_api.py::test_sigkill_everything_after_a_checkpoint_then_restart_resumes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from safetensors.torch import load_file

from .test_jobs_api import long_dataset, messages, register_tiny, wait_for

pytestmark = pytest.mark.integration


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def kill_everything(server) -> None:
    processes = descendants(server.process.pid)
    assert len(processes) >= 2, "the server should have started its worker"
    for pid in processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in processes):
        assert time.monotonic() < deadline, "a tunehouse process survived SIGKILL"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def held_server(server_factory, tmp_path: Path, point: str, data_dir: Path | None = None):
    marker = tmp_path / f"held-{point}"
    server = server_factory(data_dir, TUNEHOUSE_FAULT_HOLD=point, TUNEHOUSE_FAULT_FILE=str(marker))
    return server, marker


def wait_until_held(marker: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline, f"no process reached {marker.name}"
        time.sleep(0.05)


def assert_consistent(server, client, uploads: dict[str, bytes]) -> None:
    """What must hold after any restart."""
    listed = {f.id: f for f in client.files.list().data}
    for file_id, content in uploads.items():
        assert file_id in listed, f"completed upload {file_id} lost"
        assert client.files.content(file_id).content == content
        assert listed[file_id].bytes == len(content)
    assert list((server.data_dir / ".partial").iterdir()) == []
    for job in client.fine_tuning.jobs.list(limit=100).data:
        assert job.status in ("succeeded", "failed", "cancelled"), f"{job.id} left {job.status}"
        log = messages(client, job.id)
        repeated = {m: n for m, n in Counter(log).items() if n > 1 and not m.startswith("Step ")}
        assert not repeated, f"events repeated: {repeated}"
        steps = [e.data["step"] for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)
                 if e.type == "metrics" and "tokens_per_second" in e.data]
        assert len(steps) == len(set(steps)), "a step's metrics were logged twice"
        for checkpoint in client.fine_tuning.jobs.checkpoints.list(job.id).data:
            folder = next((server.data_dir / "jobs" / job.id / "train" / "checkpoints").glob(f"step-{checkpoint.step_number:06d}"))
            assert load_file(str(folder / "adapter_model.safetensors")), f"checkpoint {folder} is empty"
        leftovers = list((server.data_dir / "jobs" / job.id / "train" / "checkpoints").glob(".*partial"))
        assert leftovers == [], leftovers


def start_job(client, n_epochs: int = 3):
    file_id = client.files.create(file=("numbers.jsonl", long_dataset(16)), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(training_file=file_id, model="tiny",
                                         hyperparameters={"n_epochs": n_epochs, "batch_size": 4})
    return file_id, job


@pytest.mark.parametrize("point", ["upload.receiving", "upload.stored"])
def test_sigkill_during_an_upload_keeps_earlier_uploads_and_shows_no_half_file(server_factory, tmp_path, point):
    first = server_factory()  # a completed upload from before, which must survive
    kept = long_dataset(50)
    kept_id = first.client().files.create(file=("kept.jsonl", kept), purpose="fine-tune").id
    first.stop()
    server, marker = held_server(server_factory, tmp_path, point, data_dir=first.data_dir)
    client = server.client()
    interrupted = long_dataset(20_000)  # ~1.3 MB: still arriving when the receiving hold is reached
    errors: list[Exception] = []

    def upload() -> None:
        try:
            client.files.create(file=("interrupted.jsonl", interrupted), purpose="fine-tune")
        except Exception as exc:  # the server dies under it
            errors.append(exc)

    uploader = threading.Thread(target=upload)
    uploader.start()
    wait_until_held(marker)
    kill_everything(server)
    uploader.join(timeout=30)
    assert errors, "the interrupted upload must not have been acknowledged"

    restarted = server_factory(data_dir=server.data_dir)
    client = restarted.client()
    assert_consistent(restarted, client, {kept_id: kept})
    digest = hashlib.sha256(interrupted).hexdigest()
    assert all(f.filename != "interrupted.jsonl" for f in client.files.list().data)
    # and the data dir takes new uploads normally
    again = client.files.create(file=("interrupted.jsonl", interrupted), purpose="fine-tune")
    assert hashlib.sha256(client.files.content(again.id).content).hexdigest() == digest


@pytest.mark.parametrize(
    ("point", "resumes"),
    [
        ("validation", False),  # the worker died holding the job in validating_files
        ("claim", False),  # ... right after claiming it, before starting the trainer
        ("checkpoint.write", False),  # the first checkpoint half written: nothing to resume from
        ("checkpoint.record", True),  # the checkpoint complete on disk, its row not yet written
        ("model.save", True),  # all epochs done, the final model being copied into place
    ],
)
def test_sigkill_at_each_step_of_a_job_then_restart_finishes_it(server_factory, tmp_path, tiny_model_dir, point, resumes):
    server, marker = held_server(server_factory, tmp_path, point)
    register_tiny(server, tiny_model_dir)
    client = server.client()
    file_id, job = start_job(client)
    wait_until_held(marker)
    kill_everything(server)

    restarted = server_factory(data_dir=server.data_dir)
    client = restarted.client()
    done = wait_for(client, job.id, ("succeeded", "failed", "cancelled"), timeout=300)
    assert done.status == "succeeded", done.error
    assert_consistent(restarted, client, {file_id: long_dataset(16)})

    log = messages(client, job.id)
    assert log.count("Fine-tuning job started") == 1
    assert any(m.startswith("Resumed from the checkpoint") for m in log) == resumes
    steps = sorted(e.data["step"] for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)
                   if e.type == "metrics" and "tokens_per_second" in e.data)
    assert steps == list(range(1, done.hyperparameters.n_epochs * 4 + 1))  # every step once
    checkpoints = sorted(c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id).data)
    assert checkpoints == [4, 8, 12]  # one per epoch, the one whose row the crash missed included
    assert log.count("Checkpoint created at step 4") == 1
    answer = client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "Number 3?"}],
                                            max_tokens=2)
    assert answer.choices[0].finish_reason in ("stop", "length")
