"""The Slack listeners, one module per Slack surface, each with `register(app, services)`.

Every event the manifest subscribes to has a listener here: in Socket Mode bolt does not acknowledge an
event nobody listens to, and Slack then delivers it again and again.
"""

from __future__ import annotations

from slack_bolt import App

from bot.job_threads import adopt_unknown, adopt_unstarted

from . import actions, channels, commands, files, home, messages, views


def register(app: App, services) -> None:
    channels.register(app, services)  # first: the channels where the bot works
    files.register(app, services)  # before messages: the `file_share` subtype is a message too
    messages.register(app, services)
    commands.register(app, services)
    actions.register(app, services)
    views.register(app, services)
    home.register(app, services)


def resume_unfinished(app: App, services) -> None:
    """Finish what the last run claimed and did not complete (it was killed half way)."""
    files.resume(app, services)
    messages.resume(app, services)
    adopt_unstarted(services, app.client)
    adopt_unknown(services, app.client)
