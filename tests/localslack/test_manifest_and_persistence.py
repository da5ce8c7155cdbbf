"""The manifest decides what the app gets; a data_dir keeps the workspace across restarts; /_local/."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from localslack import LocalSlack

MANIFEST = {
    "display_information": {"name": "Tunehouse"},
    "features": {"bot_user": {"display_name": "tunehouse"},
                 "slash_commands": [{"command": "/finetune", "description": "Fine-tune"}]},
    "oauth_config": {"scopes": {"bot": ["app_mentions:read", "chat:write", "commands"]}},
    "settings": {"event_subscriptions": {"bot_events": ["app_mention"]}, "interactivity": {"is_enabled": True},
                 "socket_mode_enabled": True},
}


def test_only_subscribed_events_are_delivered_and_scopes_are_enforced(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yml"
    path.write_text(yaml.safe_dump(MANIFEST))
    with LocalSlack(manifest=path) as slack:
        client = WebClient(token=slack.bot_token, base_url=slack.api_url)
        assert client.auth_test().headers["x-oauth-scopes"] == "app_mentions:read,chat:write,commands"
        slack.post_message("fine-tuning", "alice", "no mention: message.channels is not subscribed")
        slack.post_message("fine-tuning", "alice", f"<@{slack.bot_user_id}> hi")
        slack.wait_for(lambda: slack.deliveries)
        assert [d.type for d in slack.deliveries if d.retry_attempt == 0] == ["app_mention"]

        with pytest.raises(SlackApiError) as caught:
            client.users_info(user=slack.user_id("alice"))
        assert caught.value.response["error"] == "missing_scope"
        assert caught.value.response["needed"] == "users:read"
        with pytest.raises(ValueError, match="not a valid command"):
            slack.slash_command("fine-tuning", "alice", "/other")


def test_a_manifest_whose_events_lack_their_scopes_is_refused() -> None:
    broken = {**MANIFEST, "settings": {"event_subscriptions": {"bot_events": ["message.channels"]}}}
    with pytest.raises(ValueError, match="channels:history"):
        LocalSlack(manifest=broken)


def test_a_data_dir_keeps_history_files_and_tokens(tmp_path: Path) -> None:
    with LocalSlack(data_dir=tmp_path) as first:
        ts = first.post_message("fine-tuning", "alice", "remember me")
        file_id, _ = first.share_file("fine-tuning", "bob", "a.csv", b"q,a\n1,2\n")
        token, channel = first.bot_token, first.channel_id("fine-tuning")
    assert (tmp_path / "files" / file_id).read_bytes() == b"q,a\n1,2\n"
    with LocalSlack(data_dir=tmp_path) as second:
        assert second.bot_token == token and second.channel_id("fine-tuning") == channel
        assert second.message("fine-tuning", ts)["text"] == "remember me"
        assert second.file(file_id)["content"] == b"q,a\n1,2\n"
        assert second.file(file_id)["url_private"].startswith(second.base_url)  # new port, right URL
        later = second.post_message("fine-tuning", "alice", "after restart")
        assert later > ts


def test_people_can_be_driven_over_local_http(slack: LocalSlack) -> None:
    local = httpx.Client(base_url=f"{slack.base_url}/_local", trust_env=False)
    changes = []
    slack.subscribe(changes.append)
    ts = local.post("/messages", json={"channel": "fine-tuning", "user": "alice", "text": "via http"}).json()["ts"]
    listed = local.get("/messages", params={"channel": "fine-tuning"}).json()["messages"]
    assert [m["ts"] for m in listed] == [ts]
    shared = local.post("/files", json={"channel": "fine-tuning", "user": "bob", "filename": "x.jsonl",
                                        "content_base64": base64.b64encode(b"{}\n").decode()}).json()
    assert slack.file(shared["file_id"])["content"] == b"{}\n"
    assert [c["kind"] for c in changes] == ["message_posted", "message_posted"]
    assert [c["kind"] for c in local.get("/changes", params={"after": changes[0]["seq"] - 1}).json()["changes"]] \
        == ["message_posted", "message_posted"]
    refused = local.post("/messages", json={"channel": "nowhere", "user": "alice", "text": "x"})
    assert refused.status_code == 400 and refused.json()["error"] == "channel_not_found"
    assert local.post("/faults", json={"method": "auth.test", "error": "invalid_auth"}).json() == {"ok": True}
    with pytest.raises(SlackApiError, match="invalid_auth"):
        WebClient(token=slack.bot_token, base_url=slack.api_url).auth_test()
    deliveries = local.get("/deliveries").json()["deliveries"]
    assert {d["type"] for d in deliveries} == {"message", "file_shared"}
