"""The catalog from the command line: register a folder, change and remove aliases; the server sees it."""

from __future__ import annotations

import subprocess
import sys

import openai
import pytest

from tests.conftest import server_env

pytestmark = pytest.mark.integration


def tunehouse(data_dir, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tunehouse", "models", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=server_env(), timeout=120,
    )


def test_add_alias_remove(server_factory, tmp_path):
    server = server_factory()
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 1024}')
    assert tunehouse(server.data_dir, "add", "my-model", str(folder)).returncode == 0
    assert tunehouse(server.data_dir, "alias", "gpt-4o-mini", "my-model").returncode == 0
    assert tunehouse(server.data_dir, "remove", "davinci-002").returncode == 0

    client = server.client()
    models = {m.id: m for m in client.models.list()}
    assert "my-model" in models and models["gpt-4o-mini"].alias_for == "my-model"
    assert models["gpt-4o-mini-2024-07-18"].alias_for == "smollm2-135m-instruct"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("davinci-002")

    not_a_model = tunehouse(server.data_dir, "add", "broken", str(tmp_path))
    assert not_a_model.returncode == 1 and "no config.json" in not_a_model.stderr
    unknown_base = tunehouse(server.data_dir, "alias", "x", "nope")
    assert unknown_base.returncode == 1 and "does not exist" in unknown_base.stderr
