"""The durable queue: concurrent workers never take the same job; dead workers' jobs are re-queued."""

from __future__ import annotations

import threading

from sqlalchemy import select

from tunehouse.jobs.worker import Worker
from tunehouse.services import open_services
from tunehouse.settings import Settings
from tunehouse.store.db import Job


def make_job(services, job_id: str, status: str = "queued", worker_id: str | None = None) -> None:
    with services.db.session() as session:
        session.add(Job(
            id=job_id, project="p", model="m", base_model="m", training_file="file-x", status=status,
            created_at=0, output_model=f"ft:m:p::{job_id[-8:]}", hyperparameters={}, seed=0, result_files=[],
            worker_id=worker_id,
        ))


def test_each_queued_job_is_claimed_by_exactly_one_worker(tmp_path):
    services = open_services(Settings(data_dir=tmp_path, model_cache_dir=tmp_path / "models"))
    for i in range(20):
        make_job(services, f"ftjob-{i:08d}")
    workers = [Worker(services) for _ in range(4)]
    for number, worker in enumerate(workers):
        worker.worker_id = f"test:{number}"
    claimed: list[tuple[str, str]] = []
    lock = threading.Lock()

    def drain(worker: Worker) -> None:
        while (job := worker._claim("queued", "running")) is not None:
            with lock:
                claimed.append((job.id, worker.worker_id))

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [job_id for job_id, _ in claimed]
    assert sorted(ids) == [f"ftjob-{i:08d}" for i in range(20)]  # all claimed, none twice
    with services.db.session() as session:
        assert set(session.scalars(select(Job.status))) == {"running"}


def test_jobs_of_a_dead_worker_are_requeued_and_live_ones_left_alone(tmp_path):
    import socket

    services = open_services(Settings(data_dir=tmp_path, model_cache_dir=tmp_path / "models"))
    host = socket.gethostname()
    make_job(services, "ftjob-dead0001", "running", worker_id=f"{host}:999999999")
    make_job(services, "ftjob-alive001", "running", worker_id=f"{host}:1")  # pid 1 is always alive
    make_job(services, "ftjob-paused01", "paused", worker_id=f"{host}:999999999")
    assert Worker(services).recover() == 1
    with services.db.session() as session:
        rows = {job.id: (job.status, job.worker_id) for job in session.scalars(select(Job))}
    assert rows["ftjob-dead0001"] == ("queued", None)
    assert rows["ftjob-alive001"] == ("running", f"{host}:1")
    assert rows["ftjob-paused01"] == ("paused", None)
