"""Every route, enumerated from the app itself: no key or a wrong key is 401 once keys exist, and another
project's objects (files, contents, uploads, jobs, events, checkpoints, fine-tuned models) do not exist for
a caller."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.test_auth import create_key
from tests.integration.test_jobs_api import register_tiny, wait_for
from tunehouse.api.app import build_app
from tunehouse.settings import Settings

pytestmark = pytest.mark.integration

DATASET = b'{"prompt": "a", "completion": " b"}\n{"prompt": "c", "completion": " d"}\n'


def v1_routes(tmp_path) -> list[tuple[str, str]]:
    """(method, path template) of every /v1 operation, from the app's own OpenAPI document."""
    app = build_app(Settings(data_dir=tmp_path / "enumerate", model_cache_dir=tmp_path / "models"))
    return [(method.upper(), path) for path, operations in app.openapi()["paths"].items()
            if path.startswith("/v1") for method in operations]


def test_every_route_refuses_bad_keys_and_hides_other_projects(server_factory, tiny_model_dir, tmp_path):
    server = server_factory()
    register_tiny(server, tiny_model_dir)
    alpha, beta = create_key(server.data_dir, "alpha"), create_key(server.data_dir, "beta")
    owner = server.client(api_key=alpha)
    file_id = owner.files.create(file=DATASET, purpose="fine-tune").id
    job = owner.fine_tuning.jobs.create(training_file=file_id, model="tiny", hyperparameters={"n_epochs": 1})
    job = wait_for(owner, job.id, ("succeeded", "failed"), timeout=120)
    assert job.status == "succeeded"
    upload = owner.uploads.create(bytes=len(DATASET), filename="x.jsonl", mime_type="text/jsonl",
                                  purpose="fine-tune")
    part = owner.uploads.parts.create(upload.id, data=DATASET)
    values = {"file_id": file_id, "job_id": job.id, "model": job.fine_tuned_model, "upload_id": upload.id}
    bodies = {
        "/v1/uploads": {"filename": "y.jsonl", "purpose": "fine-tune", "bytes": 1, "mime_type": "text/jsonl"},
        "/v1/uploads/{upload_id}/complete": {"part_ids": [part.id]},
        "/v1/chat/completions": {"model": job.fine_tuned_model, "messages": [{"role": "user", "content": "hi"}],
                                 "max_tokens": 2},
        "/v1/completions": {"model": job.fine_tuned_model, "prompt": "a", "max_tokens": 2},
        "/v1/fine_tuning/jobs": {"model": "tiny", "training_file": file_id},
    }
    routes = v1_routes(tmp_path)
    assert len(routes) >= 21
    checked = 0
    for method, template in routes:
        path = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], template)
        url = f"http://127.0.0.1:{server.port}{path}"
        kwargs = {"json": bodies[template]} if template in bodies else {}
        if template == "/v1/files" and method == "POST":
            kwargs = {"files": {"file": ("x.jsonl", DATASET)}, "data": {"purpose": "fine-tune"}}
        if template == "/v1/uploads/{upload_id}/parts":
            kwargs = {"files": {"data": ("blob", DATASET)}}
        for headers in ({}, {"Authorization": "Bearer sk-th-not-a-real-key-000000000000"}):
            response = httpx.request(method, url, headers=headers, timeout=60, **kwargs)
            assert response.status_code == 401, (method, template, response.text)
            assert response.json()["error"]["code"] == "invalid_api_key"
        response = httpx.request(method, url, headers={"Authorization": f"Bearer {beta}"}, timeout=60, **kwargs)
        text = response.text
        if "{" in template or template in ("/v1/chat/completions", "/v1/completions"):
            assert response.status_code == 404, (method, template, text)  # as if it did not exist
        elif template == "/v1/fine_tuning/jobs" and method == "POST":
            assert response.status_code == 400 and "does not exist" in text  # alpha's file is not beta's
        elif method == "GET":
            assert response.status_code == 200
            assert file_id not in text and job.id not in text and job.fine_tuned_model not in text
        checked += 1
    assert checked == len(routes)
    log = (server.data_dir.parent / f"server-{server.port}.log").read_text()
    assert alpha not in log and beta not in log  # keys are never logged
    # and the owner still has everything
    assert owner.files.content(file_id).content == DATASET
    assert owner.models.retrieve(job.fine_tuned_model).id == job.fine_tuned_model
    completed = owner.uploads.complete(upload.id, part_ids=[part.id])  # beta's attempts changed nothing
    assert owner.files.content(completed.file.id).content == DATASET
