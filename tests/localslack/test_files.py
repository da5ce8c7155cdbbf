"""Files: upload v2's three steps, asynchronous sharing, downloads that need the bot token."""

from __future__ import annotations

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from localslack import LocalSlack


def test_files_upload_v2_shares_into_the_thread(slack: LocalSlack, client: WebClient) -> None:
    channel = slack.channel_id("fine-tuning")
    root = slack.post_message("fine-tuning", "alice", "my dataset")
    done = client.files_upload_v2(channel=channel, thread_ts=root, content=b'{"messages": []}\n',
                                  filename="converted.jsonl", title="Converted", initial_comment="Here it is")
    file_id = done["file"]["id"]
    assert done["file"]["title"] == "Converted"
    # Shared a moment later, as Slack does: files.info shows the share once it happened.
    message = slack.wait_for_message("fine-tuning", root, lambda m: m.get("files"))
    assert message["text"] == "Here it is" and message["subtype"] == "file_share" and message["thread_ts"] == root
    shown = message["files"][0]
    assert shown["id"] == file_id and shown["size"] == len(b'{"messages": []}\n') and shown["mode"] == "hosted"
    info = client.files_info(file=file_id)["file"]
    assert info["shares"]["public"][channel][0]["thread_ts"] == root
    assert info["url_private_download"].startswith(slack.base_url + "/files-pri/")

    with_token = httpx.get(info["url_private_download"], headers={"Authorization": f"Bearer {slack.bot_token}"},
                           trust_env=False)
    assert with_token.status_code == 200 and with_token.content == b'{"messages": []}\n'
    without = httpx.get(info["url_private_download"], trust_env=False)
    assert without.status_code == 200 and without.headers["content-type"].startswith("text/html")
    assert b"messages" not in without.content


def test_upload_length_is_checked(slack: LocalSlack, client: WebClient) -> None:
    step1 = client.files_getUploadURLExternal(filename="a.csv", length=10)
    short = httpx.post(step1["upload_url"], content=b"12345", trust_env=False)
    assert short.status_code == 400
    with pytest.raises(SlackApiError) as caught:
        client.files_completeUploadExternal(files=[{"id": step1["file_id"]}],
                                            channel_id=slack.channel_id("fine-tuning"))
    assert caught.value.response["error"] == "file_upload_not_found"
    exact = httpx.post(step1["upload_url"], content=b"0123456789", trust_env=False)
    assert exact.status_code == 200 and exact.text == "OK - 10"
    assert httpx.post(step1["upload_url"], content=b"0123456789", trust_env=False).status_code == 404  # used


def test_a_person_shares_a_file_and_deletes_it(slack: LocalSlack, client: WebClient) -> None:
    file_id, ts = slack.share_file("fine-tuning", "alice", "train.csv", b"prompt,completion\nhi,there\n",
                                   text="please tune")
    message = slack.message("fine-tuning", ts)
    assert message["subtype"] == "file_share" and message["files"][0]["name"] == "train.csv"
    assert message["files"][0]["filetype"] == "csv" and message["files"][0]["user"] == slack.user_id("alice")
    assert slack.file(file_id)["content"] == b"prompt,completion\nhi,there\n"
    url = client.files_info(file=file_id)["file"]["url_private_download"]

    slack.delete_file(file_id)
    gone = httpx.get(url, headers={"Authorization": f"Bearer {slack.bot_token}"}, trust_env=False)
    assert gone.status_code == 404
    with pytest.raises(SlackApiError) as caught:
        client.files_info(file=file_id)
    assert caught.value.response["error"] == "file_deleted"
    assert slack.message("fine-tuning", ts)["files"] == [{"id": file_id, "mode": "tombstone"}]


def test_files_in_channels_the_bot_is_not_in_are_not_found(slack: LocalSlack, client: WebClient) -> None:
    file_id, _ = slack.share_file("general", "alice", "secret.txt", b"x")
    with pytest.raises(SlackApiError) as caught:
        client.files_info(file=file_id)
    assert caught.value.response["error"] == "file_not_found"
