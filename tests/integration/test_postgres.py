"""The workflow with its metadata in Postgres instead of SQLite, on a throwaway cluster of the machine's own
Postgres (skipped where Postgres is not installed): files, an upload in parts, a job trained by the worker,
its events and checkpoints, chat with the result, a restart, and deleting the model."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import free_port, server_env
from tests.integration.test_jobs_api import long_dataset, wait_for

pytestmark = pytest.mark.integration


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))  # Debian keeps them off PATH
    return installed[-1].parent if installed else None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("Postgres is not installed here (no initdb)")
    root = tempfile.mkdtemp(prefix="tunehouse-pg-", dir="/tmp")
    run_as: list[str] = []
    if os.geteuid() == 0:  # Postgres refuses to run as root
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = f"{root}/data", free_port()
    subprocess.run(run_as + [str(bin_dir / "initdb"), "-D", data, "-A", "trust", "-U", "tunehouse"],
                   check=True, capture_output=True)
    options = f"-k {root} -p {port} -c listen_addresses=''"  # a unix socket in `root` only
    subprocess.run(run_as + [str(bin_dir / "pg_ctl"), "-D", data, "-w", "-l", f"{root}/log", "-o", options, "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://tunehouse@/postgres?host={root}&port={port}"
    finally:
        subprocess.run(run_as + [str(bin_dir / "pg_ctl"), "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_the_workflow_with_its_metadata_in_postgres(server_factory, postgres_url, tiny_model_dir, tmp_path):
    server = server_factory(TUNEHOUSE_DATABASE_URL=postgres_url)
    subprocess.run([sys.executable, "-m", "tunehouse", "models", "add", "tiny", str(tiny_model_dir),
                    "--data-dir", str(server.data_dir)],
                   check=True, capture_output=True, env={**server_env(), "TUNEHOUSE_DATABASE_URL": postgres_url})
    client = server.client()
    validation = client.files.create(file=("valid.jsonl", long_dataset(4)), purpose="fine-tune")
    training = tmp_path / "train.jsonl"
    training.write_bytes(long_dataset(8))
    upload = client.uploads.upload_file_chunked(file=training, mime_type="text/jsonl", purpose="fine-tune",
                                                part_size=200)
    assert upload.status == "completed"
    assert not (server.data_dir / "tunehouse.db").exists()  # the metadata really is in Postgres
    job = client.fine_tuning.jobs.create(training_file=upload.file.id, validation_file=validation.id, model="tiny",
                                         hyperparameters={"n_epochs": 2, "batch_size": 4})
    job = wait_for(client, job.id, ("succeeded", "failed"), timeout=300)
    assert job.status == "succeeded", job.error
    assert any("tokens/s" in event.message for event in client.fine_tuning.jobs.list_events(job.id, limit=100))
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and checkpoints[0].fine_tuned_model_checkpoint.startswith(job.fine_tuned_model)
    answer = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=3,
                                            messages=[{"role": "user", "content": "Number 3?"}])
    assert answer.usage.completion_tokens >= 1

    with pytest.raises(openai.BadRequestError) as err:  # Postgres cannot hold a NUL: a 400 that says so
        client.chat.completions.create(model="tiny\x00", messages=[{"role": "user", "content": "hi"}])
    assert "NUL" in err.value.body["message"]

    server.stop(kill=True)
    client = server_factory(data_dir=server.data_dir, TUNEHOUSE_DATABASE_URL=postgres_url).client()
    assert client.fine_tuning.jobs.retrieve(job.id).status == "succeeded"
    assert client.files.content(upload.file.id).content == training.read_bytes()
    assert job.fine_tuned_model in {model.id for model in client.models.list()}
    client.models.delete(job.fine_tuned_model)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(job.fine_tuned_model)
