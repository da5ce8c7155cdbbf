"""Where a fine-tuning job stands, from what the `openai` SDK returns: plain data for the Slack glue.

The bot polls `jobs.retrieve`, `jobs.list_events` (and `jobs.checkpoints.list`) and feeds what comes back to
one `JobProgress` per job; the glue renders `status_line`, posts `milestones()` once each, paces its calls with
`Cadence` and its `chat.update`s with `Coalescer`. Nothing here knows Slack or the network, so every rule is a
unit test. Both backends' shapes are understood: OpenAI's (a metrics event every ~10 steps, validation losses,
`full_valid_*`) and tunehouse's embedded one (a metrics event per step with `tokens_per_second` and
`seconds_per_step`, a message while it prepares its base model, "Checkpoint created at step N").

Events are listed newest first and `after=<id>` pages to *older* events, so "what is new since the last poll"
means: ask for the newest page and stop at the last id seen (`new_events`).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("succeeded", "failed", "cancelled")
HYPERPARAMETER_NAMES = ("n_epochs", "batch_size", "learning_rate_multiplier")
STALLED_AFTER_SECONDS = 600.0
RATE_WINDOW_SECONDS = 300.0
"""The step rate is measured over this much of the most recent history: steadier than the last two events."""
STEP_SAMPLES_KEPT = 256

STARTED_MESSAGE = re.compile(r"fine-tuning job started", re.IGNORECASE)
PREPARING_MESSAGE = re.compile(r"preparing the model|converting .*model", re.IGNORECASE)
MODEL_READY_MESSAGE = re.compile(r"model ready", re.IGNORECASE)
CHECKPOINT_MESSAGE = re.compile(r"checkpoint created at step (\d+)", re.IGNORECASE)
NEW_MODEL_MESSAGE = re.compile(r"new fine-tuned model created: (\S+)", re.IGNORECASE)

STATUS_WORDS = {
    "validating_files": "Checking the files",
    "queued": "Queued",
    "running": "Training",
    "paused": "Paused",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


# --- plain data the glue renders -----------------------------------------------------------------------


@dataclass
class Checkpoint:
    """A saved state of the model during training; OpenAI's can be used as models (`model`)."""

    step: int
    train_loss: float | None = None
    valid_loss: float | None = None
    model: str | None = None


@dataclass(frozen=True)
class JobFailure:
    code: str | None
    message: str | None


@dataclass(frozen=True)
class Advice:
    """What to do about a failed job: `reason` is file | account | model | transient | unknown."""

    reason: str
    text: str
    offer_retry: bool
    """True where pressing "Fine-tune again" with the same file can work."""


@dataclass(frozen=True)
class Milestone:
    """One thread reply. `key` is unique and stable within a job: post each key exactly once."""

    key: str
    kind: str
    """started | checkpoint | succeeded | failed | cancelled"""
    text: str
    fields: dict[str, str] = field(default_factory=dict)
    """Label → value, in display order."""
    offer_retry: bool = False


# --- the job's progress --------------------------------------------------------------------------------


@dataclass
class JobProgress:
    """Everything the bot shows about one job, built only from what the SDK returned.

    State derived from events does not depend on the order they arrive in: metrics are kept per step, and
    "latest" means "at the highest step".
    """

    job_id: str | None = None
    base_model: str | None = None
    status: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    """When it first ran: the earliest of the first `running` poll, the "started" event, the first metrics."""
    finished_at: float | None = None
    estimated_finish: float | None = None
    trained_tokens: int | None = None
    fine_tuned_model: str | None = None
    error: JobFailure | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """n_epochs, batch_size, learning_rate_multiplier: `"auto"` until the backend has chosen."""
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    metrics_by_step: dict[int, dict[str, float]] = field(default_factory=dict)
    preparing_model: bool = False
    """The backend said it is preparing (converting) the base model, and training has not begun yet."""
    cancelled_by: str | None = None
    """Set by the glue, which knows who pressed Cancel; the backend does not say."""
    last_event_id: str | None = None
    last_event_at: float | None = None
    last_error_event: str | None = None
    seen_event_ids: set[str] = field(default_factory=set, repr=False)
    step_samples: list[tuple[float, int]] = field(default_factory=list, repr=False)
    """(created_at, step) of metrics events: the observed rate of steps."""
    training_began: bool = field(default=False, repr=False)

    # --- updates from the SDK ---

    def apply_job(self, job: Any, now: float | None = None) -> None:
        """Take a `FineTuningJob` (or a dict with its fields) from `jobs.retrieve` / `create` / `cancel`."""
        now = time.time() if now is None else now
        data = _as_dict(job)
        self.job_id = data.get("id") or self.job_id
        self.base_model = data.get("model") or self.base_model
        self.status = data.get("status") or self.status
        self.created_at = data.get("created_at") or self.created_at
        if self.status == "running":
            self._started(now)
        hyperparameters = _hyperparameters_of(data)
        if hyperparameters:
            self.hyperparameters = hyperparameters
        estimated_finish = _number(data.get("estimated_finish"))
        self.estimated_finish = estimated_finish if estimated_finish and estimated_finish > 0 else None
        self.trained_tokens = data.get("trained_tokens") or self.trained_tokens
        self.fine_tuned_model = data.get("fine_tuned_model") or self.fine_tuned_model
        error = _as_dict(data.get("error"))
        if error.get("code") or error.get("message"):  # OpenAI has sent all-null error objects on healthy jobs
            self.error = JobFailure(code=error.get("code"), message=error.get("message"))
        if self.status in TERMINAL:
            self.finished_at = data.get("finished_at") or self.finished_at or now
            self.estimated_finish = None

    def apply_events(self, events: list[Any]) -> list[dict]:
        """Take events (SDK objects or dicts) in any order; ones already seen are skipped.

        Returns the new ones, oldest first. Events within the same second keep the order given, which
        decides `last_event_id` among them; a wrong pick there only makes the next page repeat events,
        which are skipped again.
        """
        fresh = []
        for event in map(_as_dict, events):
            if event.get("id") in self.seen_event_ids:
                continue
            self.seen_event_ids.add(event["id"])
            fresh.append(event)
        fresh.sort(key=lambda event: event.get("created_at") or 0)
        for event in fresh:
            self._apply_event(event)
        return fresh

    def apply_checkpoints(self, checkpoints: list[Any]) -> None:
        """Take `FineTuningJobCheckpoint`s from `jobs.checkpoints.list` (OpenAI announces them only there)."""
        for checkpoint in map(_as_dict, checkpoints):
            step = int(checkpoint["step_number"])
            metrics = _as_dict(checkpoint.get("metrics"))
            known = self.checkpoints.setdefault(step, Checkpoint(step))
            known.train_loss = _number(metrics.get("train_loss"))
            known.valid_loss = _first_number(metrics, "valid_loss", "full_valid_loss")
            known.model = checkpoint.get("fine_tuned_model_checkpoint") or known.model

    def _apply_event(self, event: dict) -> None:
        created_at = _number(event.get("created_at"))
        if created_at is not None and (self.last_event_at is None or created_at >= self.last_event_at):
            self.last_event_at, self.last_event_id = created_at, event["id"]
        message = event.get("message") or ""
        if event.get("type") == "metrics" and event.get("data"):
            self._apply_metrics(_as_dict(event["data"]), created_at)
        elif STARTED_MESSAGE.search(message):
            self.training_began = True
            self.preparing_model = False
            self._started(created_at)
        elif PREPARING_MESSAGE.search(message) and not self.training_began:
            self.preparing_model = True
        elif MODEL_READY_MESSAGE.search(message):
            self.preparing_model = False
        elif match := CHECKPOINT_MESSAGE.search(message):
            step = int(match.group(1))
            self.checkpoints.setdefault(step, Checkpoint(step))
        elif match := NEW_MODEL_MESSAGE.search(message):
            self.fine_tuned_model = self.fine_tuned_model or match.group(1)
        if event.get("level") == "error" and message:
            self.last_error_event = message

    def _apply_metrics(self, data: dict, created_at: float | None) -> None:
        step = _number(data.get("step"))
        if step is None:
            return
        step = int(step)
        numbers = {key: value for key, value in ((k, _number(v)) for k, v in data.items()) if value is not None}
        self.metrics_by_step.setdefault(step, {}).update(numbers)
        self.training_began = True
        self.preparing_model = False
        if created_at is not None:
            self._started(created_at)
            self.step_samples.append((created_at, step))
            del self.step_samples[:-STEP_SAMPLES_KEPT]

    def _started(self, at: float | None) -> None:
        if at is not None and (self.started_at is None or at < self.started_at):
            self.started_at = at

    # --- what the events add up to ---

    @property
    def step(self) -> int | None:
        return max(self.metrics_by_step) if self.metrics_by_step else None

    @property
    def total_steps(self) -> int | None:
        total = self._latest("total_steps")
        return int(total) if total is not None else None

    @property
    def n_epochs(self) -> int | None:
        value = self.hyperparameters.get("n_epochs")
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def epoch(self) -> float | None:
        """The epoch in progress (1-based): from the step where epochs divide the steps evenly, else as reported."""
        step, total, n_epochs = self.step, self.total_steps, self.n_epochs
        if step is not None and total and n_epochs and total % n_epochs == 0:
            return float(min(n_epochs, max(1, math.ceil(step / (total // n_epochs)))))
        return self._latest("epoch")

    @property
    def train_loss(self) -> float | None:
        return self._latest("train_loss")

    @property
    def valid_loss(self) -> float | None:
        series = self.valid_loss_series
        return series[-1][1] if series else None

    @property
    def train_accuracy(self) -> float | None:
        return self._latest("train_mean_token_accuracy")

    @property
    def valid_accuracy(self) -> float | None:
        return self._latest("valid_mean_token_accuracy", "full_valid_mean_token_accuracy")

    @property
    def train_loss_series(self) -> list[tuple[int, float]]:
        return [(step, m["train_loss"]) for step, m in sorted(self.metrics_by_step.items()) if "train_loss" in m]

    @property
    def valid_loss_series(self) -> list[tuple[int, float]]:
        """`valid_loss` (a sample, measured often), or `full_valid_loss` at steps that report only that."""
        series = []
        for step, metrics in sorted(self.metrics_by_step.items()):
            loss = _first_number(metrics, "valid_loss", "full_valid_loss")
            if loss is not None:
                series.append((step, loss))
        return series

    @property
    def fraction(self) -> float | None:
        if self.status == "succeeded":
            return 1.0
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, max(0.0, self.step / self.total_steps))

    @property
    def hyperparameters_chosen(self) -> bool:
        return all(
            self.hyperparameters.get(name) not in (None, "auto") for name in HYPERPARAMETER_NAMES
        )

    def _latest(self, *keys: str) -> float | None:
        """The value of the first of `keys` present, at the highest step that reports one of them."""
        for step in sorted(self.metrics_by_step, reverse=True):
            value = _first_number(self.metrics_by_step[step], *keys)
            if value is not None:
                return value
        return None

    def _loss_at(self, step: int, key: str) -> float | None:
        """The loss at `step`, or the latest one before it (OpenAI reports every ~10 steps)."""
        earlier = [s for s in self.metrics_by_step if s <= step and key in self.metrics_by_step[s]]
        return self.metrics_by_step[max(earlier)][key] if earlier else None

    # --- time ---

    def elapsed_seconds(self, now: float | None = None) -> float | None:
        """Since training began (or since creation, before that), up to the end once finished."""
        begin = self.started_at or self.created_at
        if begin is None:
            return None
        end = self.finished_at if self.finished_at is not None else (time.time() if now is None else now)
        return max(0.0, end - begin)

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left: the backend's `estimated_finish` when it gives one, else the observed step rate."""
        if self.status != "running":
            return None
        now = time.time() if now is None else now
        if self.estimated_finish is not None:
            return max(0.0, self.estimated_finish - now)
        rate = self.steps_per_second()
        if rate is None or self.step is None or self.total_steps is None:
            return None
        measured_at = max(sample[0] for sample in self.step_samples)
        return max(0.0, (self.total_steps - self.step) / rate - (now - measured_at))

    def steps_per_second(self) -> float | None:
        """Over the recent window of the current run (a resumed job redoes steps: older samples timed another run)."""
        samples = sorted(self.step_samples)
        if len(samples) < 2:
            return None
        window = [samples[-1]]
        for sample in reversed(samples[:-1]):
            if sample[1] > window[0][1]:
                break
            if samples[-1][0] - sample[0] > RATE_WINDOW_SECONDS and len(window) >= 2:
                break
            window.insert(0, sample)
        (first_time, first_step), (last_time, last_step) = window[0], window[-1]
        if last_time <= first_time or last_step <= first_step:
            return None
        return (last_step - first_step) / (last_time - first_time)

    def stalled(self, now: float | None = None, after: float = STALLED_AFTER_SECONDS) -> bool:
        """A running job that has said nothing (no event) for `after` seconds."""
        if self.status != "running" or self.last_heard_at is None:
            return False
        return (time.time() if now is None else now) - self.last_heard_at > after

    @property
    def last_heard_at(self) -> float | None:
        """The latest sign of life: its newest event, or its start."""
        return max((t for t in (self.last_event_at, self.started_at) if t is not None), default=None)

    # --- thread replies ---

    def milestones(self) -> list[Milestone]:
        """Every milestone reached so far, in order; the glue posts the keys it has not posted yet."""
        found = []
        if self.started_at is not None and (self.hyperparameters_chosen or self.step is not None):
            found.append(self._started_milestone())
        found.extend(self._checkpoint_milestone(self.checkpoints[step]) for step in sorted(self.checkpoints))
        if self.status in TERMINAL:
            found.append(self._end_milestone())
        return found

    def _started_milestone(self) -> Milestone:
        fields = {"Base model": self.base_model or "unknown"}
        fields["Epochs"] = _plain(self.hyperparameters.get("n_epochs", "auto"))
        fields["Batch size"] = _plain(self.hyperparameters.get("batch_size", "auto"))
        fields["Learning rate multiplier"] = _plain(self.hyperparameters.get("learning_rate_multiplier", "auto"))
        text = (
            f"*Training started* on {fields['Base model']}: {fields['Epochs']} epochs, "
            f"batch size {fields['Batch size']}, learning rate multiplier {fields['Learning rate multiplier']}."
        )
        return Milestone(key="started", kind="started", text=text, fields=fields)

    def _checkpoint_milestone(self, checkpoint: Checkpoint) -> Milestone:
        step = checkpoint.step
        train_loss = checkpoint.train_loss if checkpoint.train_loss is not None else self._loss_at(step, "train_loss")
        valid_loss = checkpoint.valid_loss if checkpoint.valid_loss is not None else _first_number(
            self.metrics_by_step.get(step, {}), "valid_loss", "full_valid_loss"
        )
        where = f"step {step} of {self.total_steps}" if self.total_steps else f"step {step}"
        fields = {"Step": str(step)}
        text = f"*Checkpoint* at {where}"
        if train_loss is not None:
            fields["Training loss"] = f"{train_loss:.3f}"
            text += f": training loss {train_loss:.3f}"
        if valid_loss is not None:
            fields["Validation loss"] = f"{valid_loss:.3f}"
            text += f", validation loss {valid_loss:.3f}"
        if checkpoint.model:
            fields["Model"] = checkpoint.model
        return Milestone(key=f"checkpoint:{step}", kind="checkpoint", text=text + ".", fields=fields)

    def _end_milestone(self) -> Milestone:
        if self.status == "succeeded":
            fields = {"Model": self.fine_tuned_model or "unknown"}
            if self.train_loss is not None:
                fields["Final training loss"] = f"{self.train_loss:.3f}"
            if self.valid_loss is not None:
                fields["Final validation loss"] = f"{self.valid_loss:.3f}"
            if self.trained_tokens:
                fields["Trained tokens"] = f"{self.trained_tokens:,}"
            elapsed = self.elapsed_seconds()
            if elapsed is not None:
                fields["Took"] = format_duration(elapsed)
            text = f"*Fine-tuning succeeded.* The new model is {fields['Model']}."
            return Milestone(key="end", kind="succeeded", text=text, fields=fields)
        if self.status == "cancelled":
            by = f" by {self.cancelled_by}" if self.cancelled_by else ""
            return Milestone(key="end", kind="cancelled", text=f"*Fine-tuning was cancelled{by}.*")
        code = self.error.code if self.error else None
        message = (self.error.message if self.error else None) or self.last_error_event or "The backend gave no reason."
        advice = failure_advice(code, message)
        fields = {"Error": message}
        if code:
            fields["Code"] = code
        fields["What to do"] = advice.text
        text = f"*Fine-tuning failed:* {message}\n{advice.text}"
        return Milestone(key="end", kind="failed", text=text, fields=fields, offer_retry=advice.offer_retry)


# --- failures --------------------------------------------------------------------------------------------

FILE_CODES = {"invalid_training_file", "invalid_validation_file", "invalid_n_examples", "invalid_file"}
ACCOUNT_CODES = {"exceeded_quota", "insufficient_quota", "billing_hard_limit_reached", "billing_not_active"}
MODEL_CODES = {"model_not_found", "model_not_available", "invalid_model"}
TRANSIENT_CODES = {"server_error", "internal_error", "timeout", "training_crashed", "rate_limit_exceeded"}
FAILURE_PATTERNS = tuple(
    (reason, re.compile(pattern, re.IGNORECASE))
    for reason, pattern in (
        ("file", r"training file|validation file|file format|example\(s\)|moderation|jsonl"),
        ("account", r"quota|billing|credits?\b|payment"),
        ("model", r"model .*(does not exist|not available|not supported)|does not support fine-tuning"),
        ("transient", r"timed? ?out|server error|internal error|temporar|unavailable|overloaded|exited unexpectedly"),
    )
)
ADVICE = {
    "file": Advice("file", "Fix the problems in the file, then share it in the channel again: the bot checks it "
                   "and offers *Fine-tune* once it is valid.", offer_retry=False),
    "account": Advice("account", "Check the OpenAI account the bot uses (billing, credits and fine-tuning limits), "
                      "then press *Fine-tune again*.", offer_retry=True),
    "model": Advice("model", "This base model cannot be fine-tuned here: pick another one under *Options*.",
                    offer_retry=False),
    "transient": Advice("transient", "This looks temporary on the backend's side: press *Fine-tune again*.",
                        offer_retry=True),
    "unknown": Advice("unknown", "The error above is all the backend said. If it happens again, show it to "
                      "whoever runs the bot.", offer_retry=False),
}


def failure_advice(code: str | None, message: str | None) -> Advice:
    """What to tell the user, by the error's code first (stable), then by its message's words."""
    for reason, codes in (("file", FILE_CODES), ("account", ACCOUNT_CODES), ("model", MODEL_CODES),
                          ("transient", TRANSIENT_CODES)):
        if code in codes:
            return ADVICE[reason]
    for reason, pattern in FAILURE_PATTERNS:
        if message and pattern.search(message):
            return ADVICE[reason]
    return ADVICE["unknown"]


# --- events paging -------------------------------------------------------------------------------------


def new_events(page_newest_first: list[Any], last_seen_id: str | None) -> list[Any]:
    """The events on a newest-first page that are newer than `last_seen_id`, oldest first.

    When `last_seen_id` is not on the page, all of it is new: the caller then fetches older pages
    (`after=page[-1].id`) while `has_more`, until one holds it.
    """
    fresh = []
    for event in page_newest_first:
        if _as_dict(event).get("id") == last_seen_id:
            break
        fresh.append(event)
    return fresh[::-1]


# --- text ----------------------------------------------------------------------------------------------


def progress_bar(fraction: float, width: int = 20) -> str:
    """`▓▓▓▓░░░░░░ 40%`. Rounded down, so it shows full and 100% only when done."""
    fraction = min(1.0, max(0.0, fraction))
    filled = math.floor(fraction * width)
    return f"{'▓' * filled}{'░' * (width - filled)} {math.floor(fraction * 100)}%"


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if minutes < 10 else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def time_left(seconds: float) -> str:
    """Coarse on purpose: an estimate shown to the second reads as a promise."""
    if seconds < 60:
        return "less than a minute left"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


def status_line(progress: JobProgress, now: float | None = None) -> str:
    """The one paragraph the status message shows, updated in place."""
    now = time.time() if now is None else now
    word = STATUS_WORDS.get(progress.status or "", progress.status or "Submitted")
    if progress.status == "running" and progress.preparing_model:
        word = "Preparing the model"
    parts = [f"*{word}*"]
    if progress.fraction is not None:
        parts[0] += " " + progress_bar(progress.fraction)
    if progress.step is not None:
        parts.append(f"step {progress.step}" + (f" of {progress.total_steps}" if progress.total_steps else ""))
    if progress.epoch is not None:
        parts.append(f"epoch {progress.epoch:g}" + (f" of {progress.n_epochs}" if progress.n_epochs else ""))
    if progress.train_loss is not None:
        parts.append(f"training loss {progress.train_loss:.3f}")
    if progress.valid_loss is not None:
        parts.append(f"validation loss {progress.valid_loss:.3f}")
    elapsed = progress.elapsed_seconds(now)
    if elapsed is not None:
        parts.append(f"{format_duration(elapsed)} elapsed")
    eta = progress.eta_seconds(now)
    if eta is not None:
        parts.append(time_left(eta))
    if progress.trained_tokens:
        parts.append(f"{progress.trained_tokens:,} tokens trained")
    if progress.stalled(now):
        parts.append(f"no news from the backend for {format_duration(now - progress.last_heard_at)}")
    return " · ".join(parts)


# --- pacing --------------------------------------------------------------------------------------------


@dataclass
class Cadence:
    """How long to wait before polling a job again: often while it trains, rarely while it waits, and
    backing off exponentially (up to a cap) while the backend errs, back to normal after one success."""

    running_seconds: float = 2.0
    waiting_seconds: float = 10.0
    """validating_files, queued: these take minutes on OpenAI."""
    paused_seconds: float = 30.0
    first_retry_seconds: float = 2.0
    max_retry_seconds: float = 120.0
    consecutive_errors: int = 0

    def after_success(self, status: str | None) -> float | None:
        """Seconds until the next poll; None once the job is over (stop polling)."""
        self.consecutive_errors = 0
        if status in TERMINAL:
            return None
        if status == "running":
            return self.running_seconds
        if status == "paused":
            return self.paused_seconds
        return self.waiting_seconds

    def after_error(self, retry_after: float | None = None) -> float:
        """Seconds until the next try; the server's `Retry-After`, when given, is waited at least."""
        self.consecutive_errors += 1
        backoff = min(self.max_retry_seconds, self.first_retry_seconds * 2 ** (self.consecutive_errors - 1))
        return max(backoff, retry_after or 0.0)


@dataclass
class Coalescer:
    """At most one update per message every `interval_seconds`, however fast events come, and never a lost
    final state.

    For each new state of message `key`: `if coalescer.ready(key, now): send(); coalescer.mark(key, now)`.
    A state that was not ready stays pending: on a timer (or at `next_due_at()`), send the latest state of
    each key `due(now)` returns, and `mark` it.
    """

    interval_seconds: float = 3.0
    sent_at: dict[str, float] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)

    def ready(self, key: str, now: float) -> bool:
        """Whether a new state of `key` may be sent now; if not, it is remembered as pending."""
        sent = self.sent_at.get(key)
        if sent is None or now - sent >= self.interval_seconds:
            return True
        self.pending.add(key)
        return False

    def mark(self, key: str, now: float) -> None:
        self.sent_at[key] = now
        self.pending.discard(key)

    def due(self, now: float) -> list[str]:
        return sorted(key for key in self.pending if now - self.sent_at[key] >= self.interval_seconds)

    def next_due_at(self) -> float | None:
        return min((self.sent_at[key] + self.interval_seconds for key in self.pending), default=None)

    def forget(self, key: str) -> None:
        """For a message that will not change again (its job is over)."""
        self.sent_at.pop(key, None)
        self.pending.discard(key)


# --- shapes --------------------------------------------------------------------------------------------


def _as_dict(value: Any) -> dict:
    """SDK objects (pydantic) and plain dicts alike; None is empty."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return dict(vars(value))


def _hyperparameters_of(job: dict) -> dict[str, Any]:
    """The top-level object, or the method's (DPO jobs have come back with a null top level)."""
    chosen = _as_dict(job.get("hyperparameters"))
    if not chosen:
        method = _as_dict(job.get("method"))
        chosen = _as_dict(_as_dict(method.get(method.get("type") or "supervised")).get("hyperparameters"))
    return {name: chosen[name] for name in HYPERPARAMETER_NAMES if chosen.get(name) is not None}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _first_number(values: dict, *keys: str) -> float | None:
    for key in keys:
        number = _number(values.get(key))
        if number is not None:
            return number
    return None


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
