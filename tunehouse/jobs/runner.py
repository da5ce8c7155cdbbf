"""One job's training, in its own process (started by a worker):

    python -m tunehouse.jobs.runner JOB_ID        # settings from TUNEHOUSE_* environment variables
    python -m tunehouse.jobs.runner --next-job    # import first, then read JOB_ID from stdin

The second form is how the worker starts each job's process ahead of the job: the imports, the default
model's tokenizer and weights (~6 s on 2 cores) are then loaded before the job is claimed.

It renders the job's files with the base model's template, resolves `"auto"` hyperparameters, runs the LoRA
SFT recipe with hooks that write events, metrics and checkpoints to the database, and on success saves the
fine-tuned adapter and the result CSV. It resumes from the job's latest checkpoint when there is one. The
job row is the only channel with the API: a status of `cancelled` or `paused` set there stops training.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from ..data.render import render_example
from ..data.validate import validate_dataset
from ..faults import hold_point
from ..models.catalog import context_length, converted_default_model, load_tokenizer
from ..protocol.common import new_id
from ..services import Services, open_services
from ..settings import Settings
from ..store import files as file_store
from ..store.db import FileRecord, Job, JobCheckpoint, JobEvent
from ..train.auto import BASE_LEARNING_RATE, FULL_BASE_LEARNING_RATE, resolve_hyperparameters
from ..train.lora_sft import Hooks, TrainConfig, latest_checkpoint, load_base, run
from .service import add_event, drop_metrics_after
from .worker import NEXT_JOB

log = logging.getLogger("tunehouse.runner")
MAX_SEQ_LEN = 2048
STARTED = "Fine-tuning job started"


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.data_dir / "jobs" / job_id


def model_dir_of(settings: Settings, job_id: str) -> Path:
    """The fine-tuned model: a PEFT adapter folder that serving (and PEFT, vLLM) load as it is."""
    return job_dir(settings, job_id) / "model"


def run_job(services: Services, job_id: str, preloaded: Preloaded | None = None) -> None:
    db, settings = services.db, services.settings
    job = _load(services, job_id)
    log_event = lambda text, level="info": add_event(db, job_id, text, level=level)  # noqa: E731

    model_path = services.catalog.model_path(job.base_model, log=lambda text: log_event(text))
    tokenizer = load_tokenizer(str(model_path))
    train_set = _render(services, job.training_file, tokenizer)
    valid_set = _render(services, job.validation_file, tokenizer) if job.validation_file else None
    hyperparameters = resolve_hyperparameters(job.hyperparameters, len(train_set))
    _update(services, job_id, hyperparameters=hyperparameters)

    output_dir = job_dir(settings, job_id) / "train"
    config = TrainConfig(
        model_dir=str(model_path),
        output_dir=str(output_dir),
        n_epochs=hyperparameters["n_epochs"],
        batch_size=hyperparameters["batch_size"],
        full=hyperparameters["training"] == "full",
        learning_rate=(FULL_BASE_LEARNING_RATE if hyperparameters["training"] == "full" else BASE_LEARNING_RATE)
        * hyperparameters["learning_rate_multiplier"],
        seed=job.seed,
        max_seq_len=min(MAX_SEQ_LEN, context_length(model_path)),
        log_every=1,  # a metrics event per step: live charts, and OpenAI's own granularity
        bf16=None,  # frozen weights in bf16 where the CPU computes it natively (same loss as fp32, faster)
    )
    resumed_from = latest_checkpoint(output_dir)
    if resumed_from is not None:
        drop_metrics_after(db, job_id, int(resumed_from.name.split("-")[-1]))
        _record_unrecorded_checkpoints(services, job, output_dir)
    elif _has_event(services, job_id, STARTED):  # it stopped before its first checkpoint
        drop_metrics_after(db, job_id, 0)
        log_event("The job stopped before its first checkpoint; training starts again from the beginning", "warn")
    else:
        log_event(STARTED)
    hooks = Hooks(
        on_metrics=lambda metrics: _on_metrics(services, job, metrics),
        on_message=lambda level, text: log_event(text, level),
        on_checkpoint=lambda step, path, metrics: _on_checkpoint(services, job, step, path, metrics),
        should_stop=lambda: _should_stop(services, job_id),
    )
    base = preloaded.take(model_path) if preloaded is not None else None
    result = run(config, train_set, valid_set, hooks, base=base)
    if result.stopped:
        return
    _finish(services, job, result.adapter_dir, result.trained_tokens)


def _load(services: Services, job_id: str) -> Job:
    with services.db.session() as session:
        job = session.scalar(select(Job).where(Job.id == job_id))
    if job is None:
        raise LookupError(f"no job {job_id}")
    return job


def _update(services: Services, job_id: str, **values) -> None:
    with services.db.session() as session:
        job = session.scalar(select(Job).where(Job.id == job_id))
        for key, value in values.items():
            setattr(job, key, value)


def _render(services: Services, file_id: str, tokenizer) -> list:
    report = validate_dataset(services.blobs.path(file_store.blob_key(file_id)))
    return [render_example(example.record, example.format, tokenizer) for example in report.examples]


def _has_event(services: Services, job_id: str, message: str) -> bool:
    with services.db.session() as session:
        found = session.scalar(select(JobEvent.id).where(JobEvent.job_id == job_id, JobEvent.message == message).limit(1))
    return found is not None


def _should_stop(services: Services, job_id: str) -> str | None:
    with services.db.session() as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
    return {"cancelled": "cancel", "paused": "pause"}.get(status)


def _on_metrics(services: Services, job: Job, metrics: dict) -> None:
    step, total = metrics["step"], metrics["total_steps"]
    if "valid_loss" in metrics:
        message = f"Step {step}/{total}: validation loss={metrics['valid_loss']:.4f}, validation token accuracy={metrics['valid_mean_token_accuracy']:.3f}"
    else:
        message = (
            f"Step {step}/{total}: training loss={metrics['train_loss']:.4f}, "
            f"{metrics['tokens_per_second']:.0f} tokens/s"
        )
    add_event(services.db, job.id, message, type="metrics", data=metrics, step=step)
    rate = metrics.get("seconds_per_step")
    if rate:
        _update(services, job.id, estimated_finish=int(time.time() + rate * (total - step)))


def _on_checkpoint(services: Services, job: Job, step: int, path: Path, metrics: dict) -> None:
    hold_point("checkpoint.record")  # the folder is complete, its row not yet written
    with services.db.session() as session:
        session.add(
            JobCheckpoint(
                id=new_id("ftckpt_"),
                job_id=job.id,
                created_at=int(time.time()),
                step_number=step,
                metrics=metrics,
                model_name=f"{job.output_model}:ckpt-step-{step}",
                path=str(path.relative_to(services.settings.data_dir)),
            )
        )
        # the recipe keeps the last three checkpoint folders; rows follow the folders
        for row in session.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job.id)):
            if not (services.settings.data_dir / row.path).exists():
                session.delete(row)
    add_event(services.db, job.id, f"Checkpoint created at step {step}")


def _record_unrecorded_checkpoints(services: Services, job: Job, output_dir: Path) -> None:
    """A crash between a checkpoint's folder and its row leaves a complete folder the API cannot see."""
    with services.db.session() as session:
        recorded = set(session.scalars(select(JobCheckpoint.step_number).where(JobCheckpoint.job_id == job.id)))
    for folder in sorted((output_dir / "checkpoints").glob("step-*")):
        step = int(folder.name.split("-")[-1])
        if step in recorded or not (folder / "metrics.json").exists():
            continue
        metrics = json.loads((folder / "metrics.json").read_text())
        if "total_steps" not in metrics:  # a pause's checkpoint (only its step): not one the API lists
            continue
        _on_checkpoint(services, job, step, folder, metrics)


def _finish(services: Services, job: Job, adapter_dir: Path, trained_tokens: int) -> None:
    settings = services.settings
    target = model_dir_of(settings, job.id)
    staging = target.with_name("model.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(adapter_dir, staging, ignore=shutil.ignore_patterns("trainer_state.pt"))
    hold_point("model.save")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    result_file = _write_result_file(services, job)
    with services.db.session() as session:
        row = session.scalar(select(Job).where(Job.id == job.id).with_for_update())
        if row.status != "running":  # cancelled while the model was being saved: the cancel wins
            return
        row.status = "succeeded"
        row.finished_at = int(time.time())
        row.trained_tokens = trained_tokens
        row.result_files = [result_file]
        row.estimated_finish = None
    add_event(services.db, job.id, f"New fine-tuned model created: {job.output_model}")
    add_event(services.db, job.id, "The job has successfully completed")


def _write_result_file(services: Services, job: Job) -> str:
    """`step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy`, one row per logged step."""
    with services.db.session() as session:
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "metrics").order_by(JobEvent.seq)
        ).all()
    rows: dict[int, dict] = {}
    for event in events:
        rows.setdefault(event.data["step"], {}).update(event.data)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = ["train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    writer.writerow(["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"])
    for step in sorted(rows):
        writer.writerow([step] + [_cell(rows[step].get(column)) for column in columns])
    content = buffer.getvalue().encode()
    file_id = new_id("file-")
    with services.blobs.writer(file_store.blob_key(file_id)) as blob:
        blob.write(content)
    file_store.add_file(
        services.db,
        FileRecord(
            id=file_id, project=job.project, filename="step_metrics.csv", purpose="fine-tune-results",
            bytes=blob.size, sha256=blob.sha256, created_at=int(time.time()), status="processed",
        ),
    )
    return file_id


def _cell(value) -> str:
    return "" if value is None else f"{value:.6g}"


@dataclass
class Preloaded:
    """The default model, loaded before this process had a job."""

    model_dir: Path
    base: object
    """`load_base(model_dir)`, unchanged until a job trains it."""

    def take(self, model_dir: Path) -> object | None:
        """The loaded base if the job trains `model_dir`; either way this process lets go of it, so a job on
        another model does not keep the default's ~540 MB of weights for nothing."""
        base, self.base = self.base, None
        return base if self.model_dir == model_dir else None


def preload(settings: Settings) -> Preloaded | None:
    """Import what a job's start would otherwise wait for (transformers, PEFT and the Llama modeling code
    that lora_sft.load_model imports when called) and, if the default model has been converted, load its
    tokenizer and weights. Never convert here: a conversion happens in a job, after its "Preparing the
    model" event."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as load_tokenizer does: read when transformers is imported
    import peft.tuners.lora  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401

    model_dir = converted_default_model(settings.resolved_model_cache_dir)
    if model_dir is None:
        return None
    load_tokenizer(str(model_dir))
    return Preloaded(model_dir, load_base(str(model_dir)))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    preloaded = None
    if argv[0] == NEXT_JOB:
        try:
            preloaded = preload(settings)
        except Exception:  # the job loads what it needs itself, and fails with the reason if that fails too
            log.warning("could not prepare for the next job:\n%s", traceback.format_exc())
        job_id = sys.stdin.readline().strip()
        if not job_id:  # the worker stopped before it had a job for this process
            return 0
    else:
        job_id = argv[0]
    services = open_services(settings, discard_partial_writes=False)
    try:
        run_job(services, job_id, preloaded)
    except Exception as exc:  # the job fails with the reason; the worker sees a clean exit
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        with services.db.session() as session:
            row = session.scalar(select(Job).where(Job.id == job_id))
            if row is not None and row.status == "running":
                row.status = "failed"
                row.finished_at = int(time.time())
                row.error = {"code": "training_failed", "message": f"Training failed: {exc}"[:1000], "param": None}
                row.estimated_finish = None
        add_event(services.db, job_id, f"Training failed: {exc}"[:1000], level="error")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
