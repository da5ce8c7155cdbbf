"""Block Kit checks, with Slack's limits and Slack's error shape.

Slack answers an oversized or malformed block with `invalid_blocks` (messages) or `invalid_arguments`
(views) and names each problem with a JSON pointer, e.g.
`"must be less than 3001 characters [json-pointer:/blocks/0/text/text]"`. slack-sdk's Block Kit models
carry the same limits (section text 3,000, button text 75 and value 2,000, header 150, ids 255); they are
used here to parse and check every object, walking down the tree so nested elements are checked too.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models import JsonObject
from slack_sdk.models.blocks import Block

from .errors import SlackError
from .ids import block_id

MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100
MARKDOWN_BLOCKS_MAX_CHARS = 12_000
# Modal fields Slack limits that slack-sdk's View model does not check the way Slack does.
_VIEW_TEXT_LIMITS = {"title": 24, "submit": 24, "close": 24}
_VIEW_STRING_LIMITS = {"private_metadata": 3000, "callback_id": 255, "external_id": 255}
_SDK_LENGTH = re.compile(r"^(\w+) (?:attribute )?cannot exceed (\d+) characters")


def check_message_blocks(blocks: Any) -> list[dict]:
    """Parse and check a message's `blocks`; raise `invalid_blocks` as Slack does."""
    problems = _check_blocks(blocks, "/blocks", MESSAGE_MAX_BLOCKS)
    if problems:
        raise _error("invalid_blocks", problems)
    return _with_ids(blocks)


def check_view(view: Any) -> dict:
    """Check a view (modal or home tab); raise `invalid_arguments` with pointers as Slack does."""
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] view must be an object"]})
    problems: list[str] = []
    if view.get("type") not in ("modal", "home"):
        problems.append("must be one of modal, home [json-pointer:/view/type]")
    if view.get("type") == "modal" and not isinstance(view.get("title"), dict):
        problems.append("missing required field: title [json-pointer:/view/title]")
    for key, limit in _VIEW_TEXT_LIMITS.items():
        text = (view.get(key) or {}).get("text", "") if isinstance(view.get(key), dict) else ""
        if len(text) > limit:
            problems.append(f"must be less than {limit + 1} characters [json-pointer:/view/{key}/text]")
    for key, limit in _VIEW_STRING_LIMITS.items():
        if len(str(view.get(key) or "")) > limit:
            problems.append(f"must be less than {limit + 1} characters [json-pointer:/view/{key}]")
    problems += _check_blocks(view.get("blocks", []), "/view/blocks", VIEW_MAX_BLOCKS)
    if problems:
        raise _error("invalid_arguments", problems)
    checked = copy.deepcopy(view)
    checked["blocks"] = _with_ids(view.get("blocks", []))
    return checked


def buttons(blocks: list[dict]) -> list[tuple[str, dict]]:
    """Every interactive element in `blocks`, as (block_id, element): in actions blocks and accessories."""
    found = []
    for block in blocks or []:
        elements = list(block.get("elements", [])) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        if block.get("type") == "input" and isinstance(block.get("element"), dict):
            elements.append(block["element"])
        found += [(block.get("block_id", ""), e) for e in elements if isinstance(e, dict) and "action_id" in e]
    return found


def _check_blocks(blocks: Any, base: str, max_blocks: int) -> list[str]:
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{base}]"]
    problems = []
    if len(blocks) > max_blocks:
        problems.append(f"no more than {max_blocks} items allowed [json-pointer:{base}]")
    markdown_chars = 0
    for i, raw in enumerate(blocks):
        pointer = f"{base}/{i}"
        if not isinstance(raw, dict) or "type" not in raw:
            problems.append(f"missing required field: type [json-pointer:{pointer}]")
            continue
        parsed = Block.parse(raw)
        if parsed is None:
            problems.append(f"unsupported type: {raw['type']} [json-pointer:{pointer}/type]")
            continue
        if raw["type"] == "markdown":
            markdown_chars += len(str(raw.get("text", "")))
        _walk(parsed, raw, pointer, problems)
    if markdown_chars > MARKDOWN_BLOCKS_MAX_CHARS:
        problems.append(
            f"markdown blocks must total less than {MARKDOWN_BLOCKS_MAX_CHARS + 1} characters [json-pointer:{base}]"
        )
    return problems


def _walk(obj: JsonObject, raw: dict, pointer: str, problems: list[str]) -> None:
    """Check `obj`, then each nested Block Kit object whose JSON key matches the model's attribute."""
    try:
        obj.validate_json()
    except SlackObjectFormationError as e:
        problems.append(_slack_wording(str(e), raw, pointer))
        return
    for key, value in raw.items():
        attr = getattr(obj, key, None)
        if isinstance(attr, JsonObject) and isinstance(value, dict):
            _walk(attr, value, f"{pointer}/{key}", problems)
        elif isinstance(attr, list) and isinstance(value, list):
            for j, (item, raw_item) in enumerate(zip(attr, value)):
                if isinstance(item, JsonObject) and isinstance(raw_item, dict):
                    _walk(item, raw_item, f"{pointer}/{key}/{j}", problems)


def _slack_wording(sdk_message: str, raw: dict, pointer: str) -> str:
    """slack-sdk says "text attribute cannot exceed 3000 characters"; Slack says it with a pointer."""
    match = _SDK_LENGTH.match(sdk_message)
    if not match:
        return f"{sdk_message} [json-pointer:{pointer}]"
    key, limit = match.group(1), int(match.group(2))
    where = f"{pointer}/{key}"
    if isinstance(raw.get(key), dict) and "text" in raw[key]:
        where += "/text"
    return f"must be less than {limit + 1} characters [json-pointer:{where}]"


def _error(code: str, problems: list[str]) -> SlackError:
    return SlackError(code, errors=problems, response_metadata={"messages": [f"[ERROR] {p}" for p in problems]})


def _with_ids(blocks: list[dict]) -> list[dict]:
    """A copy in which every block has a `block_id` and every interactive element an `action_id`,
    as Slack stores them (apps receive these generated ids in payloads)."""
    filled = copy.deepcopy(blocks)
    for block in filled:
        block.setdefault("block_id", block_id())
        elements = block.get("elements", []) if block.get("type") == "actions" else []
        for element in [*elements, block.get("accessory"), block.get("element")]:
            if isinstance(element, dict) and element.get("type") not in (None, "image", "plain_text", "mrkdwn"):
                element.setdefault("action_id", block_id())
    return filled
