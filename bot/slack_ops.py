"""Slack mechanics in one place: downloading a shared file safely, uploading into a thread, posting text that
Slack accepts. Listeners call these and stay a few lines long.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

SLACK_FILE_HOST_SUFFIX = ".slack.com"
GONE_ERRORS = ("not_in_channel", "channel_not_found", "is_archived", "is_inactive")
"""Slack's answers when the bot can no longer post in a conversation: it was removed, or the channel was
deleted or archived. Trying again will not help."""
DOWNLOAD_TIMEOUT_S = 60


class DownloadRefused(Exception):
    """A shared file the bot will not or cannot read; the message says why, for the person who shared it."""


@dataclass(frozen=True)
class SharedFile:
    id: str
    name: str
    size: int
    url: str
    user: str
    mimetype: str = ""


def shared_file(info: dict) -> SharedFile:
    """The fields the bot uses from a Slack file object (a `files[]` entry or `files.info`'s `file`)."""
    return SharedFile(
        id=info["id"],
        name=info.get("name") or info.get("title") or info["id"],
        size=int(info.get("size") or 0),
        url=info.get("url_private_download") or info.get("url_private") or "",
        user=info.get("user", ""),
        mimetype=info.get("mimetype", ""),
    )


def token_may_go_to(url: str, api_url: str) -> bool:
    """The bot token is sent only to Slack's own hosts or to the configured Web API's host, never elsewhere."""
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    api_host = (urlparse(api_url).hostname or "").lower()
    if parsed.scheme not in ("https", "http"):
        return False
    if host == api_host:
        return True
    return parsed.scheme == "https" and (host == "slack.com" or host.endswith(SLACK_FILE_HOST_SUFFIX))


def download(file: SharedFile, *, token: str, api_url: str, max_bytes: int, folder: Path) -> Path:
    """Stream a shared file to disk with the bot token, refusing what is too large before reading it.

    Raises:
        DownloadRefused: too large, a URL outside Slack, no access (Slack answers with an HTML login page),
            or the file is gone.
    """
    if file.size > max_bytes:
        raise DownloadRefused(f"{file.name} is {_megabytes(file.size)}; the limit is {_megabytes(max_bytes)}.")
    if not file.url:
        raise DownloadRefused(f"Slack gave no download link for {file.name}.")
    if not token_may_go_to(file.url, api_url):
        log.warning("refused to send the bot token to %s (file %s)", urlparse(file.url).hostname, file.id)
        raise DownloadRefused(f"The link to {file.name} points outside Slack, so I did not fetch it.")
    folder.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=f"{file.id}-", suffix=".part", delete=False)
    path = Path(handle.name)
    try:
        with handle, httpx.stream(
            "GET", file.url, headers={"Authorization": f"Bearer {token}"}, timeout=DOWNLOAD_TIMEOUT_S,
            follow_redirects=True,
        ) as response:
            if response.status_code == 404:
                raise DownloadRefused(f"{file.name} was deleted before I could read it.")
            if response.status_code >= 400:
                raise DownloadRefused(f"Slack answered {response.status_code} when I downloaded {file.name}.")
            if response.headers.get("content-type", "").startswith("text/html") and not file.name.lower().endswith(
                (".html", ".htm")
            ):
                raise DownloadRefused(
                    f"I have no access to {file.name} (Slack answered with a login page): "
                    "check that the app has the files:read scope and is in this channel."
                )
            received = 0
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadRefused(f"{file.name} is larger than the limit of {_megabytes(max_bytes)}.")
                handle.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def upload_to_thread(
    client: WebClient, *, channel: str, thread_ts: str, path: Path, filename: str, title: str, comment: str = "",
    alt_text: str | None = None,
) -> str:
    """Upload a file into a thread (Slack's three-step upload); returns the file id."""
    response = client.files_upload_v2(
        file=str(path), filename=filename, title=title, channel=channel, thread_ts=thread_ts,
        initial_comment=comment or None, alt_txt=alt_text,
    )
    return response["file"]["id"]


def post_in_thread(client: WebClient, *, channel: str, thread_ts: str, text: str, blocks: list | None = None) -> str:
    """Post a reply; returns its ts. Blocks Slack refuses fall back to the text alone, so nothing is lost."""
    try:
        response = client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks)
    except SlackApiError as error:
        if blocks is None or error.response.get("error") not in ("invalid_blocks", "msg_blocks_too_long"):
            raise
        log.error("Slack refused a message's blocks (%s); posting its text alone", error.response.get("error"))
        response = client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)
    return response["ts"]


def conversation_gone(error: SlackApiError) -> bool:
    return error.response.get("error") in GONE_ERRORS


def tell_directly(client: WebClient, user: str, text: str) -> None:
    """A direct message from the bot, for what could not be said where it belonged; logged if that fails too."""
    try:
        client.chat_postMessage(channel=user, text=text)
    except SlackApiError as error:
        log.warning("could not tell %s directly: %s", user, error.response.get("error"))


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size:,} bytes"
