"""Modals: the fine-tuning options, and the column mapping of a table that names no known pair."""

from __future__ import annotations

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot import blocks, intake
from bot.chat import usable_in
from bot.datasets import ColumnMapping
from bot.job_threads import start_job
from bot.jobs import parse_options


def register(app: App, services) -> None:
    @app.view(blocks.OPTIONS_VIEW)
    def options_submitted(ack: Ack, body: dict, view: dict, client: WebClient) -> None:
        values = {block: _value(view["state"]["values"], block) for block in view["state"]["values"]}
        options, errors = parse_options(values, services.settings.base_model)
        dataset = services.storage.dataset(view["private_metadata"])
        chosen_model = values.get("base_model")
        if dataset and chosen_model and not usable_in(services.storage, chosen_model, dataset["channel"], body["user"]["id"]):
            errors["base_model"] = "That model was fine-tuned in another conversation; choose one from here."
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        if dataset is None or not services.storage.claim(f"view:{view['id']}"):
            return  # submitted twice: the job is already starting
        start_job(services, client, dataset=dataset, user=body["user"]["id"], options=options, again=True)

    @app.view(blocks.MAP_COLUMNS_VIEW)
    def map_columns_submitted(ack: Ack, body: dict, view: dict, client: WebClient) -> None:
        chosen = {block: _value(view["state"]["values"], block) for block in ("prompt", "completion", "system")}
        errors = {}
        if chosen["prompt"] == chosen["completion"]:
            errors["completion"] = "Choose a column other than the prompt's."
        if chosen["system"] is not None and chosen["system"] in (chosen["prompt"], chosen["completion"]):
            errors["system"] = "The system message needs a column of its own."
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        dataset = services.storage.dataset(view["private_metadata"])
        if dataset is None or not services.storage.claim(f"view:{view['id']}"):
            return  # submitted twice: the report for this mapping is already on its way
        mapping = ColumnMapping(prompt=chosen["prompt"], completion=chosen["completion"], system=chosen["system"])
        intake.convert_with_mapping(services, client, dataset, mapping, body["user"]["id"])


def _value(values: dict, block_id: str) -> str | None:
    """The one input of a block: a select's chosen option or a text input's value (None when empty)."""
    for element in values.get(block_id, {}).values():
        option = element.get("selected_option")
        if option:
            return option["value"]
        if element.get("value"):
            return element["value"]
    return None
