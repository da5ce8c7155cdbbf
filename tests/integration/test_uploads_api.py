"""The Uploads API (one file in parts) through the real openai SDK against a real server."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

ROWS = b"".join(b'{"prompt": "%d+%d=", "completion": " %d"}\n' % (i, i, 2 * i) for i in range(200))


def test_a_file_sent_in_parts_becomes_a_file_a_job_can_use(server, tmp_path, assert_matches_spec):
    client = server.client()
    path = tmp_path / "sums.jsonl"
    path.write_bytes(ROWS)
    upload = client.uploads.upload_file_chunked(file=path, mime_type="text/jsonl", purpose="fine-tune",
                                                part_size=1000, md5=hashlib.md5(ROWS).hexdigest())
    assert upload.id.startswith("upload_") and upload.status == "completed" and upload.bytes == len(ROWS)
    assert upload.expires_at == upload.created_at + 3600
    file = upload.file
    assert (file.filename, file.bytes, file.purpose, file.status) == ("sums.jsonl", len(ROWS), "fine-tune", "processed")
    assert client.files.content(file.id).content == ROWS
    assert client.files.retrieve(file.id) == file
    job = client.fine_tuning.jobs.create(training_file=file.id, model="gpt-4o-mini")
    assert job.training_file == file.id
    client.fine_tuning.jobs.cancel(job.id)

    row = b'{"prompt": "a", "completion": "b"}\n'
    raw = httpx.post(f"{server.base_url}/uploads", json={"filename": "a.jsonl", "purpose": "fine-tune",
                                                         "bytes": len(row), "mime_type": "text/jsonl"}).json()
    assert_matches_spec(raw, "Upload")
    part = httpx.post(f"{server.base_url}/uploads/{raw['id']}/parts", files={"data": ("blob", row)}).json()
    assert_matches_spec(part, "UploadPart")
    done = httpx.post(f"{server.base_url}/uploads/{raw['id']}/complete", json={"part_ids": [part["id"]]}).json()
    assert_matches_spec(done, "Upload")
    assert done["status"] == "completed" and done["file"]["bytes"] == len(row)


def test_parts_join_in_the_order_complete_names_and_mistakes_lose_nothing(server):
    client = server.client()
    first, second = b'{"prompt": "x", "completion": "1"}\n', b'{"prompt": "y", "completion": "2"}\n'
    upload = client.uploads.create(bytes=len(first + second), filename="two.jsonl", mime_type="text/jsonl",
                                   purpose="fine-tune")
    part_a = client.uploads.parts.create(upload.id, data=first)
    part_b = client.uploads.parts.create(upload.id, data=second)
    assert (part_a.object, part_a.upload_id) == ("upload.part", upload.id)

    def refused(part_ids, md5=openai.NOT_GIVEN) -> dict:
        with pytest.raises(openai.BadRequestError) as err:
            client.uploads.complete(upload.id, part_ids=part_ids, md5=md5)
        return err.value.body

    assert refused([part_a.id])["param"] == "part_ids"  # 35 bytes of 70
    assert "35 bytes" in refused([part_a.id])["message"]
    assert refused([part_a.id, "part_nope"])["message"] == f"No part part_nope was added to upload {upload.id}."
    assert refused([part_a.id, part_a.id])["param"] == "part_ids"
    assert refused([part_b.id, part_a.id], md5="0" * 32)["param"] == "md5"
    done = client.uploads.complete(upload.id, part_ids=[part_b.id, part_a.id])  # still pending: nothing lost
    assert client.files.content(done.file.id).content == second + first
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.parts.create(upload.id, data=first)
    assert "completed" in err.value.body["message"]


def test_cancel_bad_content_and_limits_are_clear_errors(server_factory):
    server = server_factory(TUNEHOUSE_MAX_UPLOAD_BYTES="1000")
    client = server.client()
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.create(bytes=1001, filename="big.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert err.value.body["param"] == "bytes"
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.create(bytes=10, filename="x.jsonl", mime_type="text/jsonl", purpose="fine-tuning")
    assert err.value.body["param"] == "purpose"

    upload = client.uploads.create(bytes=10, filename="x.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    with pytest.raises(openai.APIStatusError) as err:
        client.uploads.parts.create(upload.id, data=b"x" * 11)  # more than the whole upload
    assert err.value.status_code == 413 and err.value.body["param"] == "data"
    assert err.value.body["message"] == "A part may hold at most the upload's `bytes` (10)."
    part = client.uploads.parts.create(upload.id, data=b"not json!\n")
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.complete(upload.id, part_ids=[part.id])
    assert err.value.body["code"] == "invalid_file_format" and "line 1" in err.value.body["message"]
    assert client.files.list().data == []

    cancelled = client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled" and cancelled.file is None
    for attempt in (lambda: client.uploads.parts.create(upload.id, data=b"{}\n"),
                    lambda: client.uploads.complete(upload.id, part_ids=[part.id]),
                    lambda: client.uploads.cancel(upload.id)):
        with pytest.raises(openai.BadRequestError) as err:
            attempt()
        assert "cancelled" in err.value.body["message"]
    assert not (server.data_dir / "blobs" / "uploads" / upload.id).exists()
    with pytest.raises(openai.NotFoundError) as err:
        client.uploads.cancel("upload_doesnotexist")
    assert err.value.body["param"] == "upload_id"


def test_an_upload_survives_a_restart_between_its_parts(server_factory):
    server = server_factory()
    halves = ROWS[:3000], ROWS[3000:]
    upload = server.client().uploads.create(bytes=len(ROWS), filename="r.jsonl", mime_type="text/jsonl",
                                            purpose="fine-tune")
    first = server.client().uploads.parts.create(upload.id, data=halves[0])
    server.stop(kill=True)
    client = server_factory(data_dir=server.data_dir).client()
    second = client.uploads.parts.create(upload.id, data=halves[1])
    done = client.uploads.complete(upload.id, part_ids=[first.id, second.id])
    assert client.files.content(done.file.id).content == ROWS


def test_a_restart_removes_old_blobs_nothing_records_and_keeps_the_rest(server_factory):
    """What a crash between writing a blob and recording it leaves (and parts of finished uploads) goes at
    the next start, once older than an hour; recorded files and pending parts stay."""
    server = server_factory()
    client = server.client()
    kept = client.files.create(file=("kept.jsonl", ROWS), purpose="fine-tune")
    pending = client.uploads.create(bytes=len(ROWS), filename="p.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    pending_part = client.uploads.parts.create(pending.id, data=ROWS[:100])
    finished = client.uploads.create(bytes=10, filename="f.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    client.uploads.parts.create(finished.id, data=b"0123456789")
    client.uploads.cancel(finished.id)
    server.stop(kill=True)

    blobs = server.data_dir
    old = time.time() - 2 * 3600
    planted = {
        "old orphan file": blobs / "files" / "file-crashedbeforeitsrow",
        "new orphan file": blobs / "files" / "file-stillbeingrecorded",
        "old orphan part": blobs / "uploads" / pending.id / "part_crashedbeforeitsrow",
        "cancelled upload's part": blobs / "uploads" / finished.id / "part_leftbycrash",
    }
    for name, path in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        if name != "new orphan file":
            os.utime(path, (old, old))
    os.utime(blobs / "files" / kept.id, (old, old))

    client = server_factory(data_dir=server.data_dir).client()
    assert [name for name, path in planted.items() if path.exists()] == ["new orphan file"]
    assert client.files.content(kept.id).content == ROWS
    rest = client.uploads.parts.create(pending.id, data=ROWS[100:])
    done = client.uploads.complete(pending.id, part_ids=[pending_part.id, rest.id])
    assert client.files.content(done.file.id).content == ROWS
