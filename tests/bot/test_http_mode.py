"""HTTP mode: Slack pushes signed requests to `POST /slack/events`; the bot checks every signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT, BotProcess
from .test_datasets_e2e import chat, everything_said, jsonl, reports, share, wait_report


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def http_bot(tmp_path_factory):
    from localslack import LocalSlack

    port = free_port()
    slack = LocalSlack(manifest=ROOT / "manifest.yml", events_url=f"http://127.0.0.1:{port}/slack/events").start()
    bot = BotProcess(
        slack, Path(tmp_path_factory.mktemp("http-bot")),
        extra_env={"SLACK_APP_TOKEN": "", "SLACK_SIGNING_SECRET": slack.signing_secret},
        args=["--http", "--port", str(port)],
    )
    bot.start()
    yield slack, bot, port
    bot.stop()
    slack.stop()


def test_health_and_a_file_pushed_over_signed_http(http_bot):
    slack, bot, port = http_bot
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    assert slack.verify_url()
    ts = share(slack, "pushed.jsonl", jsonl([chat(f"q{i}", f"a{i}") for i in range(10)]))
    assert "10 examples" in everything_said(wait_report(slack, ts))
    # Slack's retries over HTTP (X-Slack-Retry-Num, X-Slack-Retry-Reason) of both deliveries of the share
    for delivery in [d for d in slack.deliveries if d.type in ("message", "file_shared") and d.retry_attempt == 0][-2:]:
        slack.redeliver(delivery.event_id, "http_timeout")
    slack.wait_for(lambda: len([d for d in slack.deliveries if d.retry_attempt > 0 and d.status == "acked"]) >= 2, 15)
    time.sleep(1.5)
    assert len(reports(slack, ts)) == 1


def signed(secret: str, body: str, timestamp: int) -> dict[str, str]:
    base = f"v0:{timestamp}:{body}".encode()
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": str(timestamp), "Content-Type": "application/json"}


def test_bad_signatures_and_replays_are_refused(http_bot):
    slack, bot, port = http_bot
    url = f"http://127.0.0.1:{port}/slack/events"
    body = json.dumps({"type": "url_verification", "challenge": "abc", "token": "x"})
    now = int(time.time())
    assert httpx.post(url, content=body, headers=signed(slack.signing_secret, body, now)).status_code == 200
    assert httpx.post(url, content=body, headers=signed("wrong-secret", body, now)).status_code == 401
    assert httpx.post(url, content=body, headers=signed(slack.signing_secret, body, now - 301)).status_code == 401
    assert httpx.post(url, content=body, headers={"Content-Type": "application/json"}).status_code == 401
