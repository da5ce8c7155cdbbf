"""`/finetune`: acknowledged at once, answered through `respond()` (ephemeral unless it concerns the channel)."""

from __future__ import annotations

import openai
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot import blocks
from bot.job_threads import start_job
from bot.jobs import JobOptions, suffix_for_channel
from bot.progress import JobProgress, status_line

USAGE = """*`/finetune`* fine-tunes models on the datasets shared in this channel.
• Share a dataset file (JSONL, JSON, CSV, TSV, XLSX) here: I check it and answer in its thread, with a *Fine-tune* button.
• `/finetune start`: fine-tune on this channel's latest valid dataset.
• `/finetune status [JOB]`: this channel's jobs, or one job in detail.
• `/finetune list`: this channel's datasets and jobs.
• `/finetune cancel JOB`: stop a job (its starter or an admin).
• `/finetune models`: the models fine-tuned here.
• `/finetune help`: this message."""


def register(app: App, services) -> None:
    @app.command("/finetune")
    def finetune(ack: Ack, command: dict, respond: Respond, client: WebClient) -> None:
        ack()
        words = command.get("text", "").split()
        subcommand = words[0].lower() if words else "help"
        handler = SUBCOMMANDS.get(subcommand)
        if handler is None:
            prefix = "" if subcommand == "help" else f"I don't know `{blocks.escape(subcommand)}`.\n\n"
            respond(text=prefix + USAGE, response_type="ephemeral")
            return
        handler(services, command, words[1:], respond, client)


def _list(services, command, args, respond, client) -> None:
    channel = command["channel_id"]
    datasets = blocks.dataset_lines(services.storage.datasets_in_channel(channel))
    jobs = blocks.job_lines(services.storage.jobs_in_channel(channel))
    respond(text=f"*Datasets in this channel*\n{datasets}\n\n*Jobs*\n{jobs}", response_type="ephemeral")


def _status(services, command, args, respond, client) -> None:
    channel = command["channel_id"]
    if not args:
        respond(text="*Jobs in this channel*\n" + blocks.job_lines(services.storage.jobs_in_channel(channel, limit=10)), response_type="ephemeral")
        return
    job = services.storage.job(args[0])
    if job is None or job["channel"] != channel:
        respond(text=f"I know no job `{blocks.escape(args[0])}` in this channel.", response_type="ephemeral")
        return
    if not job.get("job_id"):
        respond(text=f"`{job['id']}` never reached the backend: {blocks.escape(job.get('error') or job.get('status') or '')}", response_type="ephemeral")
        return
    try:
        progress = JobProgress(job_id=job["job_id"], base_model=job["base_model"])
        progress.apply_job(services.backend.client.fine_tuning.jobs.retrieve(job["job_id"]))
        progress.apply_events(list(services.backend.client.fine_tuning.jobs.list_events(job["job_id"], limit=100).data))
    except openai.OpenAIError as error:
        respond(text=f"The backend did not answer about `{job['job_id']}`: {error}", response_type="ephemeral")
        return
    respond(response_type="ephemeral", **blocks.job_status(job, status_line(progress)))


def _start(services, command, args, respond, client) -> None:
    dataset = services.storage.latest_valid_dataset(command["channel_id"])
    if dataset is None:
        respond(text="No valid dataset in this channel yet: share one (JSONL, CSV, TSV or XLSX) and I will check it.", response_type="ephemeral")
        return
    options = JobOptions(base_model=services.settings.base_model, suffix=suffix_for_channel(command.get("channel_name")))
    started = start_job(services, client, dataset=dataset, user=command["user_id"], options=options)
    if started is None:
        respond(text=f"A job on *{blocks.escape(dataset['filename'])}* is already under way in its thread.", response_type="ephemeral")
    else:
        respond(text=f"Fine-tuning on *{blocks.escape(dataset['filename'])}*: follow it in the dataset's thread.", response_type="ephemeral")


def _cancel(services, command, args, respond, client) -> None:
    if not args:
        respond(text="Which job? `/finetune cancel JOB` (see `/finetune status`).", response_type="ephemeral")
        return
    job = services.storage.job(args[0])
    if job is None or job["channel"] != command["channel_id"]:
        respond(text=f"I know no job `{blocks.escape(args[0])}` in this channel.", response_type="ephemeral")
        return
    confirm = blocks.job_status(job, f"Cancel `{job.get('job_id') or job['id']}` ({job.get('status')})?")
    respond(response_type="ephemeral", **confirm)


def _models(services, command, args, respond, client) -> None:
    jobs = [j for j in services.storage.jobs_in_channel(command["channel_id"], limit=50) if j.get("fine_tuned_model")]
    if not jobs:
        respond(text="No model has been fine-tuned in this channel yet.", response_type="ephemeral")
        return
    lines = [f"• `{blocks.escape(j['fine_tuned_model'])}` from `{j['job_id']}`, started by <@{j['user']}>" for j in jobs]
    respond(text="*Models fine-tuned in this channel*\n" + "\n".join(lines[:30]), response_type="ephemeral")


SUBCOMMANDS = {"list": _list, "status": _status, "start": _start, "cancel": _cancel, "models": _models}
