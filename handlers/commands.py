"""`/finetune`: acknowledged at once, answered through `respond()` (ephemeral unless it concerns the channel)."""

from __future__ import annotations

import time
from pathlib import Path

import openai
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot import blocks
from bot import evaluate, mrkdwn
from bot.chat import (
    ChatFailed,
    answer,
    base_of,
    build_messages,
    channel_model,
    compare,
    context_window,
    elsewhere_model_text,
    usable_in,
    within_rate_limit,
)
from bot.chat_blocks import compare_message
from bot.conversations import no_model_text, rate_limited_text, stream_and_record
from bot.mrkdwn import unescape
from bot.streaming import MESSAGE_BUDGET, StreamTarget
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
• Mention me (or DM me) to talk to this channel's model; reply in my thread to go on.
• `/finetune use MODEL [SYSTEM MESSAGE]`: the model (and system message) this channel talks to.
• `/finetune ask [--post] [MODEL] PROMPT`: one answer, only to you unless `--post`.
• `/finetune compare PROMPT`: the base model's and the tuned model's answers side by side.
• `/finetune eval [DATASET]`: the base and tuned models on a dataset's prompts: accuracy and precision.
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
        respond(text="No model has been fine-tuned in this channel yet." + _current_model(services, command), response_type="ephemeral")
        return
    lines = [f"• `{blocks.escape(j['fine_tuned_model'])}` from `{j['job_id']}`, started by <@{j['user']}>"
             + _system_note(services.storage.model_system_message(j["fine_tuned_model"])) for j in jobs]
    respond(text="*Models fine-tuned in this channel*\n" + "\n".join(lines[:30]) + _current_model(services, command), response_type="ephemeral")


def _system_note(system_message: str | None) -> str:
    return f"\n    system message: _{blocks.escape(system_message[:300])}_" if system_message else ""


def _current_model(services, command) -> str:
    chosen = _channel_model(services, command)
    if chosen is None:
        return "\n\nThis channel has no model to talk to yet."
    return f"\n\nThis channel talks to `{blocks.escape(chosen.model)}` ({chosen.how})." + _system_note(chosen.system_message)


def _channel_model(services, command):
    """The model this command's channel talks to (in a DM, the person's latest when none is set)."""
    channel = command["channel_id"]
    return channel_model(services.storage, channel, command["user_id"], is_dm=channel.startswith("D"))


def _channel_model_or_say(services, command, respond):
    """The channel's model, or None after telling the person how to get one."""
    chosen = _channel_model(services, command)
    if chosen is None:
        respond(text=mrkdwn.to_mrkdwn(no_model_text(services.settings.base_model)), response_type="ephemeral")
    return chosen




# -- talking to models: use, ask, compare, eval ------------------------------------------------------------


def _rest_of_text(command: dict, skip_words: int) -> str:
    """The command's text after its first words, as typed (spacing and newlines kept, Slack's escapes undone)."""
    parts = command.get("text", "").strip().split(None, skip_words)
    return unescape(parts[skip_words]).strip() if len(parts) > skip_words else ""


def _known_model(services, name: str) -> bool:
    """Whether the backend has `name`.

    Raises:
        openai.APIConnectionError: the backend cannot be reached.
    """
    try:
        services.backend.client.models.retrieve(name)
        return True
    except openai.NotFoundError:
        return False


def _use(services, command, args, respond, client) -> None:
    if not args:
        respond(text="Which model? `/finetune use MODEL [SYSTEM MESSAGE]` (`/finetune models` lists this channel's).", response_type="ephemeral")
        return
    model = args[0]
    try:
        known = _known_model(services, model)
    except openai.APIConnectionError:
        respond(text="The model's backend cannot be reached right now; try again in a moment.", response_type="ephemeral")
        return
    if not known:
        respond(text=f"The backend knows no model `{blocks.escape(model)}`.", response_type="ephemeral")
        return
    if not _usable_here(services, command, model, respond):
        return
    system_message = _rest_of_text(command, 2) or None
    services.storage.set_channel_model(command["channel_id"], model, system_message, command["user_id"])
    shown = system_message or services.storage.model_system_message(model)
    respond(
        text=f"<@{command['user_id']}> set this channel's model to `{blocks.escape(model)}`: mention me to talk to it."
        + _system_note(shown),
        response_type="in_channel",
    )


def _usable_here(services, command, model: str, respond) -> bool:
    usable = usable_in(services.storage, model, command["channel_id"], command["user_id"])
    if not usable:
        respond(text=blocks.escape(elsewhere_model_text(model)), response_type="ephemeral")
    return usable


def _allowed(services, command, respond) -> bool:
    wait = within_rate_limit(services.storage, command["user_id"], services.settings.chat_per_minute)
    if wait is not None:
        respond(text=rate_limited_text(services.settings.chat_per_minute, wait), response_type="ephemeral")
    return wait is None


def _ask(services, command, args, respond, client) -> None:
    post = bool(args) and args[0] == "--post"
    args = args[1:] if post else args
    skip = 2 if post else 1
    if not args:
        respond(text="What should I ask? `/finetune ask [--post] [MODEL] PROMPT`", response_type="ephemeral")
        return
    model, system_message = None, None
    try:
        if args[0].startswith("ft:") or (len(args) > 1 and _known_model(services, args[0])):
            model, skip = args[0], skip + 1
    except openai.APIConnectionError:
        respond(text="The model's backend cannot be reached right now; try again in a moment.", response_type="ephemeral")
        return
    if model is None:
        chosen = _channel_model_or_say(services, command, respond)
        if chosen is None:
            return
        model, system_message = chosen.model, chosen.system_message
    elif not _usable_here(services, command, model, respond):
        return
    system_message = system_message or services.storage.model_system_message(model)
    prompt = _rest_of_text(command, skip)
    if not prompt or not _allowed(services, command, respond):
        return
    if post:
        _ask_in_thread(services, command, client, model, system_message, prompt)
        return
    respond(text=f":hourglass_flowing_sand: Asking `{blocks.escape(model)}`…", response_type="ephemeral")
    max_tokens = services.settings.chat_max_tokens
    messages = build_messages(system_message, [], prompt, context_tokens=context_window(model, services.backend.kind), answer_tokens=max_tokens)
    try:
        text, _ = answer(services.backend.client, model, messages, max_tokens=max_tokens)
    except ChatFailed as failure:
        respond(text=f":warning: {failure}", response_type="ephemeral", replace_original=True)
        return
    pieces = mrkdwn.split(text, MESSAGE_BUDGET) if text.strip() else ["_(the model gave an empty answer)_"]
    for number, piece in enumerate(pieces):
        respond(text=mrkdwn.to_mrkdwn(piece), response_type="ephemeral", replace_original=number == 0)


def _ask_in_thread(services, command, client, model, system_message, prompt) -> None:
    """`--post`: the question in the channel, the answer streamed in its thread, where the talk can go on."""
    channel, user = command["channel_id"], command["user_id"]
    quoted = mrkdwn.escape(prompt).replace("\n", "\n>")
    root = client.chat_postMessage(channel=channel, text=f"<@{user}> asked `{blocks.escape(model)}`:\n>{quoted}")["ts"]
    target = StreamTarget(client=client, channel=channel, thread_ts=root, user=user, team=command.get("team_id", ""))
    stream_and_record(services, target, model=model, system_message=system_message, turns=[], prompt=prompt, ts=root)


def _compare(services, command, args, respond, client) -> None:
    prompt = _rest_of_text(command, 1)
    if not prompt:
        respond(text="What should both models answer? `/finetune compare PROMPT`", response_type="ephemeral")
        return
    chosen = _channel_model_or_say(services, command, respond)
    if chosen is None or not _allowed(services, command, respond):
        return
    respond(text=":hourglass_flowing_sand: Asking both models…", response_type="ephemeral")
    respond(response_type="ephemeral", replace_original=True, **comparison(services, chosen.model, chosen.system_message, prompt))


def comparison(services, tuned: str, system_message: str | None, prompt: str) -> dict:
    """The message comparing the base model with `tuned` on `prompt` (also the success message's button)."""
    base = base_of(tuned, services.storage, services.settings.base_model)
    system_message = system_message or services.storage.model_system_message(tuned)
    sides = compare(services.backend.client, [(base, system_message), (tuned, system_message)], prompt)
    return compare_message(prompt, sides, ["Base", "Tuned"])


EVAL_PROGRESS_INTERVAL_S = 3.0


def _eval(services, command, args, respond, client) -> None:
    channel = command["channel_id"]
    dataset = services.storage.dataset(args[0]) if args else services.storage.latest_valid_dataset(channel)
    if dataset is None or dataset["channel"] != channel or dataset["status"] != "ok":
        respond(text="No valid dataset to evaluate on: share one here (a held-out file is best), then `/finetune eval [DATASET]`.", response_type="ephemeral")
        return
    chosen = _channel_model_or_say(services, command, respond)
    if chosen is None or not _allowed(services, command, respond):
        return
    respond(text=f"Evaluating `{blocks.escape(chosen.model)}` in the thread of *{blocks.escape(dataset['filename'])}*.", response_type="ephemeral")
    _evaluate_in_thread(services, client, dataset, chosen.model, command["user_id"])


def _evaluate_in_thread(services, client, dataset: dict, tuned: str, user: str) -> None:
    """A status message in the dataset's thread, updated as answers come, then the table, chart and answers."""
    base = base_of(tuned, services.storage, services.settings.base_model)
    models, labels = ([base, tuned], ["base", "tuned"]) if base != tuned else ([tuned], ["model"])
    examples = evaluate.read_examples(Path(dataset["converted_path"]))
    channel, thread_ts = dataset["channel"], dataset["thread_ts"]
    job = services.storage.job_of_model(tuned)
    held_out = not (job and job.get("dataset_id") == dataset["id"])
    what = f"`{blocks.escape(tuned)}`" + (f" against `{blocks.escape(base)}`" if len(models) > 1 else "")
    head = f":bar_chart: <@{user}> is evaluating {what} on {len(examples)} prompts × {evaluate.SAMPLES}"
    status_ts = client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=head + "…")["ts"]
    last_shown = [time.monotonic()]

    def progress(done: int, total: int) -> None:
        if done < total and time.monotonic() - last_shown[0] >= EVAL_PROGRESS_INTERVAL_S:
            last_shown[0] = time.monotonic()
            client.chat_update(channel=channel, ts=status_ts, text=f"{head}: {done} of {total} answers…")

    try:
        scores = evaluate.run(services.backend.client, models, examples, progress)
    except ChatFailed as failure:
        client.chat_update(channel=channel, ts=status_ts, text=f"{head}: stopped. :warning: {failure}")
        return
    answers = len(examples) * evaluate.SAMPLES
    summary = ", ".join(f"{label} exact match {s.exact:.0%}, precision {s.precision:.2f}" for label, s in zip(labels, scores))
    note = "" if held_out else "\n_On the model's own training data, not held out: share a held-out file and run `/finetune eval DATASET` for a fair measure._"
    client.chat_update(
        channel=channel, ts=status_ts, text=f"{head}: done. {summary}.",
        blocks=[
            blocks.section(f"{head}: done.\n```{blocks.escape(evaluate.table(scores, labels, answers))}```{note}"),
            blocks.context(f"Exact match: answers equal to the expected one. Precision: how often the {evaluate.SAMPLES} answers to one prompt agree. Every answer is in the attached CSV."),
        ],
    )
    client.files_upload_v2(
        content=evaluate.chart_png(scores, labels), filename="evaluation.png", title="Evaluation",
        alt_txt=summary, channel=channel, thread_ts=thread_ts,
    )
    client.files_upload_v2(
        content=evaluate.answers_csv(examples, scores), filename="evaluation-answers.csv", title="Every answer",
        channel=channel, thread_ts=thread_ts,
    )


SUBCOMMANDS = {
    "list": _list, "status": _status, "start": _start, "cancel": _cancel, "models": _models,
    "use": _use, "ask": _ask, "compare": _compare, "eval": _eval,
}
