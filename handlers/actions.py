"""Buttons: on a dataset's report (fine-tune, options, map columns, drop bad examples) and on a job's
status message (cancel, pause, resume)."""

from __future__ import annotations

import logging

import openai
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks, intake
from bot.backend import refusal_text
from bot.chat import usable_in
from bot.job_threads import start_job
from bot.jobs import JobOptions, suffix_for_channel

from .commands import comparison

log = logging.getLogger(__name__)


def register(app: App, services) -> None:
    def clicked_dataset(action: dict, body: dict, respond: Respond) -> dict | None:
        dataset = services.storage.dataset(action["value"])
        if dataset is None or dataset["channel"] != body.get("channel", {}).get("id", dataset["channel"]):
            respond(text="I don't know that dataset here.", response_type="ephemeral", replace_original=False)
            return None
        return dataset

    @app.action(blocks.FINETUNE_ACTION)
    @app.action(blocks.FINETUNE_AGAIN_ACTION)
    def finetune(ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond) -> None:
        ack()
        dataset = clicked_dataset(action, body, respond)
        if dataset is None:
            return
        options = JobOptions(
            base_model=services.settings.base_model, suffix=suffix_for_channel(body.get("channel", {}).get("name"))
        )
        again = action["action_id"] == blocks.FINETUNE_AGAIN_ACTION
        started = start_job(services, client, dataset=dataset, user=body["user"]["id"], options=options, again=again)
        if started is None:
            respond(
                text="A job on this dataset is already under way in its thread.", response_type="ephemeral",
                replace_original=False,
            )

    @app.action(blocks.OPTIONS_ACTION)
    def options(ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond) -> None:
        ack()
        dataset = clicked_dataset(action, body, respond)
        if dataset is None:
            return

        def modal(models: list[str]) -> dict:
            return blocks.options_modal(
                dataset["id"], dataset["filename"], models, services.settings.base_model,
                suffix_for_channel(body.get("channel", {}).get("name")),
            )

        # The trigger expires 3 s after the click: open the modal first, then fill in the backend's models
        # (a busy backend can take longer than that to list them).
        opened = client.views_open(trigger_id=body["trigger_id"], view=modal([]))["view"]
        try:
            listed = services.backend.client.models.list()
            models = sorted(m.id for m in listed if usable_in(services.storage, m.id, dataset["channel"], body["user"]["id"]))
        except openai.OpenAIError:
            return
        try:
            client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal(models))
        except SlackApiError as error:  # already submitted or closed: it started on the default model list
            log.info("options modal not updated with the models: %s", error.response.get("error"))

    @app.action(blocks.MAP_COLUMNS_ACTION)
    def map_columns(ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond) -> None:
        ack()
        dataset = clicked_dataset(action, body, respond)
        if dataset is None or not dataset.get("headers"):
            return
        client.views_open(
            trigger_id=body["trigger_id"],
            view=blocks.map_columns_modal(dataset["id"], dataset["filename"], dataset["headers"]),
        )

    @app.action(blocks.DROP_BAD_ACTION)
    def drop_bad(ack: Ack, body: dict, action: dict, client: WebClient, respond: Respond) -> None:
        ack()
        dataset = clicked_dataset(action, body, respond)
        if dataset is None or not services.storage.claim(f"drop_bad:{dataset['id']}"):
            return  # a double click, or a redelivery: the cleaned report is already on its way
        intake.drop_bad_examples(services, client, dataset, body["user"]["id"])

    @app.action(blocks.CANCEL_ACTION)
    @app.action(blocks.PAUSE_ACTION)
    @app.action(blocks.RESUME_ACTION)
    def job_control(ack: Ack, body: dict, action: dict, respond: Respond) -> None:
        ack()
        verb = {blocks.CANCEL_ACTION: "cancel", blocks.PAUSE_ACTION: "pause", blocks.RESUME_ACTION: "resume"}[action["action_id"]]
        respond(text=control_job(services, action["value"], verb, body["user"]["id"], body.get("channel", {}).get("id")),
                response_type="ephemeral", replace_original=False)

    @app.action(blocks.CHAT_WITH_MODEL_ACTION)
    def chat_with_model(ack: Ack, body: dict, action: dict, respond: Respond) -> None:
        """The success message's "Chat with it": the new model becomes the channel's."""
        ack()
        channel, user, model = body.get("channel", {}).get("id"), body["user"]["id"], action["value"]
        if not channel or services.storage.job_of_model(model) is None:
            respond(text="I don't know that model here.", response_type="ephemeral", replace_original=False)
            return
        services.storage.set_channel_model(channel, model, None, user)
        respond(
            text=f"<@{user}> made `{blocks.escape(model)}` this channel's model: mention me to talk to it.",
            response_type="in_channel", replace_original=False,
        )

    @app.action(blocks.COMPARE_WITH_BASE_ACTION)
    def compare_with_base(ack: Ack, body: dict, action: dict, respond: Respond) -> None:
        """The success message's "Compare with base", on the first prompt of the data the model learnt."""
        ack()
        job = services.storage.job_of_model(action["value"])
        dataset = services.storage.dataset(job["dataset_id"]) if job and job.get("dataset_id") else None
        first = ((dataset or {}).get("report") or {}).get("first_example") or []
        prompt = next((m["content"] for m in first if m.get("role") == "user" and isinstance(m.get("content"), str)), None)
        if prompt is None:
            respond(text="Compare on a prompt of yours with `/finetune compare PROMPT`.", response_type="ephemeral", replace_original=False)
            return
        message = comparison(services, action["value"], None, prompt)
        message["blocks"].append(blocks.context("On the training data's first prompt; `/finetune compare PROMPT` for your own."))
        respond(response_type="ephemeral", replace_original=False, **message)


def control_job(services, key: str, verb: str, user: str, channel: str | None) -> str:
    """Cancel, pause or resume, for the job's starter or an admin, from the channel the job belongs to."""
    job = services.storage.job(key)
    if job is None or (channel and job["channel"] != channel):
        return f"I know no job `{key}` in this channel."
    if user != job["user"] and user not in services.settings.admin_users:
        return f"Only <@{job['user']}>, who started it, or an admin can {verb} this job."
    if not job.get("job_id") or job.get("finished_at"):
        return f"`{job.get('job_id') or job['id']}` is not running ({job.get('status')})."
    jobs = services.backend.client.fine_tuning.jobs
    try:
        getattr(jobs, verb)(job["job_id"])
    except openai.APIStatusError as error:
        return f"The backend refused to {verb} `{job['job_id']}`: {refusal_text(error)}"
    services.poller.wake()
    return f"`{job['job_id']}`: {verb} requested."
