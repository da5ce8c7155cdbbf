"""Fixtures: a started LocalSlack, real slack-sdk clients, a real Bolt app over Socket Mode."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

from localslack import LocalSlack


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack-sdk's Socket Mode client and WebClient honour HTTP(S)_PROXY and ignore NO_PROXY."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack(ack_timeout=1.0, retry_delays=(0.0, 0.3, 0.3)) as running:
        yield running


@pytest.fixture
def client(slack: LocalSlack) -> WebClient:
    return WebClient(token=slack.bot_token, base_url=slack.api_url)


@pytest.fixture
def bolt(slack: LocalSlack) -> Iterator[App]:
    """A Bolt app connected over Socket Mode with slack-sdk's builtin client (Bolt's default)."""
    app = App(client=WebClient(token=slack.bot_token, base_url=slack.api_url))
    handler = SocketModeHandler(app, slack.app_token)
    handler.connect()
    slack.wait_connected()
    yield app
    close_quickly(slack, handler)


def close_quickly(slack: LocalSlack, handler: SocketModeHandler) -> None:
    """Close a Socket Mode handler without waiting for it: the builtin client's close blocks on a 3 s
    socket read and a 1 s queue poll. Stop it from reconnecting, cut the connection from the server
    side, and let it finish closing in the background."""
    handler.client.auto_reconnect_enabled = handler.client.default_auto_reconnect_enabled = False
    slack.drop_sockets()
    threading.Thread(target=handler.close, daemon=True).start()
