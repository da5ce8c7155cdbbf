"""The Files API through the real openai SDK (strict response validation) against a real server."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

DATASET = b'{"prompt": "2+2=", "completion": " 4"}\n{"prompt": "3+3=", "completion": " 6"}\n'


def test_upload_retrieve_content_delete_field_by_field(server, tmp_path, assert_matches_spec):
    client = server.client()
    path = tmp_path / "train.jsonl"
    path.write_bytes(DATASET)
    created = client.files.create(file=path.open("rb"), purpose="fine-tune")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose, created.status) == (
        len(DATASET), "train.jsonl", "fine-tune", "processed",
    )
    assert created.created_at > 1_700_000_000 and created.expires_at is None
    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).content == DATASET

    raw = httpx.get(f"{server.base_url}/files/{created.id}").json()
    assert_matches_spec(raw, "OpenAIFile")

    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    assert_matches_spec(httpx.get(f"{server.base_url}/files").json() | {"first_id": "x", "last_id": "x"},
                        "ListFilesResponse")
    with pytest.raises(openai.NotFoundError) as err:
        client.files.retrieve(created.id)
    assert err.value.body == {"message": f"No such File object: {created.id}", "type": "invalid_request_error",
                              "param": "id", "code": None}
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_raw_bytes_upload_is_named_upload_and_accepted(server):
    created = server.client().files.create(file=DATASET, purpose="fine-tune")
    assert created.filename == "upload" and created.bytes == len(DATASET)


def test_list_orders_filters_and_pages(server, assert_matches_spec):
    client = server.client()
    ids = [client.files.create(file=(f"f{i}.jsonl", DATASET), purpose="fine-tune").id for i in range(5)]
    batch = client.files.create(file=("b.jsonl", b'{"custom_id": "1"}\n'), purpose="batch")

    listed = [f.id for f in client.files.list(purpose="fine-tune")]
    assert listed[:5] == ids[::-1]  # newest first
    assert batch.id not in listed

    page = client.files.list(purpose="fine-tune", limit=2, order="asc", after=ids[0])
    assert [f.id for f in page.data] == ids[1:3] and page.has_more
    assert_matches_spec(
        httpx.get(f"{server.base_url}/files", params={"limit": 2}).json(), "ListFilesResponse"
    )
    everything = [f.id for f in client.files.list(purpose="fine-tune", limit=2)]  # the SDK follows cursors
    assert everything[:5] == ids[::-1]


def test_expires_after_sets_expires_at(server):
    created = server.client().files.create(
        file=DATASET, purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert created.expires_at == created.created_at + 3600
    with pytest.raises(openai.BadRequestError) as err:
        server.client().files.create(file=DATASET, purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 5})
    assert err.value.body["param"] == "expires_after.seconds"


@pytest.mark.parametrize(
    "content,line,words",
    [
        (b'{"prompt": "a", "completion": "b"}\nnot json\n', 2, "not valid JSON"),
        (b'{"prompt": "a", "completion": "b"}\n"a string"\n', 2, "found a string"),
        (b'[{"prompt": "a", "completion": "b"}]', 1, "JSON array"),
        (b'{"prompt": "caf\xe9", "completion": "b"}\n', 1, "UTF-8"),
        (b"", None, "no examples"),
    ],
)
def test_upload_refuses_what_is_not_jsonl(server, content, line, words):
    with pytest.raises(openai.BadRequestError) as err:
        server.client().files.create(file=("bad.jsonl", content), purpose="fine-tune")
    body = err.value.body
    assert body["type"] == "invalid_request_error" and body["param"] == "file" and body["code"] == "invalid_file_format"
    assert words in body["message"] and (line is None or f"line {line}:" in body["message"])


def test_upload_keeps_schema_problems_for_job_time(server):
    """A JSONL file with an unknown role is still JSONL: it uploads; the job's validation will refuse it."""
    content = json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode() + b"\n"
    assert server.client().files.create(file=content, purpose="fine-tune").bytes == len(content)


def test_bad_form_fields_name_their_param(server):
    client = server.client()
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=DATASET, purpose="nonsense")  # type: ignore[arg-type]
    assert err.value.body["param"] == "purpose" and "fine-tune" in err.value.body["message"]
    missing = httpx.post(f"{server.base_url}/files", files={"file": ("a.jsonl", DATASET)})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "purpose"
    no_file = httpx.post(f"{server.base_url}/files", data={"purpose": "fine-tune"}, files={"x": ("a", b"1")})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    not_multipart = httpx.post(f"{server.base_url}/files", json={"purpose": "fine-tune"})
    assert not_multipart.status_code == 400 and not_multipart.json()["error"]["param"] == "file"


def test_filenames_are_sanitised(server):
    client = server.client()
    assert client.files.create(file=("../../etc/passwd.jsonl", DATASET), purpose="fine-tune").filename == "passwd.jsonl"
    assert client.files.create(file=("C:\\data\\x.jsonl", DATASET), purpose="fine-tune").filename == "x.jsonl"
    long_name = "é" * 300 + ".jsonl"
    assert len(client.files.create(file=(long_name, DATASET), purpose="fine-tune").filename.encode()) <= 255


def test_size_limit_answers_413_and_stores_nothing(server_factory):
    server = server_factory(TUNEHOUSE_MAX_UPLOAD_BYTES="1000")
    client = server.client()
    assert client.files.create(file=b'{"a": 1}\n' * 100, purpose="fine-tune").bytes == 900
    with pytest.raises(openai.APIStatusError) as err:
        client.files.create(file=b'{"a": 1}\n' * 200, purpose="fine-tune")
    assert err.value.status_code == 413 and err.value.body["code"] == "file_too_large"
    assert len(client.files.list().data) == 1
    assert list((server.data_dir / ".partial").iterdir()) == []


def test_files_survive_a_restart_byte_for_byte(server_factory, tmp_path):
    server = server_factory()
    payloads = {f"d{i}.jsonl": (b'{"prompt": "%d", "completion": "x"}\n' % i) * (i + 1) * 1000 for i in range(3)}
    ids = {name: server.client().files.create(file=(name, data), purpose="fine-tune").id for name, data in payloads.items()}
    server.stop(kill=True)
    restarted = server_factory(data_dir=server.data_dir)
    client = restarted.client()
    for name, data in payloads.items():
        assert client.files.retrieve(ids[name]).filename == name
        assert client.files.content(ids[name]).content == data


def test_an_upload_cut_off_midway_leaves_no_file(server_factory):
    import socket

    server = server_factory()
    body_start = (
        b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n\r\n"
        + b'{"prompt": "a", "completion": "b"}\n' * 1000
    )
    head = (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {len(body_start) * 3}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + body_start)  # then the client goes away before the rest
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and list((server.data_dir / ".partial").iterdir()):
        time.sleep(0.1)
    assert list((server.data_dir / ".partial").iterdir()) == []
    assert server.client().files.list().data == []
    assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200
