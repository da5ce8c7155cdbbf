"""Load: 64 concurrent chat clients plus uploads while a job trains. Every request is answered without
error, and the job's weights are exactly those of the same job trained on an idle server."""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.integration.test_jobs_api import register_tiny, wait_for

pytestmark = pytest.mark.integration


def dataset(n: int = 40) -> bytes:
    return "".join(
        json.dumps({"messages": [{"role": "user", "content": f"Number {i}?"}, {"role": "assistant", "content": str(i)}]})
        + "\n" for i in range(n)
    ).encode()


def train(client, file_id: str):
    job = client.fine_tuning.jobs.create(training_file=file_id, model="tiny", seed=7,
                                         hyperparameters={"n_epochs": 10, "batch_size": 2})
    return job


def test_64_chat_clients_and_uploads_while_a_job_trains(server_factory, tiny_model_dir):
    server = server_factory()
    register_tiny(server, tiny_model_dir)
    client = server.client()
    file_id = client.files.create(file=dataset(), purpose="fine-tune").id

    quiet = wait_for(client, train(client, file_id).id, ("succeeded", "failed"), timeout=300)
    busy = train(client, file_id)

    def chat(i: int) -> str:
        answer = client.chat.completions.create(model="gpt-4o-mini", max_tokens=8, seed=i,
                                                messages=[{"role": "user", "content": f"Say {i}."}])
        return answer.choices[0].finish_reason

    def upload(i: int) -> int:
        payload = b'{"prompt": "%d", "completion": " x"}\n' % i * 200
        uploaded = client.files.create(file=(f"load-{i}.jsonl", payload), purpose="fine-tune")
        assert client.files.content(uploaded.id).content == payload
        return uploaded.bytes

    wait_for(client, busy.id, ("running",), timeout=120)
    load_started = int(time.time())
    with concurrent.futures.ThreadPoolExecutor(72) as pool:
        chats = [pool.submit(chat, i) for i in range(64)]
        uploads = [pool.submit(upload, i) for i in range(8)]
        finishes = [f.result(timeout=600) for f in chats]
        sizes = [f.result(timeout=600) for f in uploads]
    assert len(finishes) == 64 and set(finishes) <= {"stop", "length"}
    assert all(size > 0 for size in sizes)

    busy = wait_for(client, busy.id, ("succeeded", "failed"), timeout=600)
    assert busy.status == "succeeded", busy.error
    assert busy.finished_at >= load_started  # it really trained under the load
    weights = [load_file(str(server.data_dir / "jobs" / job.id / "model" / "adapter_model.safetensors"))
               for job in (quiet, busy)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
