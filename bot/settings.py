"""The bot's settings: one pydantic-settings class, read from the environment (and a `.env` file), passed down.

The names are the ones Slack's and OpenAI's own tools use (`SLACK_BOT_TOKEN`, `OPENAI_API_KEY`, ...), so a
team's existing environment works as it is. docs/slack.md lists each one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SLACK_API_URL = "https://slack.com/api/"
DEFAULT_BASE_MODEL = "gpt-4o-mini-2024-07-18"


def _env(name: str):
    return Field(default=None, validation_alias=AliasChoices(name))


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = _env("SLACK_BOT_TOKEN")
    """The bot token (xoxb-...) from the app's "OAuth & Permissions" page."""

    slack_app_token: SecretStr | None = _env("SLACK_APP_TOKEN")
    """An app-level token (xapp-...) with `connections:write`: Socket Mode. Without it, HTTP mode."""

    slack_signing_secret: SecretStr | None = _env("SLACK_SIGNING_SECRET")
    """Verifies that HTTP-mode requests come from Slack."""

    slack_api_url: str = Field(default=SLACK_API_URL, validation_alias=AliasChoices("SLACK_API_URL"))
    """Base of Slack's Web API; a local workspace sets its own. Every Web API call goes here."""

    admin_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("SLACK_ADMIN_USERS")
    )
    """User ids (comma-separated) who may act on anyone's jobs."""

    allowed_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("SLACK_ALLOWED_CHANNELS")
    )
    """Channel ids (comma-separated) where the bot works, declining politely elsewhere; empty: wherever it is
    invited. Direct messages with the bot always work."""

    data_dir: Path = Field(default=Path("tunehouse-data"), validation_alias=AliasChoices("TUNEHOUSE_DATA_DIR"))
    """The bot's state (`bot.db`, datasets) and the embedded backend's data (`backend/`)."""

    openai_api_key: SecretStr | None = _env("OPENAI_API_KEY")
    openai_base_url: str | None = _env("OPENAI_BASE_URL")
    """With neither set, the bot starts the embedded tunehouse backend and uses it."""

    base_model: str = Field(default=DEFAULT_BASE_MODEL, validation_alias=AliasChoices("TUNEHOUSE_BASE_MODEL"))
    """The model fine-tuned when nobody chooses another (on the embedded backend, an alias of its default)."""

    max_file_bytes: int = Field(
        default=50 * 1024 * 1024, gt=0, validation_alias=AliasChoices("TUNEHOUSE_MAX_FILE_BYTES")
    )
    """Shared files larger than this are refused before they are downloaded."""

    chat_per_minute: int = Field(default=20, gt=0, validation_alias=AliasChoices("TUNEHOUSE_CHAT_PER_MINUTE"))
    """Questions one person may ask the models per minute (mentions, thread replies, DMs, ask, compare, eval)."""

    chat_max_tokens: int = Field(default=1024, gt=0, validation_alias=AliasChoices("TUNEHOUSE_CHAT_MAX_TOKENS"))
    """The longest answer asked of a model in a conversation or `/finetune ask` (tokens)."""

    @field_validator(
        "slack_bot_token", "slack_app_token", "slack_signing_secret", "openai_api_key", "openai_base_url", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value):
        """`SLACK_APP_TOKEN=` in a .env file means no app token (HTTP mode), not an empty one."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_users", "allowed_channels", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def uses_embedded_backend(self) -> bool:
        return self.openai_api_key is None and self.openai_base_url is None

    @property
    def slack_hosts(self) -> set[str]:
        """Hosts the bot token may be sent to: Slack's own, and the configured Web API's."""
        return {urlparse(self.slack_api_url).hostname or ""}

    def works_in(self, channel: str) -> bool:
        """Whether the bot works in `channel`: any when no channels are listed; a direct message always."""
        return not self.allowed_channels or channel in self.allowed_channels or channel.startswith("D")

    def secret(self, name: str) -> str:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else ""
