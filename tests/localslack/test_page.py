"""The workspace's web page from the server's side: the page and its assets, the live feed (SSE), what one
person sees of a conversation, file bytes for the person's browser, and `make run`'s launcher refusing a
half-configured Slack. (The page itself, in a browser, is tests/browser/.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from localslack import LocalSlack
from localslack.launch import slack_tokens


@pytest.fixture
def slack():
    with LocalSlack() as running:
        yield running


def test_the_page_and_its_assets_are_served(slack):
    with httpx.Client(base_url=slack.base_url, trust_env=False) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert '<script src="/static/app.js"></script>' in page.text
        for asset, kind in (("app.js", "javascript"), ("app.css", "text/css")):
            response = client.get(f"/static/{asset}")
            assert response.status_code == 200 and kind in response.headers["content-type"]
        assert client.get("/static/..%2Fstate.py").status_code == 404
        assert client.get("/static/nothing.js").status_code == 404


def test_the_live_feed_says_hello_then_streams_each_change(slack):
    received: list[tuple[str, dict]] = []
    opened = threading.Event()

    def listen() -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            with client.stream("GET", f"{slack.base_url}/_local/stream") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                kind = "message"
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        received.append((kind, json.loads(line[6:])))
                        kind = "message"
                        opened.set()
                        if len(received) >= 3:
                            return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert opened.wait(5)
    ts = slack.post_message("fine-tuning", "alice", "hello")
    slack.slash_command("fine-tuning", "bob", "/finetune", "help")  # no app connected: an ephemeral says so
    thread.join(10)
    assert received[0][0] == "hello" and "boot" in received[0][1]
    changes = [data for kind, data in received[1:]]
    assert changes[0]["kind"] == "message_posted" and changes[0]["ts"] == ts
    assert changes[1]["kind"] == "ephemeral" and changes[1]["user"] == slack.user_id("bob")


def test_a_person_sees_their_own_ephemerals_and_the_thread(slack):
    ts = slack.post_message("fine-tuning", "alice", "root")
    slack.post_message("fine-tuning", "bob", "a reply", thread_ts=ts)
    slack.conversations.ephemeral(slack.channel_id("fine-tuning"), slack.user_id("alice"), "just for alice")
    with httpx.Client(base_url=slack.base_url, trust_env=False) as client:
        alice = client.get("/_local/conversation", params={"channel": "fine-tuning", "user": "alice"}).json()
        bob = client.get("/_local/conversation", params={"channel": "fine-tuning", "user": "bob"}).json()
        thread = client.get("/_local/conversation",
                            params={"channel": "fine-tuning", "user": "bob", "thread_ts": ts}).json()
    assert [m["text"] for m in alice["messages"]] == ["root"] and alice["messages"][0]["reply_count"] == 1
    assert [e["text"] for e in alice["ephemerals"]] == ["just for alice"] and bob["ephemerals"] == []
    assert [m["text"] for m in thread["messages"]] == ["root", "a reply"]


def test_a_person_downloads_a_file_without_the_bot_token(slack):
    file_id, _ = slack.share_file("fine-tuning", "alice", "data.csv", b"a,b\n1,2\n")
    with httpx.Client(base_url=slack.base_url, trust_env=False) as client:
        inline = client.get(f"/_local/files/{file_id}/content")
        download = client.get(f"/_local/files/{file_id}/content", params={"download": 1})
        slack.delete_file(file_id)
        gone = client.get(f"/_local/files/{file_id}/content")
    assert inline.content == b"a,b\n1,2\n" and inline.headers["content-disposition"].startswith("inline")
    assert download.headers["content-disposition"] == 'attachment; filename="data.csv"'
    assert gone.status_code == 404


def test_the_workspace_lists_the_manifest_commands():
    from pathlib import Path

    manifest = Path(__file__).resolve().parents[2] / "manifest.yml"
    with LocalSlack(manifest=manifest) as slack:
        data = httpx.get(f"{slack.base_url}/_local/workspace", trust_env=False).json()
    assert [c["command"] for c in data["commands"]] == ["/finetune"] and data["home_tab"] is True


def test_the_launcher_reads_tokens_from_the_environment_then_dotenv(tmp_path, monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    assert slack_tokens(env_file) == {}
    env_file.write_text("SLACK_BOT_TOKEN=xoxb-from-file\nSLACK_APP_TOKEN=xapp-from-file\n")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    assert slack_tokens(env_file) == {"SLACK_BOT_TOKEN": "xoxb-from-env", "SLACK_APP_TOKEN": "xapp-from-file"}


def _launch(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    return subprocess.run([sys.executable, "-m", "localslack.launch", "--data-dir", str(tmp_path / "data"), *args],
                          cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_the_launcher_refuses_half_a_slack_configuration(tmp_path):
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-only-this\n")
    done = _launch(tmp_path)
    assert done.returncode == 2
    assert "SLACK_APP_TOKEN is not" in done.stderr and "or neither for the local workspace" in done.stderr


def test_the_launcher_says_when_its_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = _launch(tmp_path, "--port", str(taken.getsockname()[1]))
    assert done.returncode == 1 and "already running" in done.stderr
