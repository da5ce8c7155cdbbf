"""The app's manifest, as far as the workspace needs it: which events it gets, its scopes, its commands.

Slack delivers only the `bot_events` an app subscribes to, refuses Web API calls that need a scope the app
lacks (`missing_scope`), and will not save a manifest whose events need a scope it does not request. With
no manifest the emulator behaves as an app with the usual bot events and every scope this emulator knows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Events the emulator produces, with the scope Slack requires to subscribe to each.
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    "file_shared": "files:read",
    "reaction_added": "reactions:read",
    "app_home_opened": None,
    "member_joined_channel": "channels:read",
}
DEFAULT_BOT_EVENTS = (
    "app_mention", "message.channels", "message.groups", "message.im", "message.mpim", "file_shared",
    "app_home_opened",
)
ALL_SCOPES = (
    "app_mentions:read", "assistant:write", "channels:history", "channels:read", "chat:write", "commands",
    "files:read", "files:write", "groups:history", "groups:read", "im:history", "im:read", "im:write", "mpim:history",
    "mpim:read", "reactions:read", "reactions:write", "users:read",
)


@dataclass
class Manifest:
    app_name: str = "tunehouse"
    bot_name: str = "tunehouse"
    bot_events: tuple[str, ...] = DEFAULT_BOT_EVENTS
    scopes: tuple[str, ...] = ALL_SCOPES
    commands: tuple[str, ...] | None = None  # None: any command is the app's
    interactivity: bool = True
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, source: Path | str | dict | None) -> Manifest:
        """Read a manifest (YAML or JSON path, or a dict); None gives the permissive default.

        Raises:
            ValueError: a subscribed event needs a scope the manifest does not request (Slack refuses
                such a manifest) or an event this emulator cannot produce.
        """
        if source is None:
            return cls()
        data = source if isinstance(source, dict) else _read(Path(source))
        features = data.get("features", {})
        settings = data.get("settings", {})
        manifest = cls(
            app_name=data.get("display_information", {}).get("name", "tunehouse"),
            bot_name=features.get("bot_user", {}).get("display_name", "tunehouse"),
            bot_events=tuple(settings.get("event_subscriptions", {}).get("bot_events", [])),
            scopes=tuple(data.get("oauth_config", {}).get("scopes", {}).get("bot", [])),
            commands=tuple(c["command"] for c in features.get("slash_commands", [])),
            interactivity=bool(settings.get("interactivity", {}).get("is_enabled", False)),
            raw=data,
        )
        for event in manifest.bot_events:
            if event not in EVENT_SCOPES:
                raise ValueError(f"bot event {event!r} is not one this local Slack produces")
            needed = EVENT_SCOPES[event]
            if needed and needed not in manifest.scopes:
                raise ValueError(f"bot event {event!r} needs the scope {needed!r}, which the manifest lacks")
        return manifest

    def subscribes(self, event_type: str, channel_type: str | None = None) -> bool:
        """Whether an event reaches the app: `message` is subscribed per conversation type."""
        if event_type == "message":
            kind = {"channel": "channels", "group": "groups", "im": "im", "mpim": "mpim"}[channel_type or "channel"]
            return f"message.{kind}" in self.bot_events
        return event_type in self.bot_events


def _read(path: Path) -> dict:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
