"""Starting fine-tuning jobs on a dataset, through the `openai` SDK only (OpenAI or the embedded backend).

A start is claimed in storage before anything is sent, so a double click or a repeated delivery starts one
job; the bot's row is written before `jobs.create` and the job carries metadata naming its Slack thread, so
a job created just before a crash is found again on the backend (`adopt_unstarted`).
"""

from __future__ import annotations

import logging
import re
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import openai

from tunehouse.faults import hold_point

from .backend import refusal_text

log = logging.getLogger(__name__)

AUTO = "auto"
MAX_VALIDATION_SHARE = 0.5
SUFFIX_LENGTH = 40
DATASET_METADATA_KEY = "tunehouse_dataset"
START_METADATA_KEY = "tunehouse_start"


@dataclass
class JobOptions:
    """What a person may choose in the Options modal; `auto` leaves the choice to the backend."""

    base_model: str
    n_epochs: int | str = AUTO
    learning_rate_multiplier: float | str = AUTO
    batch_size: int | str = AUTO
    suffix: str | None = None
    validation_share: float = 0.0
    seed: int | None = None

    def hyperparameters(self) -> dict:
        return {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }


def parse_options(values: dict[str, str | None], default_model: str) -> tuple[JobOptions | None, dict[str, str]]:
    """The modal's raw strings → options, or errors by field (shown inline under each input by Slack)."""
    errors: dict[str, str] = {}

    def number(field: str, kind, low, high):
        raw = (values.get(field) or "").strip().lower()
        if raw in ("", AUTO):
            return AUTO
        try:
            value = kind(raw)
        except ValueError:
            errors[field] = f"A {'whole number' if kind is int else 'number'} or `auto`."
            return AUTO
        if not low <= value <= high:
            errors[field] = f"Between {low} and {high}, or `auto`."
        return value

    n_epochs = number("n_epochs", int, 1, 50)
    learning_rate = number("learning_rate_multiplier", float, 0.01, 10.0)
    batch_size = number("batch_size", int, 1, 256)
    suffix = (values.get("suffix") or "").strip() or None
    if suffix and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", suffix):
        errors["suffix"] = "Letters, digits, '.', '_' and '-' only, at most 64."
    share_raw = (values.get("validation_share") or "").strip().rstrip("%")
    share = 0.0
    if share_raw:
        try:
            share = float(share_raw) / 100
        except ValueError:
            errors["validation_share"] = "A percentage, such as 10."
        else:
            if not 0 <= share <= MAX_VALIDATION_SHARE:
                errors["validation_share"] = f"Between 0 and {MAX_VALIDATION_SHARE * 100:.0f} percent."
    seed_raw = (values.get("seed") or "").strip()
    seed = None
    if seed_raw:
        if seed_raw.isdigit() and int(seed_raw) <= 2_147_483_647:
            seed = int(seed_raw)
        else:
            errors["seed"] = "A whole number from 0 to 2147483647."
    if errors:
        return None, errors
    return (
        JobOptions(
            base_model=values.get("base_model") or default_model, n_epochs=n_epochs,
            learning_rate_multiplier=learning_rate, batch_size=batch_size, suffix=suffix,
            validation_share=share, seed=seed,
        ),
        {},
    )


def suffix_for_channel(channel_name: str | None) -> str | None:
    """A model-name suffix from the channel's name (`#Support Bot` → `support-bot`), as OpenAI allows."""
    if not channel_name:
        return None
    cleaned = re.sub(r"[^a-z0-9]+", "-", channel_name.lower()).strip("-")
    return cleaned[:SUFFIX_LENGTH].strip("-") or None


def split_validation(converted: Path, share: float, folder: Path) -> tuple[Path, Path | None]:
    """Hold out about `share` of the examples, chosen by a hash of each line: the same file always splits
    the same way, whoever starts it and however often."""
    if share <= 0:
        return converted, None
    lines = converted.read_bytes().splitlines(keepends=True)
    held = {i for i, line in enumerate(lines) if zlib.crc32(line) % 10_000 < share * 10_000}
    if not held:
        held = {len(lines) - 1}
    if len(held) == len(lines):
        held.discard(len(lines) - 1)
    train = folder / f"train-{round(share * 100)}.jsonl"
    valid = folder / f"valid-{round(share * 100)}.jsonl"
    train.write_bytes(b"".join(line for i, line in enumerate(lines) if i not in held))
    valid.write_bytes(b"".join(line for i, line in enumerate(lines) if i in held))
    return train, valid


@dataclass
class StartedJob:
    job_id: str
    status: str


class StartFailed(Exception):
    """The backend refused the upload or the job; the message is the backend's, for the thread."""


def create_backend_job(
    client: openai.OpenAI, *, dataset: dict, options: JobOptions, metadata: dict[str, str], folder: Path
) -> StartedJob:
    """Upload the converted file (and the held-out share) and create the job.

    Raises:
        StartFailed: the backend answered with an error (its message kept), or could not be reached.
    """
    train_path, valid_path = split_validation(Path(dataset["converted_path"]), options.validation_share, folder)
    stem = Path(dataset["filename"]).stem or "dataset"
    try:
        with open(train_path, "rb") as handle:
            training_file = client.files.create(file=(f"{stem}.jsonl", handle), purpose="fine-tune")
        hold_point("bot.training_file_created")
        validation_file = None
        if valid_path is not None:
            with open(valid_path, "rb") as handle:
                validation_file = client.files.create(file=(f"{stem}.validation.jsonl", handle), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=options.base_model,
            training_file=training_file.id,
            validation_file=validation_file.id if validation_file else openai.NOT_GIVEN,
            suffix=options.suffix or openai.NOT_GIVEN,
            seed=options.seed if options.seed is not None else openai.NOT_GIVEN,
            metadata=metadata,
            method={"type": "supervised", "supervised": {"hyperparameters": options.hyperparameters()}},
        )
    except openai.APIStatusError as error:
        raise StartFailed(refusal_text(error)) from error
    except openai.APIConnectionError as error:
        raise StartFailed(f"the fine-tuning backend could not be reached ({error.__class__.__name__})") from error
    return StartedJob(job_id=job.id, status=job.status)


def job_metadata(*, team: str, channel: str, thread_ts: str, user: str, dataset_id: str, start_id: str) -> dict[str, str]:
    """What lets a job be traced back to its Slack thread from the backend alone."""
    return {
        "slack_team": team or "",
        "slack_channel": channel,
        "slack_thread_ts": thread_ts,
        "slack_user": user,
        DATASET_METADATA_KEY: dataset_id,
        START_METADATA_KEY: start_id,
    }


def find_job_by_start(client: openai.OpenAI, start_id: str) -> str | None:
    """The backend's job created for one start of ours, if `jobs.create` went through before a crash."""
    for job in client.fine_tuning.jobs.list(limit=100, metadata={START_METADATA_KEY: start_id}):
        if (job.metadata or {}).get(START_METADATA_KEY) == start_id:
            return job.id
    return None


def jobs_naming_a_thread(client: openai.OpenAI, active: tuple[str, ...]) -> list:
    """The backend's jobs in one of the `active` statuses that carry the metadata of a start from Slack."""
    return [
        job for job in client.fine_tuning.jobs.list(limit=100).data  # the latest page: active jobs are recent
        if job.status in active and (job.metadata or {}).get(START_METADATA_KEY) and (job.metadata or {}).get("slack_channel")
    ]


def new_start_id() -> str:
    return uuid.uuid4().hex[:16]
