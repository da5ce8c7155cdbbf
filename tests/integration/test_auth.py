"""Keys and projects: open local mode, then 401 for missing/wrong keys and 404 across projects."""

from __future__ import annotations

import subprocess
import sys

import httpx
import openai
import pytest

from tests.conftest import server_env

pytestmark = pytest.mark.integration

DATASET = b'{"prompt": "a", "completion": "b"}\n'


def create_key(data_dir, project: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tunehouse", "keys", "create", "--project", project, "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=True, env=server_env(),
    )
    return result.stdout.strip().splitlines()[-1]


def test_open_mode_then_keys_scope_everything_to_a_project(server_factory):
    server = server_factory()
    open_file = server.client(api_key="whatever").files.create(file=DATASET, purpose="fine-tune")
    assert httpx.get(f"{server.base_url}/files").status_code == 200  # no key at all is fine in open mode

    alpha_key = create_key(server.data_dir, "alpha")
    beta_key = create_key(server.data_dir, "beta")
    assert alpha_key.startswith("sk-th-") and alpha_key != beta_key
    db_bytes = (server.data_dir / "tunehouse.db").read_bytes()
    assert alpha_key.encode() not in db_bytes  # only a hash is stored

    with pytest.raises(openai.AuthenticationError) as err:
        server.client(api_key="sk-th-wrong-key-0000000000").files.list()
    assert err.value.body["code"] == "invalid_api_key" and "sk-th-wr...0000" in err.value.body["message"]
    missing = httpx.get(f"{server.base_url}/files")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.base_url}/models").status_code == 401

    alpha, beta = server.client(api_key=alpha_key), server.client(api_key=beta_key)
    mine = alpha.files.create(file=DATASET, purpose="fine-tune")
    assert [f.id for f in alpha.files.list()] == [mine.id]  # the open-mode file belongs to project "default"
    assert open_file.id not in [f.id for f in beta.files.list()]
    assert beta.files.list().data == []
    for call in (beta.files.retrieve, beta.files.content, beta.files.delete):
        with pytest.raises(openai.NotFoundError) as err:
            call(mine.id)
        assert err.value.body["message"] == f"No such File object: {mine.id}"
    assert alpha.files.content(mine.id).content == DATASET  # still there after beta's delete attempt
    assert alpha.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"


def test_open_mode_refuses_a_public_host_unless_insecure(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tunehouse", "serve", "--host", "0.0.0.0", "--port", "1", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=server_env(), timeout=60,
    )
    assert result.returncode == 2 and "open mode" in result.stderr
