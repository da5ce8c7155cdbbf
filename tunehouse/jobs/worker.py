"""The durable queue's consumer: validates new jobs' files, claims queued jobs, runs each in a child process.

    tunehouse worker [--data-dir DIR]        # `tunehouse serve` starts one of these by default

Jobs live in the database; a worker claims one with a conditional UPDATE (status and `worker_id` checked in
the same statement), so several workers, on one machine or many sharing Postgres, never take the same job.
While it supervises a job it refreshes the job's heartbeat. At start (and every half minute) it re-queues
jobs whose worker died (same machine and process gone, or no heartbeat for two minutes); they resume from
their last checkpoint.

Each job trains in a process of its own, started ahead: while the worker is idle, the next job's runner
imports the training libraries, loads the default model and waits to be told which job it has (runner.py
`--next-job`), so a job starts training seconds sooner than from a cold process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from sqlalchemy import select, update

from ..data.validate import PROMPT_COMPLETION, CHAT, FORMAT_LABELS, validate_dataset
from ..faults import hold_point
from ..processes import die_with_parent
from ..services import Services
from ..settings import Settings
from ..store import files as file_store
from ..store.db import Job
from .service import add_event

log = logging.getLogger("tunehouse.worker")

HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 120.0
RECOVER_EVERY_SECONDS = 30.0
CANCEL_GRACE_SECONDS = 10.0
PAUSE_GRACE_SECONDS = 300.0
SUPERVISED_FORMATS = (CHAT, PROMPT_COMPLETION)
NEXT_JOB = "--next-job"
"""The runner's argument that makes it import first and then read its job id from stdin."""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process the same data dir, database and model cache."""
    env = dict(os.environ)
    env["TUNEHOUSE_DATA_DIR"] = str(settings.data_dir.resolve())
    env["TUNEHOUSE_DATABASE_URL"] = settings.resolved_database_url
    env["TUNEHOUSE_MODEL_CACHE_DIR"] = str(settings.resolved_model_cache_dir.resolve())
    return env


class Worker:
    def __init__(self, services: Services, poll_seconds: float = 0.2) -> None:
        self.services = services
        self.db = services.db
        self.poll_seconds = poll_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self.job_queued = threading.Event()
        """Set by the validating thread when it queues a job: the training loop claims it without waiting a poll."""
        self.next_runner: subprocess.Popen | None = None
        """A runner process started ahead, its imports done or under way, waiting on stdin for a job id."""
        self._last_recover = 0.0

    # --- the loop ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Validate in one thread and train in this one, so new jobs' files are checked (and bad ones
        failed) within seconds even while a long job trains."""
        log.info("worker %s started on %s", self.worker_id, self.services.settings.data_dir)
        validator = threading.Thread(target=self._validate_loop, name="tunehouse-validate", daemon=True)
        validator.start()
        self._start_next_runner()
        while not self.stopping.is_set():
            if time.monotonic() - self._last_recover > RECOVER_EVERY_SECONDS:
                self.recover()
            self.job_queued.clear()
            if not self.train_next():
                self.job_queued.wait(self.poll_seconds)
        if self.next_runner is not None:
            self.next_runner.kill()
            self.next_runner.wait()
        validator.join(timeout=10)

    def _validate_loop(self) -> None:
        while not self.stopping.is_set():
            if not self.validate_next():
                self.stopping.wait(self.poll_seconds)

    def stop(self, *_args) -> None:
        self.stopping.set()
        self.job_queued.set()

    # --- claiming ---------------------------------------------------------------------------------------

    def _claim(self, status: str, new_status: str) -> Job | None:
        """Atomically take the oldest unowned job in `status`; None if there is none or another worker won."""
        with self.db.session() as session:
            candidate = session.scalar(
                select(Job.id).where(Job.status == status, Job.worker_id.is_(None)).order_by(Job.seq).limit(1)
            )
            if candidate is None:
                return None
            claimed = session.execute(
                update(Job)
                .where(Job.id == candidate, Job.status == status, Job.worker_id.is_(None))
                .values(status=new_status, worker_id=self.worker_id, heartbeat_at=time.time())
            )
            if claimed.rowcount != 1:
                return None
            return session.scalar(select(Job).where(Job.id == candidate))

    def _release(self, job_id: str, **values) -> None:
        with self.db.session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(worker_id=None, **values))

    # --- validating_files -> queued | failed -----------------------------------------------------------

    def validate_next(self) -> bool:
        job = self._claim("validating_files", "validating_files")
        if job is None:
            return False
        hold_point("validation")
        error = self._validate_files(job)
        if error is not None:
            self._release(job.id, status="failed", error=error, finished_at=int(time.time()))
            add_event(self.db, job.id, error["message"], level="error")
            add_event(self.db, job.id, "The job failed")
        else:
            with self.db.session() as session:  # a cancel during validation wins
                session.execute(
                    update(Job).where(Job.id == job.id, Job.status == "validating_files").values(status="queued")
                )
            self._release(job.id)
            add_event(self.db, job.id, "Files validated, moving job to queued state")
            self.job_queued.set()
        return True

    def _validate_files(self, job: Job) -> dict | None:
        for param, file_id in (("training_file", job.training_file), ("validation_file", job.validation_file)):
            if file_id is None:
                continue
            what = "Training file" if param == "training_file" else "Validation file"
            path = self.services.blobs.path(file_store.blob_key(file_id))
            if not path.exists():
                return _file_error(param, f"{what} {file_id} was deleted before the job could use it.")
            report = validate_dataset(path)
            if not report.ok:
                return _file_error(param, report.summary(f"{what} {file_id}"))
            if report.format not in SUPERVISED_FORMATS:
                return _file_error(
                    param,
                    f"{what} {file_id} is in the {FORMAT_LABELS[report.format]} format, but the job uses the "
                    "'supervised' method, which needs chat messages or prompt/completion pairs.",
                )
            for warning in report.warnings:
                add_event(self.db, job.id, f"{what}: {warning}", level="warn")
        return None

    # --- queued -> running -> (the child decides) -------------------------------------------------------

    def train_next(self) -> bool:
        job = self._claim("queued", "running")
        if job is None:
            return False
        hold_point("claim")
        log.info("training %s", job.id)
        self._supervise(job.id, self._runner_for(job.id))
        self._start_next_runner()
        return True

    def _runner_for(self, job_id: str) -> subprocess.Popen:
        """The runner started ahead, told its job; a new process if there is none or it has died."""
        runner, self.next_runner = self.next_runner, None
        if runner is not None and runner.poll() is None:
            try:
                runner.stdin.write(job_id + "\n")
                runner.stdin.close()
                return runner
            except BrokenPipeError:  # it died just now
                runner.wait()
        return self._start_runner(job_id)

    def _start_next_runner(self) -> None:
        """Start the next job's runner while nothing trains, so its imports do not delay that job. From the
        main thread only: the parent-death signal fires when the thread that started a child ends."""
        if self.next_runner is None and not self.stopping.is_set():
            self.next_runner = self._start_runner(NEXT_JOB)

    def _start_runner(self, argument: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tunehouse.jobs.runner", argument],
            env=settings_env(self.services.settings),
            preexec_fn=die_with_parent,
            stdin=subprocess.PIPE if argument == NEXT_JOB else None,
            text=True,
        )

    def _supervise(self, job_id: str, process: subprocess.Popen) -> None:
        stop_seen_at: float | None = None
        while process.poll() is None:
            if self.stopping.is_set():  # worker shutting down: hand the job back, it resumes elsewhere
                process.kill()
                process.wait()
                with self.db.session() as session:
                    session.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(status="queued"))
                self._release(job_id)
                add_event(self.db, job_id, "Worker stopped; the job is queued again and will resume from its last checkpoint")
                return
            with self.db.session() as session:
                session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=time.time()))
                status = session.scalar(select(Job.status).where(Job.id == job_id))
            if status in ("cancelled", "paused"):
                stop_seen_at = stop_seen_at or time.monotonic()
                grace = CANCEL_GRACE_SECONDS if status == "cancelled" else PAUSE_GRACE_SECONDS
                if time.monotonic() - stop_seen_at > grace:
                    process.kill()
            try:
                process.wait(timeout=HEARTBEAT_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        with self.db.session() as session:
            status = session.scalar(select(Job.status).where(Job.id == job_id))
        if status == "running":  # the child died without saying why (killed, out of memory, ...)
            error = {
                "code": "training_crashed",
                "message": f"The training process exited unexpectedly (exit code {process.returncode}).",
                "param": None,
            }
            self._release(job_id, status="failed", error=error, finished_at=int(time.time()), estimated_finish=None)
            add_event(self.db, job_id, error["message"], level="error")
            return
        self._release(job_id)

    # --- recovery ---------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Re-queue jobs held by dead workers. Returns how many were recovered."""
        self._last_recover = time.monotonic()
        recovered = 0
        with self.db.session() as session:
            held = session.scalars(select(Job).where(Job.worker_id.is_not(None))).all()
        for job in held:
            if job.worker_id == self.worker_id or not self._owner_dead(job):
                continue
            new_status = "queued" if job.status == "running" else job.status
            with self.db.session() as session:
                changed = session.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.worker_id == job.worker_id)
                    .values(worker_id=None, status=new_status)
                )
            if changed.rowcount == 1 and job.status == "running":
                recovered += 1
                add_event(self.db, job.id, "The worker running this job stopped; the job is queued again and will resume from its last checkpoint", level="warn")
        return recovered

    def _owner_dead(self, job: Job) -> bool:
        host, _, pid = job.worker_id.rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            return not _pid_alive(int(pid))
        return job.heartbeat_at is None or time.time() - job.heartbeat_at > STALE_AFTER_SECONDS


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _file_error(param: str, message: str) -> dict:
    code = "invalid_training_file" if param == "training_file" else "invalid_validation_file"
    return {"code": code, "message": message, "param": param}


def run_worker(services: Services) -> None:
    worker = Worker(services)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()
