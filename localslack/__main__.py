"""`python -m localslack`: run the local Slack as its own process and print what the bot needs."""

from __future__ import annotations

import argparse
import signal
import threading

from .server import LocalSlack


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m localslack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="Web API port (default 0: any free one)")
    parser.add_argument("--socket-port", type=int, default=0, help="Socket Mode WebSocket port (0: any)")
    parser.add_argument("--data-dir", default=None, help="keep the workspace here across restarts")
    parser.add_argument("--manifest", default=None, help="the app's manifest (YAML or JSON)")
    parser.add_argument("--events-url", default=None, help="HTTP mode: POST signed deliveries here")
    parser.add_argument("--no-rate-limits", action="store_true")
    args = parser.parse_args()

    slack = LocalSlack(data_dir=args.data_dir, host=args.host, port=args.port, socket_port=args.socket_port,
                       manifest=args.manifest, events_url=args.events_url, rate_limits=not args.no_rate_limits)
    slack.start()
    print(f"SLACK_API_URL={slack.api_url}")
    print(f"SLACK_BOT_TOKEN={slack.bot_token}")
    print(f"SLACK_APP_TOKEN={slack.app_token}")
    print(f"SLACK_SIGNING_SECRET={slack.signing_secret}")
    print(f"# team {slack.team_id}, bot user {slack.bot_user_id}; people: alice, bob; #fine-tuning, #general",
          flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    slack.stop()


if __name__ == "__main__":
    main()
