"""Slash commands, buttons, modals and the home tab: the payloads Slack sends and what their answers do.

- A slash command's ack (its text/blocks) is shown to the person as an ephemeral message (or in the
  channel with `response_type: in_channel`); a missed ack shows `operation_timeout`.
- `response_url` (slash commands, message buttons) takes JSON: `text`, `blocks`, `response_type`,
  `replace_original`, `delete_original`, `thread_ts`; 5 uses within 30 minutes, then 404 `used_url` /
  `expired_url`.
- `trigger_id` opens a modal once, within 3 s (`expired_trigger_id` after).
- A `view_submission` ack may carry `response_action`: `errors` (the modal stays, errors shown inline),
  `update`, `push`, `clear`; no action closes the submitted view.
"""

from __future__ import annotations

import concurrent.futures
import copy
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .blocks import buttons, check_view
from .config import Settings
from .errors import SlackError
from .events import DeliveryFailed, Dispatcher
from .ids import new_id, trigger_id
from .messages import Conversations
from .state import Workspace

MODAL_STACK_MAX = 3


@dataclass
class Interaction:
    """What a slash command or a click handed to the app; `ack()` waits for the app's answer."""

    trigger_id: str
    response_url: str | None
    future: concurrent.futures.Future = field(repr=False)

    def ack(self, timeout: float = 10.0) -> Any:
        """The ack's payload (None for an empty ack).

        Raises:
            DeliveryFailed: the app did not answer in time (`operation_timeout`) or was not connected.
        """
        return self.future.result(timeout)


CommandHandle = Interaction


class Interactions:
    def __init__(self, ws: Workspace, settings: Settings, dispatcher: Dispatcher, conversations: Conversations):
        self.ws = ws
        self.settings = settings
        self.dispatcher = dispatcher
        self.conversations = conversations

    # ------------------------------------------------------------------ shared payload pieces

    def _user(self, user_id: str) -> dict:
        user = self.ws.user(user_id)
        return {"id": user_id, "username": user["name"], "name": user["name"], "team_id": self.ws.team["id"]}

    def _team(self) -> dict:
        return {"id": self.ws.team["id"], "domain": self.ws.team["domain"]}

    def issue_trigger(self, user: str) -> str:
        trigger = trigger_id()
        with self.ws.lock:
            self.ws.triggers[trigger] = {"user": user, "issued": time.monotonic(), "used": False}
        return trigger

    def use_trigger(self, trigger: str) -> str:
        """The user a trigger_id belongs to; it is spent.

        Raises:
            SlackError: `invalid_trigger_id` (unknown), `expired_trigger_id` (used, or over 3 s old).
        """
        with self.ws.lock:
            record = self.ws.triggers.get(trigger)
            if record is None:
                raise SlackError("invalid_trigger_id")
            if record["used"] or time.monotonic() - record["issued"] > self.settings.trigger_ttl:
                raise SlackError("expired_trigger_id")
            record["used"] = True
            return record["user"]

    def issue_response_url(self, kind: str, channel: str, user: str, origin: dict | None) -> str:
        secret = secrets.token_urlsafe(18)
        with self.ws.lock:
            self.ws.response_urls[secret] = {"kind": kind, "channel": channel, "user": user, "origin": origin,
                                             "created": time.time(), "uses": 0}
        number = secrets.randbelow(10**12)
        return f"{self.settings.base_url}/{kind}/{self.ws.team['id']}/{number}/{secret}"

    # ------------------------------------------------------------------ slash commands

    def slash_command(self, channel_id: str, user: str, command: str, text: str = "") -> Interaction:
        ws = self.ws
        commands = self.settings.manifest.commands
        if commands is not None and command not in commands:
            raise ValueError(f"{command} is not a valid command (the manifest has {', '.join(commands) or 'none'})")
        with ws.lock:
            channel = ws.channel(channel_id)
            sender = ws.user(user)
        trigger = self.issue_trigger(user)
        response_url = self.issue_response_url("commands", channel_id, user, None)
        name = channel.get("name") or ("directmessage" if channel["is_im"] else "privategroup")
        payload = {
            "token": ws.verification_token, "team_id": ws.team["id"], "team_domain": ws.team["domain"],
            "channel_id": channel_id, "channel_name": name, "user_id": user, "user_name": sender["name"],
            "command": command, "text": text, "api_app_id": ws.app["id"], "is_enterprise_install": "false",
            "response_url": response_url, "trigger_id": trigger,
        }
        future = self.dispatcher.request("slash_commands", payload, command, accepts_response_payload=True)
        future.add_done_callback(lambda f: self._after_command_ack(f, channel_id, user, command, response_url))
        return Interaction(trigger, response_url, future)

    def _after_command_ack(self, future: concurrent.futures.Future, channel_id: str, user: str, command: str,
                           response_url: str) -> None:
        try:
            answer = future.result()
        except DeliveryFailed as failure:
            self.conversations.ephemeral(channel_id, user, f'{command} failed with the error "{failure}"',
                                         source="slack", check=False)
            return
        if answer and (answer.get("text") or answer.get("blocks")):
            self._respond(response_url.rsplit("/", 1)[1], answer, count_use=False, source="ack")

    # ------------------------------------------------------------------ response_url

    def respond(self, secret: str, body: dict) -> tuple[int, str]:
        """A POST to a response_url: (HTTP status, body text) as Slack answers it."""
        with self.ws.lock:
            record = self.ws.response_urls.get(secret)
            if record is None:
                return 404, "no_active_hooks"
            if time.time() - record["created"] > self.settings.response_url_ttl:
                return 404, "expired_url"
            if record["uses"] >= self.settings.response_url_uses:
                return 404, "used_url"
            try:
                self._respond(secret, body, count_use=True)
            except SlackError as e:
                return 400, e.error
        return 200, "ok"

    def _respond(self, secret: str, body: dict, count_use: bool, source: str = "response_url") -> None:
        ws, conversations = self.ws, self.conversations
        with ws.lock:
            record = ws.response_urls[secret]
            if count_use:
                record["uses"] += 1
            origin, channel_id, user = record["origin"], record["channel"], record["user"]
            if body.get("delete_original"):
                self._delete_origin(origin)
                record["origin"] = None
                return
            text, blocks = body.get("text", ""), body.get("blocks")
            if body.get("replace_original") and origin is not None:
                if origin["type"] == "ephemeral":
                    ephemeral = self._find_ephemeral(origin["ts"])
                    checked = conversations.check_content(text, blocks)
                    ephemeral.update(text=text or "", blocks=checked or [])
                    ws.changed("ephemeral_replaced", channel=channel_id, user=user, ts=origin["ts"])
                else:
                    conversations.update_as_bot(channel_id, origin["ts"], text, blocks if blocks is not None else [])
                return
            if body.get("response_type") == "in_channel":
                message = conversations.post_as_bot(channel_id, text, blocks, thread_ts=body.get("thread_ts"),
                                                    metadata=body.get("metadata"), require_member=False)
                record["origin"] = {"type": "message", "ts": message["ts"], "channel": channel_id}
            else:
                ephemeral = conversations.ephemeral(channel_id, user, text, blocks, thread_ts=body.get("thread_ts"),
                                                    source=source)
                record["origin"] = {"type": "ephemeral", "ts": ephemeral["ts"], "channel": channel_id}

    def _delete_origin(self, origin: dict | None) -> None:
        if origin is None:
            return
        if origin["type"] == "ephemeral":
            ephemeral = self._find_ephemeral(origin["ts"])
            self.ws.ephemerals.remove(ephemeral)
            self.ws.changed("ephemeral_deleted", channel=ephemeral["channel"], user=ephemeral["user"],
                            ts=origin["ts"])
        else:
            self.conversations.delete(origin["channel"], origin["ts"], by_bot=False)

    def _find_ephemeral(self, ts: str) -> dict:
        for ephemeral in self.ws.ephemerals:
            if ephemeral["ts"] == ts:
                return ephemeral
        raise SlackError("message_not_found")

    # ------------------------------------------------------------------ clicks

    def click(self, channel_id: str, message_ts: str, action_id: str, user: str, value: str | None = None,
              ) -> Interaction:
        """Click a button (or choose `value` in a select) in a message or an ephemeral message."""
        ws = self.ws
        if not self.settings.manifest.interactivity:
            raise ValueError("the app's manifest does not enable interactivity")
        with ws.lock:
            channel = ws.channel(channel_id)
            message = ws.find_message(channel_id, message_ts, missing_ok=True)
            is_ephemeral = message is None
            if is_ephemeral:
                message = self._find_ephemeral(message_ts)
                if message["user"] != user:
                    raise SlackError("message_not_found")
            action = self._action(message.get("blocks", []), action_id, value)
            origin = {"type": "ephemeral" if is_ephemeral else "message", "ts": message_ts, "channel": channel_id}
            trigger = self.issue_trigger(user)
            response_url = self.issue_response_url("actions", channel_id, user, origin)
            payload: dict[str, Any] = {
                "type": "block_actions", "user": self._user(user), "api_app_id": ws.app["id"],
                "token": ws.verification_token,
                "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id,
                              "is_ephemeral": is_ephemeral},
                "trigger_id": trigger, "team": self._team(), "enterprise": None, "is_enterprise_install": False,
                "channel": {"id": channel_id, "name": channel.get("name") or "directmessage"},
                "state": {"values": {}}, "response_url": response_url, "actions": [action],
            }
            if not is_ephemeral:
                payload["message"] = self.conversations.render(message)
        future = self.dispatcher.request("interactive", payload, "block_actions", accepts_response_payload=False)
        return Interaction(trigger, response_url, future)

    def click_view(self, view_id: str, action_id: str, user: str, value: str | None = None) -> Interaction:
        """Click a button in an open modal or in the user's home tab (container type `view`)."""
        with self.ws.lock:
            view = self._view(view_id)
            action = self._action(view.get("blocks", []), action_id, value)
            trigger = self.issue_trigger(user)
            payload = {
                "type": "block_actions", "user": self._user(user), "api_app_id": self.ws.app["id"],
                "token": self.ws.verification_token, "container": {"type": "view", "view_id": view_id},
                "trigger_id": trigger, "team": self._team(), "enterprise": None, "is_enterprise_install": False,
                "view": copy.deepcopy(view), "actions": [action],
            }
        future = self.dispatcher.request("interactive", payload, "block_actions", accepts_response_payload=False)
        return Interaction(trigger, None, future)

    def _action(self, blocks: list[dict], action_id: str, value: str | None) -> dict:
        matches = [(b, e) for b, e in buttons(blocks) if e["action_id"] == action_id]
        if value is not None and len(matches) > 1:
            matches = [(b, e) for b, e in matches if e.get("value") == value] or matches
        if not matches:
            raise SlackError("action_not_found", action_id=action_id)
        block, element = matches[0]
        action: dict[str, Any] = {"action_id": action_id, "block_id": block, "type": element["type"],
                                  "action_ts": self.ws.clock.next()}
        if element["type"] == "button":
            action["text"] = element.get("text")
            if "value" in element:
                action["value"] = element["value"]
            if "style" in element:
                action["style"] = element["style"]
        elif "options" in element:
            chosen = [o for o in element["options"] if o.get("value") == value]
            if not chosen:
                raise SlackError("option_not_found", value=value)
            action["selected_option"] = chosen[0]
        else:
            action["value"] = value
        return action

    # ------------------------------------------------------------------ views (Web API side)

    def _view(self, view_id: str) -> dict:
        view = self.ws.views.get(view_id)
        if view is None:
            raise SlackError("not_found")
        return view

    def _new_view(self, spec: dict, previous: dict | None = None) -> dict:
        checked = check_view(spec)
        view_id = previous["id"] if previous else new_id("V")
        view = {
            "id": view_id, "team_id": self.ws.team["id"], "type": checked["type"], "blocks": checked["blocks"],
            "private_metadata": checked.get("private_metadata", ""), "callback_id": checked.get("callback_id", ""),
            "state": {"values": {}}, "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": checked.get("title"), "clear_on_close": bool(checked.get("clear_on_close", False)),
            "notify_on_close": bool(checked.get("notify_on_close", False)), "close": checked.get("close"),
            "submit": checked.get("submit"), "previous_view_id": previous.get("previous_view_id") if previous else None,
            "root_view_id": previous["root_view_id"] if previous else view_id, "app_id": self.ws.app["id"],
            "external_id": checked.get("external_id", ""), "app_installed_team_id": self.ws.team["id"],
            "bot_id": self.ws.app["bot_id"],
        }
        self.ws.views[view_id] = view
        return view

    def open_view(self, trigger: str, spec: dict) -> dict:
        with self.ws.lock:
            user = self.use_trigger(trigger)
            view = self._new_view(spec)
            self.ws.modal_stacks[user] = [view["id"]]
            self.ws.changed("view_opened", user=user, view=view["id"])
            return view

    def push_view(self, trigger: str, spec: dict) -> dict:
        with self.ws.lock:
            user = self.use_trigger(trigger)
            stack = self.ws.modal_stacks.get(user) or []
            if not stack:
                raise SlackError("not_found")
            if len(stack) >= MODAL_STACK_MAX:
                raise SlackError("push_limit_reached")
            view = self._new_view(spec)
            view.update(previous_view_id=stack[-1], root_view_id=stack[0])
            stack.append(view["id"])
            self.ws.changed("view_opened", user=user, view=view["id"])
            return view

    def update_view(self, spec: dict, view_id: str | None = None, external_id: str | None = None,
                    hash: str | None = None) -> dict:
        with self.ws.lock:
            if external_id and not view_id:
                found = [v for v in self.ws.views.values() if v.get("external_id") == external_id]
                if not found:
                    raise SlackError("not_found")
                view_id = found[-1]["id"]
            if not view_id:
                raise SlackError("invalid_arguments")
            previous = self._view(view_id)
            if previous["type"] == "modal" and not any(view_id in s for s in self.ws.modal_stacks.values()):
                raise SlackError("not_found")  # as Slack answers for a modal already submitted or closed
            if hash and hash != previous["hash"]:
                raise SlackError("hash_conflict")
            view = self._new_view(spec, previous)
            self.ws.changed("view_updated", view=view_id)
            return view

    def publish_home(self, user: str, spec: dict, hash: str | None = None) -> dict:
        with self.ws.lock:
            self.ws.user(user)
            if spec.get("type") != "home":
                raise SlackError("invalid_arguments", response_metadata={
                    "messages": ["[ERROR] must be home [json-pointer:/view/type]"]})
            previous = self.ws.views.get(self.ws.homes.get(user, ""))
            if hash and previous and hash != previous["hash"]:
                raise SlackError("hash_conflict")
            view = self._new_view(spec, previous)
            self.ws.homes[user] = view["id"]
            self.ws.changed("home_published", user=user, view=view["id"])
            return view

    # ------------------------------------------------------------------ views (the person's side)

    def submit_view(self, view_id: str, user: str, values: dict | None = None, timeout: float | None = None) -> dict:
        """Press Submit: send `view_submission`, wait for the ack, apply its `response_action`.

        Returns `{"response_action": …, "errors"?: …, "view"?: …}`; `response_action` is None when
        the view closed normally, "timeout" when the app did not answer (the modal stays open).
        """
        ws = self.ws
        with ws.lock:
            stack = ws.modal_stacks.get(user) or []
            if view_id not in stack:
                raise SlackError("not_found")
            view = self._view(view_id)
            view["state"] = {"values": self._state_values(view, values or {})}
            missing = self._missing_required(view)
            if missing:
                return {"response_action": "errors", "errors": missing, "delivered": False}
            payload = {
                "type": "view_submission", "team": self._team(), "user": self._user(user),
                "api_app_id": ws.app["id"], "token": ws.verification_token, "trigger_id": self.issue_trigger(user),
                "view": copy.deepcopy(view), "response_urls": [], "is_enterprise_install": False, "enterprise": None,
            }
        future = self.dispatcher.request("interactive", payload, "view_submission", accepts_response_payload=True)
        try:
            answer = future.result(timeout or self.settings.ack_timeout + 5)
        except (DeliveryFailed, concurrent.futures.TimeoutError):
            return {"response_action": "timeout"}
        return self._apply_response_action(user, view_id, answer or {})

    def _apply_response_action(self, user: str, view_id: str, answer: dict) -> dict:
        action = answer.get("response_action")
        with self.ws.lock:
            stack = self.ws.modal_stacks.get(user) or []
            if action == "errors":
                return {"response_action": "errors", "errors": answer.get("errors", {})}
            if action == "update":
                view = self._new_view(answer["view"], self._view(view_id))
                self.ws.changed("view_updated", view=view_id)
                return {"response_action": "update", "view": view}
            if action == "push":
                view = self._new_view(answer["view"])
                view.update(previous_view_id=stack[-1], root_view_id=stack[0])
                stack.append(view["id"])
                self.ws.changed("view_opened", user=user, view=view["id"])
                return {"response_action": "push", "view": view}
            closing = list(stack) if action == "clear" else [view_id]
            self.ws.modal_stacks[user] = [v for v in stack if v not in closing]
            self.ws.changed("view_closed", user=user, views=closing)
            return {"response_action": action}

    def close_view(self, view_id: str, user: str) -> None:
        """Press Cancel/×: the view closes; with `notify_on_close` the app gets `view_closed`."""
        with self.ws.lock:
            stack = self.ws.modal_stacks.get(user) or []
            if view_id not in stack:
                raise SlackError("not_found")
            view = self._view(view_id)
            cleared = view.get("clear_on_close", False)
            closing = list(stack) if cleared else [view_id]
            self.ws.modal_stacks[user] = [v for v in stack if v not in closing]
            self.ws.changed("view_closed", user=user, views=closing)
            payload = {"type": "view_closed", "team": self._team(), "user": self._user(user),
                       "api_app_id": self.ws.app["id"], "token": self.ws.verification_token,
                       "view": copy.deepcopy(view), "is_cleared": cleared, "is_enterprise_install": False}
        if view.get("notify_on_close"):
            self.dispatcher.request("interactive", payload, "view_closed", accepts_response_payload=False)

    def open_home(self, user: str) -> str | None:
        """The person opens the app's Home tab: `app_home_opened` (with the published view, if any)."""
        ws = self.ws
        with ws.lock:
            ws.user(user)
            im = ws.open_im(user)
            event: dict[str, Any] = {"type": "app_home_opened", "user": user, "channel": im["id"], "tab": "home",
                                     "event_ts": ws.clock.next()}
            if user in ws.homes:
                event["view"] = copy.deepcopy(ws.views[ws.homes[user]])
        return self.dispatcher.emit(event)

    @staticmethod
    def _state_values(view: dict, given: dict) -> dict:
        """Every input's state, as Slack reports it (empty inputs included, and inputs showing their
        `initial_value` / `initial_option` as the person left them), overlaid with `given`; a plain string
        stands for a text value or a select's option value."""
        values: dict[str, dict] = {}
        for block in view.get("blocks", []):
            element = block.get("element") if block.get("type") == "input" else None
            if not isinstance(element, dict):
                continue
            kind = element.get("type")
            if "select" in kind:
                untouched = {"type": kind, "selected_option": element.get("initial_option")}
            else:
                untouched = {"type": kind, "value": element.get("initial_value")}
            values.setdefault(block["block_id"], {})[element.get("action_id")] = untouched
        for block_id, actions in given.items():
            for action_id, state in actions.items():
                known = values.get(block_id, {}).get(action_id, {"type": "plain_text_input"})
                if isinstance(state, str):
                    element = next((b.get("element", {}) for b in view["blocks"] if b.get("block_id") == block_id), {})
                    if "options" in element:
                        option = next((o for o in element["options"] if o.get("value") == state), None)
                        state = {"type": known["type"], "selected_option": option}
                    else:
                        state = {"type": known["type"], "value": state}
                values.setdefault(block_id, {})[action_id] = state
        return values

    @staticmethod
    def _missing_required(view: dict) -> dict[str, str]:
        """Slack's client refuses to submit while a required input is empty; the app never hears of it."""
        missing = {}
        state = view["state"]["values"]
        for block in view.get("blocks", []):
            if block.get("type") != "input" or block.get("optional"):
                continue
            for value in state.get(block["block_id"], {}).values():
                if all(v in (None, "", []) for k, v in value.items() if k != "type"):
                    missing[block["block_id"]] = "Please complete this required field."
        return missing
