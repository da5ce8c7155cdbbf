"""The Web API through slack-sdk's WebClient: shapes, errors and limits as Slack answers them."""

from __future__ import annotations

import time

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from localslack import LocalSlack


def error_of(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        call()
    return caught.value


def test_auth_test_names_the_bot_and_its_scopes(slack: LocalSlack, client: WebClient) -> None:
    response = client.auth_test()
    assert response["user_id"] == slack.bot_user_id and response["bot_id"] == slack.bot_id
    assert response["team_id"] == slack.team_id
    assert "chat:write" in response.headers["x-oauth-scopes"].split(",")


def test_tokens_are_checked(slack: LocalSlack) -> None:
    assert error_of(WebClient(base_url=slack.api_url).auth_test).response["error"] == "not_authed"
    bad = WebClient(token="xoxb-nope", base_url=slack.api_url)
    assert error_of(bad.auth_test).response["error"] == "invalid_auth"
    app_level = WebClient(token=slack.app_token, base_url=slack.api_url)
    assert error_of(lambda: app_level.chat_postMessage(channel="C1", text="x")).response["error"] == \
        "not_allowed_token_type"
    bot = WebClient(token=slack.bot_token, base_url=slack.api_url)
    assert error_of(lambda: bot.apps_connections_open(app_token=slack.bot_token)).response["error"] == \
        "not_allowed_token_type"
    url = app_level.apps_connections_open(app_token=slack.app_token)["url"]
    assert url.startswith("ws://127.0.0.1:") and "/link/?ticket=" in url
    unknown = httpx.post(f"{slack.api_url}no.such.method", headers={"Authorization": f"Bearer {slack.bot_token}"},
                         trust_env=False)
    assert unknown.status_code == 200 and unknown.json()["error"] == "unknown_method"


def test_post_update_delete_and_their_events(slack: LocalSlack, client: WebClient) -> None:
    channel = slack.channel_id("fine-tuning")
    posted = client.chat_postMessage(channel=channel, text="Training started")
    assert posted["channel"] == channel and posted["message"]["bot_id"] == slack.bot_id
    ts = posted["ts"]
    reply = client.chat_postMessage(channel=channel, text="step 1", thread_ts=ts)
    assert reply["message"]["thread_ts"] == ts
    root = slack.message("fine-tuning", ts)
    assert root["reply_count"] == 1 and root["latest_reply"] == reply["ts"]
    assert [m["text"] for m in slack.messages("fine-tuning")] == ["Training started"]
    assert [m["text"] for m in slack.messages("fine-tuning", ts)] == ["Training started", "step 1"]

    updated = client.chat_update(channel=channel, ts=ts, text="Training 50%")
    assert updated["text"] == "Training 50%" and slack.message("fine-tuning", ts)["edited"]["user"] == slack.bot_user_id
    client.chat_delete(channel=channel, ts=reply["ts"])
    assert [m["text"] for m in slack.messages("fine-tuning", ts)] == ["Training 50%"]
    # The app's own post, its edit and the deletion all reach it, as on Slack (nobody is connected here,
    # so each is an attempt that found no connection).
    def first_attempts_settled():
        firsts = [d for d in slack.deliveries if d.retry_attempt == 0]
        return len(firsts) >= 4 and all(d.status != "pending" for d in firsts) and firsts

    firsts = slack.wait_for(first_attempts_settled)
    assert [(d.type, d.status) for d in firsts] == [("message", "no_connection")] * 4


def test_post_errors(slack: LocalSlack, client: WebClient) -> None:
    channel = slack.channel_id("fine-tuning")
    cases = {
        "channel_not_found": lambda: client.chat_postMessage(channel="C0NOPE", text="x"),
        "not_in_channel": lambda: client.chat_postMessage(channel=slack.channel_id("general"), text="x"),
        "no_text": lambda: client.chat_postMessage(channel=channel),
        "msg_too_long": lambda: client.chat_postMessage(channel=channel, text="x" * 40_001),
        "message_not_found": lambda: client.chat_update(channel=channel, ts="1.000001", text="x"),
    }
    for code, call in cases.items():
        assert error_of(call).response["error"] == code
    human_ts = slack.post_message("fine-tuning", "alice", "mine")
    assert error_of(lambda: client.chat_update(channel=channel, ts=human_ts, text="x")).response["error"] == \
        "cant_update_message"


def test_invalid_blocks_name_the_pointer(slack: LocalSlack, client: WebClient) -> None:
    channel = slack.channel_id("fine-tuning")
    long_section = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    error = error_of(lambda: client.chat_postMessage(channel=channel, text="t", blocks=long_section)).response
    assert error["error"] == "invalid_blocks"
    assert error["errors"] == ["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
    button = {"type": "button", "text": {"type": "plain_text", "text": "b" * 76}, "action_id": "go"}
    error = error_of(lambda: client.chat_postMessage(
        channel=channel, text="t", blocks=[{"type": "actions", "elements": [button]}])).response
    assert "[json-pointer:/blocks/0/elements/0/text/text]" in error["errors"][0]
    many = [{"type": "divider"}] * 51
    assert error_of(lambda: client.chat_postMessage(channel=channel, text="t", blocks=many)).response["error"] == \
        "invalid_blocks"
    ok = client.chat_postMessage(channel=channel, text="t", blocks=[{"type": "divider"}])
    assert ok["message"]["blocks"][0]["block_id"]  # Slack fills in block ids


def test_msg_too_long_threshold_is_a_setting() -> None:
    with LocalSlack(msg_max_chars=4000) as strict:
        strict_client = WebClient(token=strict.bot_token, base_url=strict.api_url)
        channel = strict.channel_id("fine-tuning")
        assert error_of(lambda: strict_client.chat_postMessage(channel=channel, text="x" * 4001)).response["error"] == \
            "msg_too_long"
        strict_client.chat_postMessage(channel=channel, text="x" * 4000)


def test_ephemeral_reactions_permalink(slack: LocalSlack, client: WebClient) -> None:
    channel = slack.channel_id("fine-tuning")
    sent = client.chat_postEphemeral(channel=channel, user=slack.user_id("alice"), text="only you")
    assert slack.ephemerals("fine-tuning", "alice")[0]["ts"] == sent["message_ts"]
    assert slack.ephemerals(user="bob") == []
    outsider = slack.add_user("carol")
    assert error_of(lambda: client.chat_postEphemeral(channel=channel, user=outsider, text="x")).response["error"] \
        == "user_not_in_channel"

    ts = slack.post_message("fine-tuning", "alice", "data please")
    client.reactions_add(channel=channel, timestamp=ts, name="eyes")
    assert slack.message("fine-tuning", ts)["reactions"] == [{"name": "eyes", "users": [slack.bot_user_id],
                                                              "count": 1}]
    assert error_of(lambda: client.reactions_add(channel=channel, timestamp=ts, name="eyes")).response["error"] == \
        "already_reacted"
    link = client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"]
    assert link.endswith(f"/archives/{channel}/p{ts.replace('.', '')}")


def test_history_and_replies_paginate(slack: LocalSlack, client: WebClient) -> None:
    channel = slack.channel_id("fine-tuning")
    root = slack.post_message("fine-tuning", "alice", "root")
    for i in range(3):
        slack.post_message("fine-tuning", "bob", f"reply {i}", thread_ts=root)
    later = slack.post_message("fine-tuning", "alice", "later")
    history = client.conversations_history(channel=channel, limit=1)
    assert [m["ts"] for m in history["messages"]] == [later] and history["has_more"]
    rest = client.conversations_history(channel=channel, cursor=history["response_metadata"]["next_cursor"])
    assert [m["text"] for m in rest["messages"]] == ["root"] and not rest["has_more"]
    assert rest["messages"][0]["reply_count"] == 3
    replies = client.conversations_replies(channel=channel, ts=root)
    assert [m["text"] for m in replies["messages"]] == ["root", "reply 0", "reply 1", "reply 2"]
    assert all(m["thread_ts"] == root for m in replies["messages"])
    assert error_of(lambda: client.conversations_replies(channel=channel, ts="1.000001")).response["error"] == \
        "thread_not_found"
    assert error_of(lambda: client.conversations_history(channel=slack.channel_id("general"))).response["error"] \
        == "not_in_channel"
    members = client.conversations_members(channel=channel)["members"]
    assert set(members) == {slack.user_id("alice"), slack.user_id("bob"), slack.bot_user_id}
    assert client.users_info(user=slack.user_id("alice"))["user"]["name"] == "alice"
    assert client.conversations_info(channel=channel)["channel"]["is_member"] is True


def test_streaming_state_machine(slack: LocalSlack, client: WebClient) -> None:
    dm = slack.dm("alice")
    question = slack.post_message(dm, "alice", "hello model")
    started = client.chat_startStream(channel=dm, thread_ts=question, markdown_text="Hel")
    client.chat_appendStream(channel=dm, ts=started["ts"], markdown_text="lo")
    client.chat_stopStream(channel=dm, ts=started["ts"], markdown_text="!")
    assert slack.message(dm, started["ts"])["text"] == "Hello!"
    again = lambda: client.chat_appendStream(channel=dm, ts=started["ts"], markdown_text="more")  # noqa: E731
    assert error_of(again).response["error"] == "message_not_in_streaming_state"
    channel = slack.channel_id("fine-tuning")
    root = slack.post_message("fine-tuning", "alice", "q")
    no_recipient = lambda: client.chat_startStream(channel=channel, thread_ts=root)  # noqa: E731
    assert error_of(no_recipient).response["error"] == "invalid_arguments"


def test_assistant_status_clears_when_the_app_replies(slack: LocalSlack, client: WebClient) -> None:
    dm = slack.dm("alice")
    ts = slack.post_message(dm, "alice", "hi")
    client.assistant_threads_setStatus(channel_id=dm, thread_ts=ts, status="is thinking...")
    assert slack.thread_status(dm, ts)["status"] == "is thinking..."
    client.chat_postMessage(channel=dm, thread_ts=ts, text="answer")
    assert slack.thread_status(dm, ts) is None
    client.assistant_threads_setSuggestedPrompts(channel_id=dm, thread_ts=ts,
                                                 prompts=[{"title": "Help", "message": "help"}])


def test_rate_limit_answers_429_with_retry_after() -> None:
    with LocalSlack(rate_limits={"users.info": 2}) as limited:
        client = WebClient(token=limited.bot_token, base_url=limited.api_url)
        alice = limited.user_id("alice")
        client.users_info(user=alice)
        client.users_info(user=alice)
        error = error_of(lambda: client.users_info(user=alice))
        assert error.response.status_code == 429 and error.response["error"] == "ratelimited"
        assert int(error.response.headers["Retry-After"]) >= 1


def test_post_message_is_limited_per_channel() -> None:
    with LocalSlack() as limited:
        client = WebClient(token=limited.bot_token, base_url=limited.api_url)
        channel = limited.channel_id("fine-tuning")
        statuses = []
        for i in range(8):
            try:
                client.chat_postMessage(channel=channel, text=str(i))
                statuses.append(200)
            except SlackApiError as e:
                statuses.append(e.response.status_code)
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        client.chat_postMessage(channel=limited.dm("alice"), text="another channel is not limited by this one")


def test_injected_faults_and_the_sdk_retry_handler(slack: LocalSlack, client: WebClient) -> None:
    channel = slack.channel_id("fine-tuning")
    slack.inject_fault("chat.postMessage", error="ratelimited", retry_after=1)
    error = error_of(lambda: client.chat_postMessage(channel=channel, text="x"))
    assert error.response.status_code == 429 and error.response.headers["Retry-After"] == "1"

    retrying = WebClient(token=slack.bot_token, base_url=slack.api_url,
                         retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    slack.inject_fault("chat.postMessage", http_status=429, retry_after=1)
    started = time.monotonic()
    assert retrying.chat_postMessage(channel=channel, text="after a 429")["ok"]
    assert time.monotonic() - started >= 1.0

    slack.inject_fault("chat.update", error="internal_error", http_status=500, times=2)
    for _ in range(2):
        assert error_of(lambda: client.chat_update(channel=channel, ts="1.1", text="x")).response.status_code == 500
    assert error_of(lambda: client.chat_update(channel=channel, ts="1.1", text="x")).response["error"] == \
        "message_not_found"


def test_views_hash_conflict_external_id_and_push_limit(slack: LocalSlack, client: WebClient) -> None:
    def trigger() -> str:
        # Nobody is connected, so the command itself fails (dispatch_failed), but its trigger_id was issued.
        return slack.slash_command("fine-tuning", "alice", "/finetune").trigger_id

    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Step"}, "external_id": "wizard",
             "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "one"}}]}
    view = client.views_open(trigger_id=trigger(), view=modal)["view"]
    with pytest.raises(SlackApiError, match="hash_conflict"):
        client.views_update(view_id=view["id"], hash="stale", view=modal)
    updated = client.views_update(external_id="wizard", hash=view["hash"], view={**modal, "external_id": ""})["view"]
    assert updated["id"] == view["id"] and updated["hash"] != view["hash"]
    for _ in range(2):
        client.views_push(trigger_id=trigger(), view={**modal, "external_id": ""})
    assert len(slack.views("alice")) == 3
    with pytest.raises(SlackApiError, match="push_limit_reached"):
        client.views_push(trigger_id=trigger(), view={**modal, "external_id": ""})
    long_title = {**modal, "title": {"type": "plain_text", "text": "x" * 25}}
    with pytest.raises(SlackApiError) as caught:
        client.views_open(trigger_id=trigger(), view=long_title)
    assert caught.value.response["error"] == "invalid_arguments"
    assert "[json-pointer:/view/title/text]" in caught.value.response["response_metadata"]["messages"][0]
    slack.close_view(view["id"], "alice")
    with pytest.raises(SlackApiError, match="not_found"):  # a closed modal cannot be updated any more
        client.views_update(view_id=view["id"], view={**modal, "external_id": ""})
