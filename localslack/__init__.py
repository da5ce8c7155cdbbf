"""localslack: a faithful local Slack for tunehouse's tests and for running the bot without Slack.

A Slack workspace on loopback that speaks Slack's wire protocols, so the bot runs unchanged against it
(it only sees `SLACK_API_URL` and its tokens):

- the Web API at `http://127.0.0.1:PORT/api/<method>` (chat, files upload v2, views, conversations,
  reactions, streaming, assistant threads) with Slack's errors, Block Kit limits and rate limits (429);
- Socket Mode (apps.connections.open → single-use `ws://…/link/?ticket=…`, `hello`, envelopes, acks,
  `disconnect`), or, with `events_url`, the Events API over signed HTTP POSTs;
- deliveries retried as Slack retries them (3 s ack deadline, then at once, +1 min, +5 min);
- hosted files (`url_private_download` needs the bot token), response URLs and trigger ids with Slack's
  limits.

People are driven from Python (or JSON under `/_local/`): post, share a file, run a slash command, click,
submit a modal, open the home tab. Nothing here is imported by the bot.

In a test::

    from localslack import LocalSlack
    with LocalSlack(retry_delays=(0.0, 1.0, 2.0)) as slack:
        app = App(client=WebClient(token=slack.bot_token, base_url=slack.api_url))
        SocketModeHandler(app, slack.app_token).connect()
        slack.wait_connected()
        ts = slack.post_message("fine-tuning", "alice", f"hi <@{slack.bot_user_id}>")
        reply = slack.wait_for_message("fine-tuning", thread_ts=ts)

As a process (prints SLACK_API_URL and the tokens to give the bot)::

    python -m localslack --port 8000 --data-dir ./localslack-data

Tests that freeze time with freezegun should let the server's loop keep real time:
`freezegun.configure(extend_ignore_list=["asyncio", "localslack"])`.
"""

from .errors import SlackError
from .events import Delivery, DeliveryFailed
from .interactivity import CommandHandle, Interaction
from .server import LocalSlack

__all__ = ["CommandHandle", "Delivery", "DeliveryFailed", "Interaction", "LocalSlack", "SlackError"]
