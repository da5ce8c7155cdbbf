"""HTTP mode (Events API push): signed POSTs to a Bolt app, Slack's retries and their headers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from localslack import LocalSlack

Rule = Callable[[int, dict], tuple[int, dict] | None]  # (request number, headers) -> a canned answer


class BoltReceiver:
    """A plain HTTP server handing each POST to `app.dispatch` (Bolt checks the signature), recording
    every request; `rule` may answer instead of Bolt or delay it."""

    def __init__(self, rule: Rule | None = None) -> None:
        self.app: App | None = None
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append((headers, raw))
                canned = rule(len(receiver.requests), headers) if rule else None
                if canned is not None:
                    status, extra = canned
                    body, content_type = b"", "text/plain"
                else:
                    response = receiver.app.dispatch(BoltRequest(body=raw.decode(), headers=headers))
                    status, extra = response.status, {}
                    body = (response.body or "").encode()
                    content_type = response.headers.get("content-type", ["text/plain"])[0]
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slack/events"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def started(rule: Rule | None = None, signing_secret: str | None = None) -> tuple[LocalSlack, BoltReceiver, App]:
    receiver = BoltReceiver(rule)
    slack = LocalSlack(events_url=receiver.url, ack_timeout=1.0, retry_delays=(0.0, 0.2, 0.2)).start()
    receiver.app = App(client=WebClient(token=slack.bot_token, base_url=slack.api_url),
                       signing_secret=signing_secret or slack.signing_secret)
    return slack, receiver, receiver.app


@pytest.fixture
def http_slack() -> Iterator[tuple[LocalSlack, BoltReceiver, App]]:
    slack, receiver, app = started()
    yield slack, receiver, app
    slack.stop()
    receiver.close()


def retry_headers(receiver: BoltReceiver) -> list[tuple[str | None, str | None]]:
    return [(h.get("x-slack-retry-num"), h.get("x-slack-retry-reason")) for h, _ in receiver.requests]


def test_events_are_signed_posts_bolt_accepts(http_slack) -> None:
    slack, receiver, app = http_slack
    seen = []
    app.message("hello")(lambda message: seen.append(message["text"]))
    slack.post_message("fine-tuning", "alice", "hello there")
    slack.wait_for(lambda: seen == ["hello there"])
    headers, raw = receiver.requests[0]
    assert headers["content-type"] == "application/json"
    assert SignatureVerifier(slack.signing_secret).is_valid(raw, headers["x-slack-request-timestamp"],
                                                            headers["x-slack-signature"])
    assert "x-slack-retry-num" not in headers
    assert slack.verify_url() is True


def test_a_bad_signature_is_refused_and_retried_three_times() -> None:
    slack, receiver, app = started(signing_secret="not-the-secret")
    try:
        app.message("")(lambda message: None)
        slack.post_message("fine-tuning", "alice", "anyone?")
        slack.wait_for(lambda: len(receiver.requests) == 4, timeout=5)
        time.sleep(0.4)
        assert retry_headers(receiver) == [(None, None), ("1", "http_error"), ("2", "http_error"), ("3", "http_error")]
        assert [d.http_status for d in slack.deliveries] == [401] * 4
    finally:
        slack.stop()
        receiver.close()


def test_a_slow_answer_is_retried_with_http_timeout() -> None:
    def slow_first(number: int, headers: dict) -> None:
        if number == 1:
            time.sleep(1.3)  # past the 1 s deadline these tests use
        return None

    slack, receiver, app = started(slow_first)
    try:
        seen = []
        app.message("")(lambda message, body: seen.append(body["event_id"]))
        slack.post_message("fine-tuning", "alice", "slow")
        slack.wait_for(lambda: len(seen) == 2, timeout=5)
        assert seen[0] == seen[1]
        assert retry_headers(receiver)[:2] == [(None, None), ("1", "http_timeout")]
        assert slack.wait_for(lambda: [d.status for d in slack.deliveries][:2] == ["timeout", "acked"])
    finally:
        slack.stop()
        receiver.close()


def test_x_slack_no_retry_stops_retries() -> None:
    slack, receiver, _ = started(lambda number, headers: (500, {"X-Slack-No-Retry": "1"}))
    try:
        slack.post_message("fine-tuning", "alice", "no retries please")
        slack.wait_for(lambda: receiver.requests)
        time.sleep(0.6)
        assert len(receiver.requests) == 1
    finally:
        slack.stop()
        receiver.close()


def test_slash_commands_and_clicks_over_http(http_slack) -> None:
    slack, receiver, app = http_slack

    @app.command("/finetune")
    def finetune(ack, command):
        ack(f"you said {command['text']}")

    clicked = []

    @app.action("go")
    def go(ack, body):
        ack()
        clicked.append(body["actions"][0]["value"])

    assert slack.slash_command("fine-tuning", "alice", "/finetune", "help").ack() == {"text": "you said help"}
    headers, raw = receiver.requests[-1]
    assert headers["content-type"] == "application/x-www-form-urlencoded" and b"command=%2Ffinetune" in raw

    channel = slack.channel_id("fine-tuning")
    blocks = [{"type": "actions", "elements": [{"type": "button", "action_id": "go", "value": "v1",
                                                "text": {"type": "plain_text", "text": "Go"}}]}]
    ts = app.client.chat_postMessage(channel=channel, text="buttons", blocks=blocks)["ts"]
    slack.click("fine-tuning", ts, "go", "alice").ack()
    assert clicked == ["v1"]
    assert receiver.requests[-1][1].startswith(b"payload=")
