"""manifest.yml against Slack's own schema, and against what the bot listens to and calls.

A missing `message.channels` subscription, or an event with no listener, fails silently on Slack; here
it fails a test. Slack's schema lives in ../shared (the development workspace and CI, not a user's clone):
without it the schema test skips and the others still run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "reference" / "slack" / "manifest.schema.1.0.0.json"

# The scope each subscribed event needs (Slack's event reference), and a minimal payload of it.
EVENTS = {
    "app_mention": ("app_mentions:read", {"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@U0> hi", "ts": "1.1"}),
    "message.channels": ("channels:history", {"type": "message", "channel": "C1", "channel_type": "channel", "user": "U1", "text": "hi", "ts": "1.1"}),
    "message.groups": ("groups:history", {"type": "message", "channel": "G1", "channel_type": "group", "user": "U1", "text": "hi", "ts": "1.1"}),
    "message.im": ("im:history", {"type": "message", "channel": "D1", "channel_type": "im", "user": "U1", "text": "hi", "ts": "1.1"}),
    "file_shared": ("files:read", {"type": "file_shared", "file_id": "F1", "user_id": "U1", "file": {"id": "F1"}, "channel_id": "C1"}),
    "app_home_opened": (None, {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"}),
}
# Scopes for what the bot does besides receiving events: posting, slash commands, uploading attachments.
CALLS = {"chat:write", "commands", "files:write"}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load((ROOT / "manifest.yml").read_text())


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> App:
    from bot.app import Services, build_app
    from bot.backend import Backend
    from bot.settings import BotSettings
    from storage import Storage

    settings = BotSettings(SLACK_BOT_TOKEN="xoxb-test", SLACK_APP_TOKEN="xapp-test", SLACK_API_URL="http://127.0.0.1:9/api/")
    storage = Storage(tmp_path_factory.mktemp("bot") / "bot.db")
    services = Services(settings=settings, storage=storage, backend=Backend(client=None, kind="embedded", base_url=""))
    return build_app(services, verify_token=False)


def test_manifest_is_valid_for_slack(manifest):
    if not SCHEMA.exists():
        pytest.skip(f"Slack's manifest schema is not at {SCHEMA} (only the development workspace has it)")
    import jsonschema

    jsonschema.validate(manifest, json.loads(SCHEMA.read_text()))


def test_every_listened_event_is_subscribed_with_its_scope(manifest):
    subscribed = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert set(EVENTS) <= subscribed, f"not subscribed: {set(EVENTS) - subscribed}"
    for event, (scope, _) in EVENTS.items():
        assert scope is None or scope in scopes, f"{event} needs the {scope} scope"
    assert CALLS <= scopes
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/finetune"]
    assert manifest["settings"]["interactivity"]["is_enabled"] and manifest["settings"]["socket_mode_enabled"]


def test_every_subscribed_event_has_a_listener(manifest, app):
    """In Socket Mode, bolt never acknowledges an event without a listener, and Slack redelivers it."""
    for event_name in manifest["settings"]["event_subscriptions"]["bot_events"]:
        event = {**EVENTS[event_name][1], "event_ts": "1.1"}
        body = {"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event": event, "event_id": "Ev1", "event_time": 1}
        request = BoltRequest(body=body, mode="socket_mode")
        response = BoltResponse(status=200)
        matched = [listener for listener in app._listeners if listener.matches(req=request, resp=response)]
        assert matched, f"no listener for the subscribed event {event_name}"
