"""A real Bolt app over Socket Mode (slack-sdk's builtin client) against the local Slack."""

from __future__ import annotations

import threading
import time

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from localslack import LocalSlack

from .conftest import close_quickly


class Seen:
    """What the app's listeners saw, waited for from the test thread."""

    def __init__(self) -> None:
        self.items: list = []
        self._cond = threading.Condition()

    def add(self, item) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 5.0) -> list:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= count, timeout), f"saw only {self.items}"
            return list(self.items)


def test_a_file_drop_arrives_twice_as_slack_sends_it(slack: LocalSlack, bolt: App) -> None:
    seen = Seen()

    @bolt.event({"type": "message", "subtype": "file_share"})
    def file_share(event, client):
        seen.add(("file_share", event["files"][0]["id"], event["channel_type"], event["ts"]))

    @bolt.event("file_shared")
    def file_shared(event, client):
        info = client.files_info(file=event["file_id"])["file"]
        seen.add(("file_shared", event["file_id"], info["name"], event["channel_id"]))

    file_id, ts = slack.share_file("fine-tuning", "alice", "data.jsonl", b'{"prompt": "a"}\n', text="tune this")
    got = sorted(seen.wait(2))
    assert got == [("file_share", file_id, "channel", ts),
                   ("file_shared", file_id, "data.jsonl", slack.channel_id("fine-tuning"))]


def test_a_mention_is_an_app_mention_and_a_message(slack: LocalSlack, bolt: App) -> None:
    seen = Seen()

    @bolt.event("app_mention")
    def mention(event, body, say):
        seen.add(("app_mention", body["event_id"], event["text"]))
        say(text="on it", thread_ts=event["ts"])

    @bolt.message("")
    def message(message, body):
        seen.add(("message", body["event_id"], message["text"]))

    ts = slack.post_message("fine-tuning", "alice", f"<@{slack.bot_user_id}> which model?")
    got = seen.wait(2)
    assert {kind for kind, _, _ in got} == {"app_mention", "message"}
    assert len({event_id for _, event_id, _ in got}) == 2
    reply = slack.wait_for_message("fine-tuning", ts)
    assert reply["text"] == "on it" and reply["thread_ts"] == ts
    # The app's reply came back to it as a message with its bot_id, acked (Bolt ignores its own events).
    slack.wait_for(lambda: len([d for d in slack.deliveries if d.type == "message" and d.status == "acked"]) == 2)


def test_slash_command_ack_and_response_url(slack: LocalSlack, bolt: App) -> None:
    @bolt.command("/finetune")
    def finetune(ack, respond, command):
        ack(f"Looking up {command['text']}…")
        respond(text="Job ftjob-1 is running", response_type="in_channel")

    handle = slack.slash_command("fine-tuning", "alice", "/finetune", "status")
    assert handle.ack() == {"text": "Looking up status…"}
    posted = slack.wait_for_message("fine-tuning", predicate=lambda m: m["text"] == "Job ftjob-1 is running")
    assert posted["bot_id"] == slack.bot_id
    ephemeral = slack.wait_for(lambda: slack.ephemerals("fine-tuning", "alice"))
    assert ephemeral[0]["text"] == "Looking up status…"
    assert slack.ephemerals("fine-tuning", "bob") == []

    webhook = WebhookClient(handle.response_url)
    for i in range(4):  # the app used it once; Slack allows 5 uses
        assert webhook.send(text=f"update {i}").status_code == 200
    refused = webhook.send(text="one too many")
    assert refused.status_code == 404 and refused.body == "used_url"
    command = next(d for d in slack.deliveries if d.kind == "slash_commands")
    assert command.status == "acked" and command.retry_attempt == 0


def test_a_missed_command_ack_shows_operation_timeout(slack: LocalSlack, bolt: App) -> None:
    @bolt.command("/finetune")
    def slow(ack):
        time.sleep(1.5)  # past the 1 s ack deadline these tests use
        ack()

    handle = slack.slash_command("fine-tuning", "alice", "/finetune", "list")
    with pytest.raises(Exception, match="operation_timeout"):
        handle.ack()
    assert 'failed with the error "operation_timeout"' in slack.wait_for(lambda: slack.ephemerals())[0]["text"]
    time.sleep(0.7)
    assert len([d for d in slack.deliveries if d.kind == "slash_commands"]) == 1  # never retried


def test_button_click_and_replace_original(slack: LocalSlack, bolt: App) -> None:
    seen = Seen()

    @bolt.action("start_job")
    def start(ack, body, respond):
        ack()
        seen.add(body)
        respond(text="Started ftjob-1", replace_original=True)

    channel = slack.channel_id("fine-tuning")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Dataset OK"}},
              {"type": "actions", "block_id": "report", "elements": [
                  {"type": "button", "text": {"type": "plain_text", "text": "Fine-tune"}, "action_id": "start_job",
                   "value": "file:F1", "style": "primary",
                   "confirm": {"title": {"type": "plain_text", "text": "Sure?"},
                               "text": {"type": "plain_text", "text": "It costs money"},
                               "confirm": {"type": "plain_text", "text": "Go"},
                               "deny": {"type": "plain_text", "text": "No"}}}]}]
    ts = bolt.client.chat_postMessage(channel=channel, text="Dataset OK", blocks=blocks)["ts"]
    slack.click("fine-tuning", ts, "start_job", "bob")
    body = seen.wait()[0]
    assert body["type"] == "block_actions" and body["user"]["id"] == slack.user_id("bob")
    assert body["container"] == {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False}
    assert body["actions"][0]["value"] == "file:F1" and body["actions"][0]["block_id"] == "report"
    assert body["message"]["ts"] == ts and body["channel"]["id"] == channel
    slack.wait_for(lambda: slack.message("fine-tuning", ts)["text"] == "Started ftjob-1")

    with pytest.raises(Exception, match="action_not_found"):
        slack.click("fine-tuning", ts, "no_such_button", "bob")


def test_modal_open_submit_with_errors_then_close(slack: LocalSlack, bolt: App) -> None:
    @bolt.command("/finetune")
    def options(ack, body, client):
        ack()
        client.views_open(trigger_id=body["trigger_id"], view={
            "type": "modal", "callback_id": "options", "private_metadata": "job-7",
            "title": {"type": "plain_text", "text": "Options"}, "submit": {"type": "plain_text", "text": "Start"},
            "blocks": [{"type": "input", "block_id": "epochs",
                        "label": {"type": "plain_text", "text": "Epochs"},
                        "element": {"type": "plain_text_input", "action_id": "value"}}]})

    submissions = Seen()

    @bolt.view("options")
    def submitted(ack, view):
        value = view["state"]["values"]["epochs"]["value"]["value"]
        submissions.add((value, view["private_metadata"]))
        if not value.isdigit():
            ack(response_action="errors", errors={"epochs": "Enter a whole number"})
        else:
            ack()

    slack.slash_command("fine-tuning", "alice", "/finetune", "options").ack()
    view = slack.wait_for(lambda: slack.views("alice"))[0]
    assert view["callback_id"] == "options" and view["state"] == {"values": {}}

    empty = slack.submit_view(view["id"], "alice", {})
    assert empty == {"response_action": "errors", "errors": {"epochs": "Please complete this required field."},
                     "delivered": False}
    bad = slack.submit_view(view["id"], "alice", {"epochs": {"value": "many"}})
    assert bad == {"response_action": "errors", "errors": {"epochs": "Enter a whole number"}}
    assert len(slack.views("alice")) == 1
    good = slack.submit_view(view["id"], "alice", {"epochs": {"value": {"type": "plain_text_input", "value": "3"}}})
    assert good == {"response_action": None} and slack.views("alice") == []
    assert submissions.wait(2) == [("many", "job-7"), ("3", "job-7")]


def test_trigger_ids_are_single_use_and_expire(slack: LocalSlack, bolt: App) -> None:
    triggers = Seen()

    @bolt.command("/finetune")
    def keep(ack, body):
        ack()
        triggers.add(body["trigger_id"])

    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Hi"}, "blocks": []}
    slack.slash_command("fine-tuning", "alice", "/finetune").ack()
    trigger = triggers.wait()[0]
    assert bolt.client.views_open(trigger_id=trigger, view=modal)["view"]["id"]
    with pytest.raises(SlackApiError, match="expired_trigger_id"):
        bolt.client.views_open(trigger_id=trigger, view=modal)

    slack.settings.trigger_ttl = 0.2
    slack.slash_command("fine-tuning", "alice", "/finetune").ack()
    late = triggers.wait(2)[1]
    time.sleep(0.3)
    with pytest.raises(SlackApiError, match="expired_trigger_id"):
        bolt.client.views_open(trigger_id=late, view=modal)
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        bolt.client.views_open(trigger_id="1.2.3", view=modal)


def test_an_unacked_event_is_redelivered_with_retry_attempt(slack: LocalSlack) -> None:
    app = App(client=WebClient(token=slack.bot_token, base_url=slack.api_url), process_before_response=True)
    attempts = Seen()

    @app.message("train")
    def flaky(message, body, request):
        attempts.add((body["event_id"], request.headers.get("x-slack-retry-num"),
                      request.headers.get("x-slack-retry-reason")))
        if len(attempts.items) == 1:
            raise RuntimeError("crash before the ack")  # Bolt answers 500: no ack is sent

    handler = SocketModeHandler(app, slack.app_token)
    handler.connect()
    try:
        slack.wait_connected()
        slack.post_message("fine-tuning", "alice", "train please")
        (first_id, first_num, _), (second_id, second_num, reason) = attempts.wait(2)
        assert first_id == second_id and first_num == ["0"]
        assert second_num == ["1"] and reason == ["timeout"]
        statuses = lambda: [(d.retry_attempt, d.status) for d in slack.deliveries if d.event_id == first_id]  # noqa
        slack.wait_for(lambda: statuses() == [(0, "timeout"), (1, "acked")])

        slack.redeliver(first_id)
        assert attempts.wait(3)[2] == (first_id, ["2"], ["timeout"])
    finally:
        close_quickly(slack, handler)


def test_disconnect_makes_the_client_reconnect(slack: LocalSlack, bolt: App) -> None:
    seen = Seen()

    @bolt.message("after")
    def after(message):
        seen.add(message["text"])

    assert slack.hub.sessions == 1
    slack.disconnect_sockets("refresh_requested")
    slack.wait_for(lambda: slack.hub.sessions == 2 and slack.hub.connected == 1, timeout=10)
    slack.post_message("fine-tuning", "alice", "after the refresh")
    assert seen.wait() == ["after the refresh"]


def test_connection_urls_are_single_use(slack: LocalSlack) -> None:
    app_client = WebClient(token=slack.app_token, base_url=slack.api_url)
    url = app_client.apps_connections_open(app_token=slack.app_token)["url"]
    with connect(url) as socket:
        hello = socket.recv(timeout=5)
        assert '"type": "hello"' in hello and slack.app_id in hello
    with pytest.raises(InvalidStatus):
        connect(url)


def test_home_tab(slack: LocalSlack, bolt: App) -> None:
    @bolt.event("app_home_opened")
    def home(event, client):
        client.views_publish(user_id=event["user"], view={
            "type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Your jobs"}}]})

    slack.open_home("alice")
    view = slack.wait_for(lambda: slack.home("alice"))
    assert view["type"] == "home" and view["blocks"][0]["text"]["text"] == "Your jobs"


def test_clicks_in_an_ephemeral_and_in_a_modal(slack: LocalSlack, bolt: App) -> None:
    button = lambda action_id: {"type": "actions", "elements": [  # noqa: E731
        {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": action_id}}]}
    bodies = Seen()

    @bolt.command("/finetune")
    def ask(ack):
        ack(text="Sure?", blocks=[button("confirm")])

    @bolt.action("confirm")
    def confirm(ack, body, client):
        ack()
        bodies.add(body)
        client.views_open(trigger_id=body["trigger_id"], view={
            "type": "modal", "title": {"type": "plain_text", "text": "More"}, "blocks": [button("more")]})

    @bolt.action("more")
    def more(ack, body):
        ack()
        bodies.add(body)

    slack.slash_command("fine-tuning", "alice", "/finetune", "start").ack()
    ephemeral = slack.wait_for(lambda: slack.ephemerals("fine-tuning", "alice"))[0]
    with pytest.raises(Exception, match="message_not_found"):
        slack.click("fine-tuning", ephemeral["ts"], "confirm", "bob")  # not bob's to see
    slack.click("fine-tuning", ephemeral["ts"], "confirm", "alice")
    from_ephemeral = bodies.wait()[0]
    assert from_ephemeral["container"]["is_ephemeral"] is True and "message" not in from_ephemeral
    view = slack.wait_for(lambda: slack.views("alice"))[0]
    slack.click_view(view["id"], "more", "alice")
    from_view = bodies.wait(2)[1]
    assert from_view["container"] == {"type": "view", "view_id": view["id"]} and from_view["view"]["id"] == view["id"]


def test_a_dropped_connection_is_replaced(slack: LocalSlack) -> None:
    app = App(client=WebClient(token=slack.bot_token, base_url=slack.api_url))
    seen = Seen()
    app.message("back")(lambda message: seen.add(message["text"]))
    handler = SocketModeHandler(app, slack.app_token, ping_interval=0.3)  # notices a dead socket sooner
    handler.connect()
    try:
        slack.wait_connected()
        slack.drop_sockets()
        slack.wait_for(lambda: slack.hub.sessions == 2 and slack.hub.connected == 1, timeout=5)
        slack.post_message("fine-tuning", "alice", "back again")
        assert seen.wait() == ["back again"]
    finally:
        close_quickly(slack, handler)
