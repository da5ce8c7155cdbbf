"""The App Home tab: what the viewer can do, their jobs (with their models) and the datasets they shared."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient

from bot import blocks


def register(app: App, services) -> None:
    @app.event("app_home_opened")
    def home_opened(event: dict, client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        user = event["user"]
        view = blocks.home_view(services.storage.datasets_of_user(user), services.storage.jobs_of_user(user))
        client.views_publish(user_id=user, view=view)
