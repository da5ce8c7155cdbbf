"""The CLI over HTTP against a real server: files, jobs (create --follow), models, chat."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import server_env

pytestmark = pytest.mark.integration


def cli(server, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**server_env(), "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-local"}
    return subprocess.run([sys.executable, "-m", "tunehouse", *args], capture_output=True, text=True, env=env,
                          input=stdin, timeout=600)


def test_files_jobs_models_and_chat_from_the_terminal(server, tmp_path):
    dataset = tmp_path / "capitals.jsonl"
    dataset.write_text('{"prompt": "Capital of France?", "completion": " Paris"}\n'
                       '{"prompt": "Capital of Norway?", "completion": " Oslo"}\n')
    uploaded = json.loads(cli(server, "files", "upload", str(dataset), "--json").stdout)
    assert uploaded["filename"] == "capitals.jsonl" and uploaded["purpose"] == "fine-tune"
    listed = json.loads(cli(server, "files", "list", "--json").stdout)
    assert uploaded["id"] in [f["id"] for f in listed]
    assert "capitals.jsonl" in cli(server, "files", "list").stdout  # a table for people

    followed = cli(server, "jobs", "create", "-t", str(dataset), "--epochs", "2", "--suffix", "cli", "--follow")
    assert followed.returncode == 0, followed.stderr
    assert "ft:gpt-4o-mini-2024-07-18:default:cli:" in followed.stdout
    assert "The job has successfully completed" in followed.stdout and "4/4 steps" in followed.stdout
    jobs = json.loads(cli(server, "jobs", "list", "--json").stdout)
    model = jobs[0]["fine_tuned_model"]
    assert jobs[0]["status"] == "succeeded" and model.startswith("ft:gpt-4o-mini-2024-07-18:default:cli:")

    models = json.loads(cli(server, "models", "list", "--json").stdout)
    assert model in [m["id"] for m in models]
    assert json.loads(cli(server, "models", "get", "gpt-4o-mini", "--json").stdout)["alias_for"] == "smollm2-135m-instruct"

    chat = cli(server, "chat", "gpt-4o-mini", "--temperature", "0", stdin="What is the capital of France?\n\n")
    assert chat.returncode == 0 and "Paris" in chat.stdout

    missing = cli(server, "files", "get", "file-nope")
    assert missing.returncode == 1 and "No such File object: file-nope" in missing.stderr
    failed = cli(server, "jobs", "create", "-t", uploaded["id"], "--model", "nope")
    assert failed.returncode == 1 and "Available models" in failed.stderr
    no_model = cli(server, "chat", "ft:nope", stdin="Hi\n\n")  # the streamed request's own error, sent once
    assert no_model.returncode == 1 and "error 404" in no_model.stderr and "ft:nope" in no_model.stderr
