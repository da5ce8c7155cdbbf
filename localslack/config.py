"""Settings shared by the parts of the local Slack (one instance per LocalSlack)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .manifest import Manifest


@dataclass
class Settings:
    bot_token: str
    app_token: str
    signing_secret: str
    manifest: Manifest = field(default_factory=Manifest)
    events_url: str | None = None
    """Set: HTTP mode, every delivery is a signed POST here. Unset: Socket Mode."""
    ack_timeout: float = 3.0
    retry_delays: tuple[float, ...] = (0.0, 60.0, 300.0)
    """Slack retries an unacknowledged event 3 times: at once, after 1 minute, after 5 minutes."""
    msg_max_chars: int = 40_000
    trigger_ttl: float = 3.0
    response_url_uses: int = 5
    response_url_ttl: float = 30 * 60
    share_delay: float = 0.2
    """files.completeUploadExternal answers at once and shares the file a moment later, as Slack does."""
    base_url: str = ""
    """http://host:port, known once the server is bound."""
