"""Job progress from both backends' shapes: the embedded one's events (texts copied from tunehouse/jobs) and
OpenAI's (SDK objects, metrics every ~10 steps, `full_valid_*`); time-dependent rules run under freezegun."""

from __future__ import annotations

import random
import time

import pytest
from freezegun import freeze_time
from openai.types.fine_tuning import FineTuningJob as OpenAIJob
from openai.types.fine_tuning import FineTuningJobEvent as OpenAIEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint as OpenAICheckpoint

from bot.progress import (
    Cadence,
    Coalescer,
    JobProgress,
    failure_advice,
    format_duration,
    new_events,
    progress_bar,
    status_line,
)
from tunehouse.protocol.fine_tuning import FineTuningJob as EmbeddedJob
from tunehouse.protocol.fine_tuning import FineTuningJobEvent as EmbeddedEvent

T0 = 1_760_000_000
JOB_ID = "ftjob-abc123"
FT_MODEL = "ft:gpt-4o-mini-2024-07-18:proj::k3x9q2zz"


# --- builders ------------------------------------------------------------------------------------------


def embedded_job(status: str, **fields) -> EmbeddedJob:
    values = dict(
        id=JOB_ID, created_at=T0, error=None, fine_tuned_model=None, finished_at=None,
        hyperparameters={"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
        model="gpt-4o-mini-2024-07-18", organization_id="proj", result_files=[], seed=7, status=status,
        trained_tokens=None, training_file="file-train", validation_file="file-valid", method={"type": "supervised"},
    )
    values.update(fields)
    return EmbeddedJob(**values)


CHOSEN = {"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 1.0, "training": "lora"}


class Events:
    """Writes events as the backend does, newest last, with increasing ids."""

    def __init__(self, factory=EmbeddedEvent):
        self.factory = factory
        self.all = []

    def add(self, at: int, message: str, *, level: str = "info", type: str = "message", data: dict | None = None):
        event = self.factory(
            id=f"ftevent-{len(self.all):04d}", object="fine_tuning.job.event", created_at=at, level=level,
            message=message, type=type, data=data,
        )
        self.all.append(event)
        return event

    def page(self, limit: int = 20) -> list:
        """Newest first, as `jobs.list_events` returns them."""
        return self.all[::-1][:limit]


def embedded_run(events: Events, *, steps_per_epoch: int = 4, epochs: int = 3, start: int = T0) -> int:
    """The embedded backend's events for a job with a validation file (runner.py, worker.py, service.py)."""
    total = steps_per_epoch * epochs
    events.add(start, f"Created fine-tuning job: {JOB_ID}")
    events.add(start, "Validating training file: file-train")
    events.add(start + 2, "Files validated, moving job to queued state")
    # models/catalog.py, the first time the embedded default model is used
    events.add(start + 3, "tunehouse: converting the embedded default model SmolLM2-135M-Instruct.Q4_1.gguf to "
                          "safetensors (once)...")
    events.add(start + 20, "tunehouse: default model ready in /data/models/smollm2-135m-instruct (17 s)")
    events.add(start + 21, "Fine-tuning job started")
    at = start + 21
    for step in range(1, total + 1):
        at += 1
        loss = 2.0 / step
        data = {"step": step, "total_steps": total, "train_loss": loss, "train_mean_token_accuracy": 0.5 + step / 100,
                "tokens_per_second": 812.0, "seconds_per_step": 1.0}
        events.add(at, f"Step {step}/{total}: training loss={loss:.4f}, 812 tokens/s", type="metrics", data=data)
        if step % steps_per_epoch == 0:
            valid = 2.2 / step
            data = {"step": step, "total_steps": total, "train_loss": loss,
                    "train_mean_token_accuracy": 0.5 + step / 100, "valid_loss": valid,
                    "valid_mean_token_accuracy": 0.6, "full_valid_loss": valid, "full_valid_mean_token_accuracy": 0.6}
            events.add(at, f"Step {step}/{total}: validation loss={valid:.4f}, validation token accuracy=0.600",
                       type="metrics", data=data)
            events.add(at, f"Checkpoint created at step {step}")
    return at


# --- the embedded backend ------------------------------------------------------------------------------


def test_embedded_backend_run_from_start_to_success():
    events = Events()
    progress = JobProgress()
    progress.apply_job(embedded_job("validating_files"), now=T0)
    embedded_run(events)
    progress.apply_events(events.all[:4])
    assert progress.preparing_model  # the embedded backend converting its default model
    end = T0 + 40
    events.add(end, f"New fine-tuned model created: {FT_MODEL}")
    events.add(end, "The job has successfully completed")
    progress.apply_events(events.all)
    progress.apply_job(embedded_job("succeeded", hyperparameters=CHOSEN, fine_tuned_model=FT_MODEL,
                                     finished_at=end, trained_tokens=4480), now=end + 1)

    assert (progress.status, progress.step, progress.total_steps, progress.epoch) == ("succeeded", 12, 12, 3.0)
    assert progress.train_loss == pytest.approx(2.0 / 12)
    assert progress.valid_loss == pytest.approx(2.2 / 12)
    assert progress.train_accuracy == pytest.approx(0.62)
    assert progress.valid_accuracy == pytest.approx(0.6)
    assert [step for step, _ in progress.train_loss_series] == list(range(1, 13))
    assert progress.valid_loss_series == [(4, 2.2 / 4), (8, 2.2 / 8), (12, 2.2 / 12)]
    assert sorted(progress.checkpoints) == [4, 8, 12]
    assert progress.fine_tuned_model == FT_MODEL and progress.trained_tokens == 4480
    assert progress.started_at == T0 + 21 and progress.finished_at == end
    assert progress.elapsed_seconds(now=end + 500) == 19
    assert progress.preparing_model is False
    assert progress.fraction == 1.0
    assert progress.last_event_id == events.all[-1].id


def test_preparing_the_model_is_reported_until_training_begins():
    events = Events()
    progress = JobProgress()
    progress.apply_job(embedded_job("running"), now=T0 + 3)
    progress.apply_events([events.add(T0 + 3, "PREPARING THE MODEL gpt-4o-mini (once, a few minutes)")])
    assert progress.preparing_model
    assert status_line(progress, now=T0 + 10).startswith("*Preparing the model*")

    progress.apply_events([events.add(T0 + 30, "Fine-tuning job started")])
    assert not progress.preparing_model
    assert status_line(progress, now=T0 + 31).startswith("*Training*")

    late = JobProgress(status="running")
    late.apply_events([events.all[-1]])
    late.apply_events([events.all[0]])  # the older "preparing" event arrives after the "started" one
    assert not late.preparing_model


def test_events_in_any_order_with_repeats_give_the_same_progress():
    events = Events()
    embedded_run(events)
    in_order = JobProgress()
    in_order.apply_events(events.all)

    shuffled = list(events.all) + events.all[5:15]
    random.Random(3).shuffle(shuffled)
    scrambled = JobProgress()
    first = scrambled.apply_events(shuffled[:20])
    rest = scrambled.apply_events(shuffled[20:])

    assert len(first) + len(rest) == len(events.all)  # each event counted once
    assert [e["created_at"] for e in rest] == sorted(e["created_at"] for e in rest)  # returned oldest first
    for name in ("step", "total_steps", "epoch", "train_loss", "valid_loss", "started_at", "last_event_at"):
        assert getattr(scrambled, name) == getattr(in_order, name), name
    assert scrambled.train_loss_series == in_order.train_loss_series
    assert scrambled.valid_loss_series == in_order.valid_loss_series
    assert sorted(scrambled.checkpoints) == sorted(in_order.checkpoints)
    assert scrambled.apply_events(events.all) == []


def test_new_events_stops_at_the_last_seen_id_and_returns_oldest_first():
    events = Events()
    for second in range(30):
        events.add(T0 + second, f"event {second}")
    progress = JobProgress()
    progress.apply_events(new_events(events.page(limit=20), None))
    assert progress.last_event_id == "ftevent-0029"

    for second in range(30, 35):
        events.add(T0 + second, f"event {second}")
    fresh = new_events(events.page(limit=20), progress.last_event_id)
    assert [e.message for e in fresh] == [f"event {s}" for s in range(30, 35)]
    assert len(progress.apply_events(fresh)) == 5
    assert progress.last_event_id == "ftevent-0034"
    assert new_events(events.page(), progress.last_event_id) == []
    assert len(new_events(events.page(limit=3), "ftevent-0000")) == 3  # not on the page: all of it is new


# --- OpenAI's shapes -----------------------------------------------------------------------------------


def openai_job(status: str, **fields) -> OpenAIJob:
    values = dict(
        id="ftjob-AbCdEfGhIjKlMnOpQrStUvWx", object="fine_tuning.job", created_at=T0, error=None,
        fine_tuned_model=None, finished_at=None, model="gpt-4o-mini-2024-07-18", organization_id="org-x",
        result_files=[], seed=1141628654, status=status, trained_tokens=None, training_file="file-a",
        validation_file="file-b", estimated_finish=None,
        hyperparameters={"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": "auto", "batch_size": "auto",
                                                                          "learning_rate_multiplier": "auto"}}},
    )
    values.update(fields)
    return OpenAIJob.model_validate(values)


OPENAI_CHOSEN = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8}


def openai_metrics(events: Events, at: int, step: int, total: int = 303, *, full: bool = False):
    data = {"step": step, "train_loss": 1.5 - step / 303, "train_mean_token_accuracy": 0.7, "total_steps": total,
            "valid_loss": 1.6 - step / 303, "valid_mean_token_accuracy": 0.65}
    message = f"Step {step}/{total}: training loss={data['train_loss']:.2f}, validation loss={data['valid_loss']:.2f}"
    if full:
        data.update(full_valid_loss=1.55 - step / 303, full_valid_mean_token_accuracy=0.66)
        message += f", full validation loss={data['full_valid_loss']:.2f}"
    return events.add(at, message, type="metrics", data=data)


def test_openai_job_with_sdk_objects():
    events = Events(OpenAIEvent)
    progress = JobProgress()
    progress.apply_job(openai_job("validating_files"), now=T0)
    events.add(T0, "Created fine-tuning job: ftjob-AbCdEfGhIjKlMnOpQrStUvWx")
    events.add(T0, "Validating training file: file-a and validation file: file-b")
    events.add(T0 + 60, "Files validated, moving job to queued state")
    events.add(T0 + 120, "Fine-tuning job started")
    for step in range(1, 302, 10):
        openai_metrics(events, T0 + 120 + step, step)
    openai_metrics(events, T0 + 430, 303, full=True)
    events.add(T0 + 431, "New fine-tuned model created: ft:gpt-4o-mini-2024-07-18:personal::Ajo5kvNY")
    events.add(T0 + 432, "The job has successfully completed")
    progress.apply_events(events.page(limit=100))
    progress.apply_checkpoints([
        OpenAICheckpoint.model_validate({
            "id": "ftckpt_zc4Q7MP6XxulcVzj4MZdwsAB", "object": "fine_tuning.job.checkpoint", "created_at": T0 + 330,
            "fine_tuned_model_checkpoint": "ft:gpt-4o-mini-2024-07-18:personal::Ajo5kvNY:ckpt-step-202",
            "fine_tuning_job_id": "ftjob-AbCdEfGhIjKlMnOpQrStUvWx", "step_number": 202,
            "metrics": {"step": 202.0, "train_loss": 0.83, "valid_loss": 0.95}})
    ])
    progress.apply_job(openai_job("succeeded", hyperparameters=OPENAI_CHOSEN, finished_at=T0 + 432,
                                  fine_tuned_model="ft:gpt-4o-mini-2024-07-18:personal::Ajo5kvNY",
                                  trained_tokens=145983), now=T0 + 440)

    assert (progress.step, progress.total_steps, progress.n_epochs, progress.epoch) == (303, 303, 3, 3.0)
    assert progress.train_loss == pytest.approx(0.5)
    assert progress.valid_loss == pytest.approx(0.6)  # the sampled valid_loss, measured at every report
    assert progress.valid_accuracy == pytest.approx(0.65)
    assert len(progress.train_loss_series) == 32
    assert progress.checkpoints[202].model.endswith(":ckpt-step-202")
    assert progress.hyperparameters == OPENAI_CHOSEN
    assert progress.started_at == T0 + 120
    assert progress.error is None  # OpenAI's all-null error objects are no error either

    end = progress.milestones()[-1]
    assert (end.key, end.kind) == ("end", "succeeded")
    assert "ft:gpt-4o-mini-2024-07-18:personal::Ajo5kvNY" in end.text
    assert end.fields["Trained tokens"] == "145,983"
    assert end.fields["Took"] == format_duration(312)


def test_full_validation_loss_fills_in_where_valid_loss_is_missing():
    progress = JobProgress()
    progress.apply_events([
        {"id": "e1", "created_at": T0, "level": "info", "message": "Step 10/20", "type": "metrics",
         "data": {"step": 10, "total_steps": 20, "train_loss": 1.0, "valid_loss": None}},
        {"id": "e2", "created_at": T0 + 1, "level": "info", "message": "Step 20/20", "type": "metrics",
         "data": {"step": 20, "total_steps": 20, "train_loss": 0.8, "full_valid_loss": 0.9,
                  "full_valid_mean_token_accuracy": 0.71}},
    ])
    assert progress.valid_loss_series == [(20, 0.9)]
    assert progress.valid_accuracy == 0.71


def test_hyperparameters_come_from_the_method_when_the_top_level_is_null():
    job = {"id": "ftjob-dpo", "status": "running", "model": "gpt-4o-mini", "hyperparameters": None,
           "method": {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 8,
                                                                  "learning_rate_multiplier": 0.5, "beta": 0.1}}}}
    progress = JobProgress()
    progress.apply_job(job, now=T0)
    assert progress.hyperparameters == {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 0.5}


def test_epoch_is_reported_by_the_backend_when_steps_do_not_divide_evenly():
    progress = JobProgress(hyperparameters={"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 2})
    progress.apply_events([{"id": "e", "created_at": T0, "level": "info", "message": "", "type": "metrics",
                            "data": {"step": 50, "total_steps": 100, "train_loss": 1.0, "epoch": 1.5}}])
    assert progress.epoch == 1.5
    progress.hyperparameters["n_epochs"] = 4  # 100 steps / 4 epochs: epoch 2 ends at step 50
    assert progress.epoch == 2.0


# --- time: ETA, stalls ---------------------------------------------------------------------------------


def test_eta_follows_the_observed_step_rate_as_time_moves():
    events = Events(OpenAIEvent)
    progress = JobProgress()
    with freeze_time("2026-01-05 12:00:00") as frozen:
        progress.apply_job(openai_job("running", hyperparameters=OPENAI_CHOSEN))
        assert progress.eta_seconds() is None  # no rate yet
        for step in range(10, 101, 10):  # 10 steps every 5 s: 2 steps a second
            frozen.tick(5)
            progress.apply_events([openai_metrics(events, int(time.time()), step, total=400)])
        assert progress.steps_per_second() == pytest.approx(2.0)
        assert progress.eta_seconds() == pytest.approx(150)
        frozen.tick(60)  # no news for a minute: the estimate counts down
        assert progress.eta_seconds() == pytest.approx(90)
        frozen.tick(600)
        assert progress.eta_seconds() == 0
        assert "less than a minute left" in status_line(progress)


def test_eta_rate_is_robust_to_one_slow_interval():
    events = Events(OpenAIEvent)
    progress = JobProgress(status="running")
    at = T0
    for step in range(10, 201, 10):
        at += 5 if step < 200 else 30  # the last 10 steps took 30 s instead of 5
        progress.apply_events([openai_metrics(events, at, step, total=400)])
    # over the window: 190 steps in 120 s; the last two alone would say a third of a step a second
    assert progress.steps_per_second() == pytest.approx(190 / 120)
    assert progress.eta_seconds(now=at) == pytest.approx(200 / (190 / 120))


def test_eta_after_a_resume_times_only_the_new_run():
    progress = JobProgress(status="running")
    samples = [(T0 + s, s) for s in range(1, 31)]  # 1 step a second, then a crash
    samples += [(T0 + 100 + 2 * i, 20 + i) for i in range(1, 6)]  # resumed at step 20: a step every 2 s
    progress.apply_events([
        {"id": f"e{i}", "created_at": at, "level": "info", "message": "", "type": "metrics",
         "data": {"step": step, "total_steps": 60, "train_loss": 1.0}}
        for i, (at, step) in enumerate(samples)
    ])
    assert progress.steps_per_second() == pytest.approx(0.5)


def test_eta_prefers_the_backends_estimated_finish_and_is_never_negative():
    progress = JobProgress()
    progress.apply_job(openai_job("running", estimated_finish=T0 + 600), now=T0)
    assert progress.eta_seconds(now=T0 + 100) == 500
    assert progress.eta_seconds(now=T0 + 700) == 0
    progress.apply_job(openai_job("queued", estimated_finish=T0 + 600), now=T0 + 10)
    assert progress.eta_seconds(now=T0 + 100) is None  # waiting jobs have no ETA


def test_a_running_job_silent_for_long_is_stalled():
    with freeze_time("2026-01-05 12:00:00") as frozen:
        progress = JobProgress()
        progress.apply_job(openai_job("running"))
        progress.apply_events([{"id": "e1", "created_at": time.time(), "level": "info",
                                "message": "Fine-tuning job started"}])
        frozen.tick(599)
        assert not progress.stalled()
        frozen.tick(2)
        assert progress.stalled()
        assert progress.stalled(after=900) is False
        assert "no news from the backend for 10 min" in status_line(progress)
        progress.apply_job(openai_job("queued"))
        assert not progress.stalled()


# --- milestones ----------------------------------------------------------------------------------------


def test_milestone_keys_are_unique_and_stable_as_the_job_goes_on():
    events = Events()
    progress = JobProgress()
    progress.apply_job(embedded_job("validating_files"), now=T0)
    assert progress.milestones() == []
    embedded_run(events)
    posted: dict[str, str] = {}
    for cut in [*range(0, len(events.all), 5), len(events.all)]:
        progress.apply_events(events.all[:cut])
        if cut > 10:
            progress.apply_job(embedded_job("running", hyperparameters=CHOSEN), now=T0 + 5)
        keys = [m.key for m in progress.milestones()]
        assert len(keys) == len(set(keys))
        assert keys[: len(posted)] == list(posted)  # what was posted stays first and keeps its key
        posted.update((m.key, m.kind) for m in progress.milestones())
    progress.apply_job(embedded_job("succeeded", hyperparameters=CHOSEN, fine_tuned_model=FT_MODEL,
                                    finished_at=T0 + 50))
    final = progress.milestones()
    assert [m.key for m in final] == ["started", "checkpoint:4", "checkpoint:8", "checkpoint:12", "end"]
    assert [m.key for m in final] == [m.key for m in progress.milestones()]


def test_started_milestone_waits_for_the_chosen_hyperparameters():
    progress = JobProgress()
    progress.apply_job(embedded_job("running"), now=T0)
    assert progress.milestones() == []  # still "auto": the backend has not chosen yet
    progress.apply_job(embedded_job("running", hyperparameters=CHOSEN), now=T0 + 5)
    [started] = progress.milestones()
    assert started.key == "started"
    assert started.fields == {"Base model": "gpt-4o-mini-2024-07-18", "Epochs": "3", "Batch size": "2",
                              "Learning rate multiplier": "1"}
    assert "3 epochs, batch size 2, learning rate multiplier 1" in started.text


def test_checkpoint_milestone_carries_the_loss_at_its_step():
    events = Events()
    embedded_run(events)
    progress = JobProgress()
    progress.apply_events(events.all)
    checkpoint = next(m for m in progress.milestones() if m.key == "checkpoint:8")
    assert checkpoint.kind == "checkpoint"
    assert checkpoint.fields["Training loss"] == "0.250"
    assert checkpoint.fields["Validation loss"] == "0.275"
    assert "step 8 of 12" in checkpoint.text


@pytest.mark.parametrize(
    ("code", "message", "reason", "retry"),
    [
        ("invalid_training_file", "Training file file-train has 2 problems: line 3 is not valid JSON", "file", False),
        ("invalid_n_examples", "Training file has 7 example(s), but must have at least 10 examples", "file", False),
        (None, "The job failed due to an invalid training file. Invalid file format.", "file", False),
        ("exceeded_quota", "You exceeded your current quota", "account", True),
        (None, "Your billing hard limit has been reached", "account", True),
        ("model_not_found", "The model `gpt-9` does not exist or you do not have access to it.", "model", False),
        ("server_error", "The server had an error while processing your request", "transient", True),
        ("training_crashed", "The training process exited unexpectedly (exit code -9).", "transient", True),
        (None, "Request timed out", "transient", True),
        ("training_failed", "Training failed: something odd", "unknown", False),
    ],
)
def test_failure_advice_by_code_then_words(code, message, reason, retry):
    advice = failure_advice(code, message)
    assert (advice.reason, advice.offer_retry) == (reason, retry)


def test_failed_end_milestone_names_the_error_and_what_to_do():
    events = Events()
    progress = JobProgress()
    events.add(T0, "Training file file-train: line 3: not valid JSON", level="error")
    events.add(T0, "The job failed")
    progress.apply_events(events.all)
    progress.apply_job(embedded_job("failed", finished_at=T0 + 2, error={
        "code": "invalid_training_file", "message": "Training file file-train: line 3: not valid JSON",
        "param": "training_file"}), now=T0 + 3)
    [end] = progress.milestones()
    assert (end.key, end.kind, end.offer_retry) == ("end", "failed", False)
    assert "line 3: not valid JSON" in end.text and "share it in the channel again" in end.text
    assert end.fields["Code"] == "invalid_training_file"


def test_failure_without_an_error_object_uses_the_error_event():
    progress = JobProgress()
    progress.apply_events([{"id": "e1", "created_at": T0, "level": "error", "message": "Training failed: CUDA error"}])
    progress.apply_job({"id": JOB_ID, "status": "failed", "error": None}, now=T0 + 1)
    [end] = progress.milestones()
    assert "Training failed: CUDA error" in end.text


def test_cancelled_end_milestone_says_by_whom_when_known():
    progress = JobProgress()
    progress.apply_job(embedded_job("cancelled", finished_at=T0 + 9), now=T0 + 9)
    assert progress.milestones()[-1].text == "*Fine-tuning was cancelled.*"
    progress.cancelled_by = "<@U024BE7LH>"
    assert progress.milestones()[-1].text == "*Fine-tuning was cancelled by <@U024BE7LH>.*"


# --- text ----------------------------------------------------------------------------------------------


def test_progress_bar():
    assert progress_bar(0.0, width=10) == "░░░░░░░░░░ 0%"
    assert progress_bar(0.4, width=10) == "▓▓▓▓░░░░░░ 40%"
    assert progress_bar(0.999, width=10) == "▓▓▓▓▓▓▓▓▓░ 99%"  # full only when done
    assert progress_bar(1.0) == "▓" * 20 + " 100%"
    assert progress_bar(1.7, width=4) == "▓▓▓▓ 100%" and progress_bar(-1, width=4) == "░░░░ 0%"


def test_status_line_while_training():
    progress = JobProgress()
    chosen = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2}
    progress.apply_job(openai_job("running", hyperparameters=chosen, estimated_finish=T0 + 400, trained_tokens=12345),
                       now=T0)
    progress.apply_events([
        {"id": "e1", "created_at": T0 + 200, "level": "info", "message": "", "type": "metrics",
         "data": {"step": 40, "total_steps": 100, "train_loss": 0.12345, "valid_loss": 0.2346}},
    ])
    line = status_line(progress, now=T0 + 200)
    assert line == (
        "*Training* ▓▓▓▓▓▓▓▓░░░░░░░░░░░░ 40% · step 40 of 100 · epoch 1 of 2 · training loss 0.123 · "
        "validation loss 0.235 · 3 min 20 s elapsed · about 4 min left · 12,345 tokens trained"
    )


def test_status_line_while_waiting():
    progress = JobProgress()
    progress.apply_job(openai_job("queued"), now=T0 + 30)
    assert status_line(progress, now=T0 + 90) == "*Queued* · 1 min 30 s elapsed"


def test_durations():
    assert [format_duration(s) for s in (0, 59, 61, 600, 3599, 3600, 7322)] == [
        "0 s", "59 s", "1 min 1 s", "10 min", "59 min", "1 h 00 min", "2 h 02 min"]


# --- pacing --------------------------------------------------------------------------------------------


def test_cadence_by_status_and_backoff_after_errors():
    cadence = Cadence()
    assert cadence.after_success("running") == 2
    assert cadence.after_success("queued") == cadence.after_success("validating_files") == 10
    assert cadence.after_success("paused") == 30
    assert cadence.after_success("succeeded") is None
    assert [cadence.after_error() for _ in range(9)] == [2, 4, 8, 16, 32, 64, 120, 120, 120]
    assert cadence.after_success("running") == 2
    assert cadence.after_error() == 2  # the backoff starts over after a success
    assert cadence.after_error(retry_after=30) == 30


def test_coalescer_sends_at_most_one_update_every_three_seconds_and_flushes_the_last():
    coalescer = Coalescer()
    sent: list[int] = []
    latest = None
    with freeze_time("2026-01-05 12:00:00") as frozen:
        start = time.time()
        for number in range(1, 101):  # 100 events in 10 s
            latest = number
            if coalescer.ready("status", time.time()):
                sent.append(latest)
                coalescer.mark("status", time.time())
            for key in coalescer.due(time.time()):  # the timer the glue runs
                sent.append(latest)
                coalescer.mark(key, time.time())
            frozen.tick(0.1)
        assert time.time() - start == pytest.approx(10)
        assert len(sent) <= 4
        assert sent[-1] != 100  # the last state is waiting...
        frozen.move_to("2026-01-05 12:00:12")
        assert coalescer.next_due_at() <= time.time()
        assert coalescer.due(time.time()) == ["status"]
        sent.append(latest)
        coalescer.mark("status", time.time())
    assert sent[-1] == 100  # ...and was sent
    assert coalescer.due(time.time() + 60) == [] and coalescer.next_due_at() is None


def test_coalescer_keeps_messages_apart_and_forgets_finished_ones():
    coalescer = Coalescer(interval_seconds=3)
    assert coalescer.ready("a", 0) and coalescer.ready("b", 0)
    coalescer.mark("a", 0)
    assert not coalescer.ready("a", 1)
    assert coalescer.ready("b", 1)
    assert coalescer.due(2.9) == [] and coalescer.due(3) == ["a"]
    coalescer.forget("a")
    assert coalescer.due(10) == [] and coalescer.ready("a", 1)
