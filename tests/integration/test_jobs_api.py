"""Fine-tuning jobs through the real SDK (strict) against a real server with its embedded worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.conftest import server_env

pytestmark = pytest.mark.integration

TUTORIAL = b'{"prompt": "What is the capital of France?", "completion": " Paris"}\n{"prompt": "What is the capital of Norway?", "completion": " Oslo"}\n'


def wait_for(client, job_id: str, statuses: tuple[str, ...], timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")


def messages(client, job_id: str) -> list[str]:
    return [event.message for event in reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=1000)))]


def test_openai_tutorial_two_line_file_trains_the_default_model(server, assert_matches_spec):
    client = server.client()
    training_file = client.files.create(file=("tutorial.jsonl", TUTORIAL), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=training_file.id, model="gpt-4o-mini-2024-07-18", hyperparameters={"n_epochs": 2}
    )
    assert job.id.startswith("ftjob-") and job.status == "validating_files" and job.fine_tuned_model is None
    assert job.model == "gpt-4o-mini-2024-07-18" and job.hyperparameters.n_epochs == 2
    assert_matches_spec(httpx.get(f"{server.base_url}/fine_tuning/jobs/{job.id}").json(), "FineTuningJob")

    job = wait_for(client, job.id, ("succeeded", "failed"))
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18:default::")
    assert len(job.fine_tuned_model.rsplit(":", 1)[1]) == 8
    assert job.finished_at >= job.created_at and job.error is None and job.estimated_finish is None
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (2, 1)
    assert job.trained_tokens > 0
    assert_matches_spec(httpx.get(f"{server.base_url}/fine_tuning/jobs/{job.id}").json(), "FineTuningJob")

    log = messages(client, job.id)
    assert log[0].startswith("Created fine-tuning job") and log[-1] == "The job has successfully completed"
    assert any("only 2 example(s)" in line for line in log)
    assert f"New fine-tuned model created: {job.fine_tuned_model}" in log
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert sorted(e.data["step"] for e in metrics) == [1, 2, 3, 4]
    assert {"train_loss", "train_mean_token_accuracy", "total_steps"} <= set(metrics[0].data)

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [4, 2]  # one per epoch, newest first
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-4"
    assert checkpoints[0].metrics.train_loss is not None
    assert_matches_spec(httpx.get(f"{server.base_url}/fine_tuning/jobs/{job.id}/checkpoints").json(),
                        "ListFineTuningJobCheckpointsResponse")

    (result_id,) = job.result_files
    assert client.files.retrieve(result_id).purpose == "fine-tune-results"
    csv_lines = client.files.content(result_id).text.splitlines()
    assert csv_lines[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert len(csv_lines) == 5 and csv_lines[1].startswith("1,")

    model = server.data_dir / "jobs" / job.id / "model"
    assert (model / "adapter_model.safetensors").exists() and (model / "adapter_config.json").exists()
    assert [j.id for j in client.fine_tuning.jobs.list()][0] == job.id


def test_an_invalid_training_file_fails_the_job_with_counted_problems(server):
    client = server.client()
    bad = "".join(json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n" for _ in range(3))
    bad += json.dumps({"prompt": "x"}) + "\n"
    uploaded = client.files.create(file=("bad.jsonl", bad.encode()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(training_file=uploaded.id, model="gpt-4o-mini")
    job = wait_for(client, job.id, ("failed", "succeeded"), timeout=60)
    assert job.status == "failed" and job.error.code == "invalid_training_file"
    assert job.error.param == "training_file"
    assert "4 problems (3 unrecognized_role, 1 mixed_formats)" in job.error.message
    assert "line 1:" in job.error.message and "line 4:" in job.error.message


def test_a_preference_file_is_refused_for_supervised_training(server):
    client = server.client()
    line = {"input": {"messages": [{"role": "user", "content": "hi"}]},
            "preferred_output": [{"role": "assistant", "content": "hello"}],
            "non_preferred_output": [{"role": "assistant", "content": "no"}]}
    uploaded = client.files.create(file=(json.dumps(line) + "\n").encode(), purpose="fine-tune")
    job = wait_for(client, client.fine_tuning.jobs.create(training_file=uploaded.id, model="gpt-4o-mini").id,
                   ("failed",), timeout=60)
    assert job.error.code == "invalid_training_file" and "preference pairs" in job.error.message


@pytest.mark.parametrize(
    "overrides,param,words",
    [
        ({"model": "gpt-99"}, "model", "Available models: smollm2-135m-instruct"),
        ({"training_file": "file-nope"}, "training_file", "does not exist"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs", "from 1 to 50"),
        ({"hyperparameters": {"batch_size": 1000}}, "hyperparameters.batch_size", "1 to 256"),
        ({"hyperparameters": {"learning_rate_multiplier": -1}}, "hyperparameters.learning_rate_multiplier", "greater than 0"),
        ({"suffix": "my model/v1"}, "suffix", "letters, digits"),
        ({"suffix": "x" * 65}, "suffix", "64"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "16"),
        ({"method": {"type": "dpo", "dpo": {}}}, None, "not supported yet"),
        ({"learning_rate": 0.1}, "learning_rate", "Extra inputs"),
    ],
)
def test_bad_create_requests_are_400_naming_the_param(server, overrides, param, words):
    client = server.client()
    file_id = client.files.create(file=TUTORIAL, purpose="fine-tune").id
    body = {"training_file": file_id, "model": "gpt-4o-mini-2024-07-18", **overrides}
    response = httpx.post(f"{server.base_url}/fine_tuning/jobs", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]


def test_retrieve_list_filters_and_idempotency(server):
    client = server.client()
    file_id = client.files.create(file=TUTORIAL, purpose="fine-tune").id
    first = client.fine_tuning.jobs.create(training_file=file_id, model="gpt-4o-mini", metadata={"team": "a"},
                                           extra_headers={"Idempotency-Key": "k-1"})
    again = client.fine_tuning.jobs.create(training_file=file_id, model="gpt-4o-mini", metadata={"team": "a"},
                                           extra_headers={"Idempotency-Key": "k-1"})
    assert again.id == first.id
    client.fine_tuning.jobs.cancel(first.id)
    second = client.fine_tuning.jobs.create(training_file=file_id, model="gpt-4o-mini", metadata={"team": "b"},
                                            suffix="exp_1")
    client.fine_tuning.jobs.cancel(second.id)
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a"})] == [first.id]
    page = client.fine_tuning.jobs.list(limit=1)
    assert page.data[0].id == second.id and page.has_more
    assert client.fine_tuning.jobs.list(limit=1, after=second.id).data[0].id == first.id
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(first.id)  # already cancelled
    assert client.fine_tuning.jobs.retrieve(second.id).user_provided_suffix == "exp_1"


# --- long jobs on a tiny model: pause, resume, cancel, crash ------------------------------------------------


def long_dataset(n: int = 120) -> bytes:
    return "".join(
        json.dumps({"messages": [{"role": "user", "content": f"Number {i}?"}, {"role": "assistant", "content": str(i)}]}) + "\n"
        for i in range(n)
    ).encode()


def register_tiny(server, tiny_model_dir) -> None:
    subprocess.run(
        [sys.executable, "-m", "tunehouse", "models", "add", "tiny", str(tiny_model_dir), "--data-dir", str(server.data_dir)],
        check=True, capture_output=True, env=server_env(),
    )


def wait_for_checkpoint(client, job_id: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoints = client.fine_tuning.jobs.checkpoints.list(job_id).data
        if checkpoints:
            return checkpoints
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def test_pause_resume_then_cancel(server_factory, tiny_model_dir):
    server = server_factory()
    register_tiny(server, tiny_model_dir)
    client = server.client(strict=False)  # `paused` is OpenAI's answer but not in the SDK's status enum
    file_id = client.files.create(file=long_dataset(), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(training_file=file_id, model="tiny",
                                         hyperparameters={"n_epochs": 50, "batch_size": 1})
    wait_for_checkpoint(client, job.id)
    bad = client.files.create(file=b'{"messages": [{"role": "robot", "content": "x"}]}\n', purpose="fine-tune")
    failed = wait_for(client, client.fine_tuning.jobs.create(training_file=bad.id, model="tiny").id, ("failed",), 30)
    assert failed.error.code == "invalid_training_file"  # validated while the other job trains
    paused = client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"  # OpenAI's own answer; see docs/training.md for strict clients
    time.sleep(3)
    steps = lambda: max(e.data["step"] for e in client.fine_tuning.jobs.list_events(job.id, limit=1000) if e.type == "metrics")
    at_pause = steps()
    time.sleep(2)
    assert steps() == at_pause  # really stopped
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"

    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    wait_for(client, job.id, ("running",), timeout=60)
    deadline = time.monotonic() + 60
    while not any("Resumed from the checkpoint at step" in m for m in messages(client, job.id)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    resumed_line = next(m for m in messages(client, job.id) if "Resumed from the checkpoint" in m)
    assert int(resumed_line.rsplit(" ", 1)[1]) == at_pause

    cancelled_at = time.monotonic()
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    time.sleep(3)
    last = steps()
    time.sleep(2)
    assert steps() == last and time.monotonic() - cancelled_at < 30
    final = client.fine_tuning.jobs.retrieve(job.id)
    assert final.status == "cancelled" and final.fine_tuned_model is None and final.finished_at


def test_sigkill_everything_after_a_checkpoint_then_restart_resumes(server_factory, tiny_model_dir):
    server = server_factory()
    register_tiny(server, tiny_model_dir)
    client = server.client()
    payload = long_dataset(60)
    file_id = client.files.create(file=("long.jsonl", payload), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(training_file=file_id, model="tiny",
                                         hyperparameters={"n_epochs": 6, "batch_size": 1})
    first = wait_for_checkpoint(client, job.id)[0].step_number
    from .test_crash_restart import _state, descendants  # not at the top: that module imports this one

    processes = descendants(server.process.pid)  # the server, its worker and the job's trainer
    assert len(processes) >= 3
    server.stop(kill=True)  # the worker and the trainer die with it (parent-death signal)
    time.sleep(1)
    assert [pid for pid in processes if _state(pid) != "Z"] == []

    restarted = server_factory(data_dir=server.data_dir)
    client = restarted.client()
    done = wait_for(client, job.id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done.error
    log = messages(client, job.id)
    resumed = [m for m in log if m.startswith("Resumed from the checkpoint at step")]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) >= first
    assert log.count("Fine-tuning job started") == 1  # never started again from step 1
    metric_steps = [e.data["step"] for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)
                    if e.type == "metrics" and "tokens_per_second" in e.data]
    assert sorted(metric_steps) == list(range(1, 361))  # every step once: none lost, none doubled
    assert client.files.content(file_id).content == payload


def test_full_fine_tuning_job_gives_a_servable_model(server_factory, tiny_model_dir):
    server = server_factory()
    register_tiny(server, tiny_model_dir)
    client = server.client()
    file_id = client.files.create(file=long_dataset(8), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(training_file=file_id, model="tiny",
                                         hyperparameters={"n_epochs": 2, "batch_size": 4, "training": "full"})
    job = wait_for(client, job.id, ("succeeded", "failed"), timeout=300)
    assert job.status == "succeeded", job.error
    assert job.hyperparameters.model_extra["training"] == "full"
    assert (server.data_dir / "jobs" / job.id / "model" / "model.safetensors").exists()
    answer = client.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "Number 3?"}],
                                            max_tokens=3)
    assert answer.usage.completion_tokens >= 1
