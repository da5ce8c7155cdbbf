"""A fine-tuning job and the Slack thread that follows it: the start, then one poller for every active job.

The start posts the status message at once (before the upload), so the person who clicked sees something
within a second; the poller then updates that one message in place (at most once every 3 s) and posts the
milestones as replies. Everything the thread has shown is in storage (the status message's ts, the last
event seen, each milestone's claim), so a restarted bot resumes every thread and posts nothing twice.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import openai
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tunehouse.faults import hold_point

from . import blocks
from .chart import chart_alt_text, loss_chart_png
from .jobs import (
    DATASET_METADATA_KEY,
    START_METADATA_KEY,
    JobOptions,
    StartFailed,
    create_backend_job,
    find_job_by_start,
    job_metadata,
    jobs_naming_a_thread,
    new_start_id,
)
from .progress import TERMINAL, Cadence, Coalescer, JobProgress, new_events, status_line
from .slack_ops import conversation_gone, post_in_thread, tell_directly

log = logging.getLogger(__name__)

START_CLAIM = "start:"


def start_job(
    services, client: WebClient, *, dataset: dict, user: str, options: JobOptions, again: bool = False
) -> dict | None:
    """Start one job on a dataset. Without `again`, a dataset gets one job however many clicks or deliveries
    arrive; returns the job row, or None when this start was a repeat of one already under way."""
    start_id = new_start_id()
    claim = START_CLAIM + dataset["id"] + (f":{start_id}" if again else "")
    if not services.storage.claim(claim, {"start_id": start_id}):
        return None
    row = services.storage.save_job(
        dataset_id=dataset["id"], team_id=dataset["team_id"], channel=dataset["channel"],
        thread_ts=dataset["thread_ts"], user=user, base_model=options.base_model,
        options=options.__dict__, status="uploading", start_id=start_id,
    )
    status_ts = post_in_thread(
        client, channel=row["channel"], thread_ts=row["thread_ts"], **blocks.job_starting(row, dataset)
    )
    services.storage.save_job(id=row["id"], status_ts=status_ts)
    metadata = job_metadata(
        team=row["team_id"] or "", channel=row["channel"], thread_ts=row["thread_ts"], user=user,
        dataset_id=dataset["id"], start_id=start_id,
    )
    try:
        started = create_backend_job(
            services.backend.client, dataset=dataset, options=options, metadata=metadata,
            folder=Path(dataset["converted_path"]).parent,
        )
    except StartFailed as failure:
        finished = services.storage.save_job(id=row["id"], status="failed", error=str(failure), finished_at=time.time())
        _update(client, finished, blocks.job_start_failed(finished, str(failure)))
        services.storage.finish_claim(claim)
        return finished
    hold_point("bot.job_created")
    row = services.storage.save_job(id=row["id"], job_id=started.job_id, status=started.status)
    services.storage.finish_claim(claim)
    services.poller.wake()
    return row


def adopt_unstarted(services, client: WebClient) -> None:
    """Starts that a crash cut between `jobs.create` and storing its id: find the job by its metadata and
    follow it; a start that never reached the backend is reported as not started, and its dataset's
    Fine-tune button works again."""
    storage = services.storage
    for key, payload in storage.pending_claims(START_CLAIM):
        if storage.job_of_start(payload.get("start_id", "")) is None:
            storage.release_claim(key)  # the crash came before the job's row: nothing was started
    for row in storage.unstarted_jobs():
        try:
            job_id = find_job_by_start(services.backend.client, row["start_id"]) if row.get("start_id") else None
        except Exception:  # the backend is still starting or down: the next start-up tries again
            log.exception("could not look for the job of start %s", row.get("start_id"))
            continue
        claims = [START_CLAIM + row["dataset_id"], f"{START_CLAIM}{row['dataset_id']}:{row.get('start_id')}"]
        if job_id:
            log.info("adopted %s, created before the last run stopped", job_id)
            services.storage.save_job(id=row["id"], job_id=job_id)
            for claim in claims:
                storage.finish_claim(claim)
            continue
        for claim in claims:
            storage.release_claim(claim)
        finished = services.storage.save_job(
            id=row["id"], status="failed", error="the bot stopped before the job was created", finished_at=time.time()
        )
        if finished.get("status_ts"):
            _update(client, finished, blocks.job_start_failed(finished, "the bot restarted before the job was created; click Fine-tune again"))


def adopt_unknown(services, client: WebClient) -> None:
    """Jobs running on the backend for a Slack thread the bot has no record of (its `bot.db` lost, or
    restored from an older backup): followed from now on, with a new status message in their thread."""
    storage = services.storage
    try:
        found = jobs_naming_a_thread(services.backend.client, blocks.ACTIVE_STATUSES)
    except openai.OpenAIError:
        log.exception("could not look for jobs this bot has no record of")
        return
    for job in found:
        metadata = job.metadata
        if storage.job(job.id) or storage.job_of_start(metadata[START_METADATA_KEY]):
            continue
        row = storage.save_job(
            dataset_id=metadata.get(DATASET_METADATA_KEY), team_id=metadata.get("slack_team"),
            channel=metadata["slack_channel"], thread_ts=metadata["slack_thread_ts"], user=metadata.get("slack_user"),
            base_model=job.model, status=job.status, job_id=job.id, start_id=metadata[START_METADATA_KEY],
        )
        log.info("adopted %s, a job this bot had no record of, in %s", job.id, row["channel"])
        try:
            status_ts = post_in_thread(client, channel=row["channel"], thread_ts=row["thread_ts"], **blocks.job_status(
                row, f"Following `{job.id}` again: it was started here before my records were lost ({job.status})."))
        except SlackApiError as error:
            log.warning("could not post in the thread of %s: %s", job.id, error.response.get("error"))
            continue
        storage.save_job(id=row["id"], status_ts=status_ts)


def _update(client: WebClient, row: dict, message: dict) -> None:
    try:
        client.chat_update(channel=row["channel"], ts=row["status_ts"], **message)
    except SlackApiError as error:
        log.error("could not update the status of %s: %s", row["id"], error.response.get("error"))


class JobPoller:
    """One thread follows every active job: polls the backend at a pace that suits each job's status, posts
    each milestone once, and updates each status message at most once every 3 s, the latest state last."""

    def __init__(self, services, client: WebClient):
        self.services = services
        self.client = client
        self._progress: dict[str, JobProgress] = {}
        self._cadence: dict[str, Cadence] = {}
        self._next_poll: dict[str, float] = {}
        self._coalescer = Coalescer(STATUS_UPDATE_INTERVAL_S)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def wake(self) -> None:
        """A job was started, cancelled or paused: look at it now rather than at its next turn."""
        self._next_poll.clear()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for row in self.services.storage.active_jobs():
                if self._next_poll.get(row["id"], 0) <= now:
                    self._follow(row)
            for key in self._coalescer.due(time.time()):
                row = self.services.storage.job(key)
                if row and not row.get("finished_at"):
                    self._follow(row)  # a fresh look first: the update shows the job as it is now
            self._wake.wait(self._sleep_time())
            self._wake.clear()

    def _sleep_time(self) -> float:
        upcoming = list(self._next_poll.values())
        due_at = self._coalescer.next_due_at()
        if due_at is not None:
            upcoming.append(due_at)
        if not upcoming:
            return IDLE_POLL_S
        return min(IDLE_POLL_S, max(0.05, min(upcoming) - time.time()))

    def _follow(self, row: dict) -> None:
        """One job's turn; whatever goes wrong with it (Slack refusing a post after its retries) is tried again
        later, and never stops the thread that follows every other job."""
        try:
            self._poll(row)
        except Exception:
            log.exception("following %s; trying again shortly", row["id"])
            self._next_poll[row["id"]] = time.time() + self._cadence.setdefault(row["id"], Cadence()).after_error()

    def _poll(self, row: dict) -> None:
        key = row["id"]
        progress = self._progress.setdefault(key, JobProgress(job_id=row["job_id"], base_model=row["base_model"]))
        cadence = self._cadence.setdefault(key, Cadence())
        client = self.services.backend.client
        try:
            job = client.fine_tuning.jobs.retrieve(row["job_id"])
            events = _events_since(client, row["job_id"], progress.last_event_id)
            progress.apply_job(job)
            progress.apply_events(events)
            if job.status in TERMINAL or any(CHECKPOINT_WORDS in (e.message or "").lower() for e in events):
                progress.apply_checkpoints(list(client.fine_tuning.jobs.checkpoints.list(row["job_id"], limit=100)))
        except openai.APIStatusError as error:
            self._next_poll[key] = time.time() + cadence.after_error(_retry_after(error))
            log.warning("polling %s: the backend answered %s", row["job_id"], error.status_code)
            return
        except openai.APIConnectionError:
            self._next_poll[key] = time.time() + cadence.after_error()
            log.warning("polling %s: the backend could not be reached", row["job_id"])
            return
        row = self.services.storage.save_job(
            id=key, status=job.status, last_event_id=progress.last_event_id,
            fine_tuned_model=job.fine_tuned_model, error=progress.error.message if progress.error else None,
        )
        self._post_milestones(row, progress)
        wait = cadence.after_success(job.status)
        if wait is None:
            self._show_status(row, force=True)
            self.services.storage.save_job(id=key, finished_at=time.time())
            self._forget(key)
            return
        self._next_poll[key] = time.time() + wait
        self._show_status(row)

    def _show_status(self, row: dict, force: bool = False) -> None:
        now = time.time()
        progress = self._progress.get(row["id"])
        if progress is None or not row.get("status_ts"):
            return
        if not force and not self._coalescer.ready(row["id"], now):
            return
        self._coalescer.mark(row["id"], now)
        _update(self.client, row, blocks.job_status(row, status_line(progress, now)))

    def _post_milestones(self, row: dict, progress: JobProgress) -> None:
        for step in progress.milestones():
            claim = f"milestone:{row['id']}:{step.key}"
            if not self.services.storage.claim(claim):
                continue
            try:
                if step.key == "end":
                    self._post_end(row, progress, step)
                else:
                    message = blocks.milestone(step.text, step.fields, compact=step.kind == "checkpoint")
                    post_in_thread(self.client, channel=row["channel"], thread_ts=row["thread_ts"], **message)
            except SlackApiError as error:
                if not conversation_gone(error):
                    self.services.storage.release_claim(claim)  # posted at the next turn
                    raise
                log.warning("%s of %s not posted: Slack answered %s", step.key, row["id"], error.response["error"])
            self.services.storage.finish_claim(claim)

    def _post_end(self, row: dict, progress: JobProgress, step) -> None:
        succeeded = step.kind == "succeeded"
        message = blocks.job_end(row, step.text, step.fields, succeeded=succeeded, offer_retry=step.offer_retry)
        try:
            self.client.chat_postMessage(channel=row["channel"], thread_ts=row["thread_ts"], reply_broadcast=True, **message)
        except SlackApiError as error:
            if conversation_gone(error):
                self._tell_starter(row, message["text"])  # the starter still hears of it
            raise
        if succeeded and progress.train_loss_series:
            self._upload_chart(row, progress)
        self._tell_starter(row, message["text"])

    def _upload_chart(self, row: dict, progress: JobProgress) -> None:
        train, valid = progress.train_loss_series, progress.valid_loss_series
        try:
            png = loss_chart_png(train, valid, title=f"{row['fine_tuned_model'] or row['job_id']}: loss")
            self.client.files_upload_v2(
                content=png, filename=f"{row['job_id']}-loss.png", title="Loss over the training steps",
                alt_txt=chart_alt_text(train, valid), channel=row["channel"], thread_ts=row["thread_ts"],
            )
        except (SlackApiError, ValueError) as error:
            log.error("could not post the loss chart of %s: %s", row["job_id"], error)

    def _tell_starter(self, row: dict, text: str) -> None:
        """A direct message to whoever started the job, so they hear of its end wherever they are."""
        if not row.get("user"):
            return
        try:
            link = self.client.chat_getPermalink(channel=row["channel"], message_ts=row["thread_ts"]).get("permalink")
        except SlackApiError:  # the thread is out of the bot's reach: the news goes without its link
            link = None
        tell_directly(self.client, row["user"], text + (f"\n<{link}|The job's thread>" if link else ""))

    def _forget(self, key: str) -> None:
        self._progress.pop(key, None)
        self._cadence.pop(key, None)
        self._next_poll.pop(key, None)
        self._coalescer.forget(key)


STATUS_UPDATE_INTERVAL_S = 3.0
IDLE_POLL_S = 5.0
EVENT_PAGE = 100
CHECKPOINT_WORDS = "checkpoint"


def _events_since(client: openai.OpenAI, job_id: str, last_seen: str | None) -> list:
    """The events after `last_seen`, oldest first: the newest page, then older pages until `last_seen`."""
    collected = []
    page = client.fine_tuning.jobs.list_events(job_id, limit=EVENT_PAGE)
    while True:
        data = list(page.data)
        fresh = new_events(data, last_seen)
        collected = fresh + collected
        if len(fresh) < len(data) or not data or not page.has_more:
            return collected
        page = client.fine_tuning.jobs.list_events(job_id, limit=EVENT_PAGE, after=data[-1].id)


def _retry_after(error: openai.APIStatusError) -> float | None:
    value = error.response.headers.get("retry-after") if error.response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None
