"""Block Kit for what the bot posts, built from plain results and kept inside Slack's limits.

Slack refuses a section over 3,000 characters, a message over 50 blocks, a button label over 75: every
builder here cuts what it shows of a dataset to fit (the full lists go in attached files), and the local
workspace refuses what Slack would, so a test fails before a user's channel does.
"""

from __future__ import annotations

from .datasets import IntakeReport

SECTION_LIMIT = 3000
ERRORS_SHOWN = 10
WARNINGS_SHOWN = 8
PREVIEW_CHARS_PER_MESSAGE = 400

FINETUNE_ACTION = "dataset_finetune"
OPTIONS_ACTION = "dataset_options"
DROP_BAD_ACTION = "dataset_drop_bad"
MAP_COLUMNS_ACTION = "dataset_map_columns"


def escape(text: str) -> str:
    """Slack's three control characters, so dataset text can never ping anyone or break the markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def elsewhere_text(channels: list[str]) -> str:
    """Why the bot declines in a channel it was not set to work in, and where it does work."""
    places = ", ".join(f"<#{channel}>" for channel in channels)
    return (f"I only work in {places} (this workspace's choice). Share datasets, mention me and use `/finetune` "
            "there, or in a direct message with me.")


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _fit(text, SECTION_LIMIT)}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _fit(text, SECTION_LIMIT)}]}


def button(text: str, action_id: str, value: str, *, style: str | None = None, confirm: dict | None = None) -> dict:
    element = {"type": "button", "text": {"type": "plain_text", "text": _fit(text, 75)}, "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


# -- the dataset report ---------------------------------------------------------------------------------


def report_text(report: IntakeReport) -> str:
    """The report in one line: the notification text, and what `/finetune list` shows."""
    if report.fatal:
        return f"{report.filename}: {report.fatal}"
    if report.needs_mapping:
        return f"{report.filename}: a table whose columns need mapping ({', '.join(report.needs_mapping)})"
    verdict = "ready to fine-tune" if report.ok else f"{report.error_count} errors to fix"
    return f"{report.filename}: {report.format_label}, {report.examples_converted} examples, {verdict}"


def dataset_report(report: IntakeReport, *, dataset_id: str, backend: str) -> dict:
    """The one message that answers a shared file: `{"text", "blocks"}` for chat.postMessage."""
    if report.fatal:
        return {"text": report_text(report), "blocks": [section(f":x: *{escape(report.filename)}*: {escape(report.fatal)}")]}
    if report.needs_mapping:
        return _mapping_needed(report, dataset_id)
    blocks = [
        section(f"{':white_check_mark:' if report.ok else ':x:'} *{escape(report.filename)}*: {_verdict(report)}"),
        {"type": "section", "fields": _fields(report, backend)},
    ]
    if report.error_count:
        blocks.append(section(_errors(report)))
    if report.warnings:
        blocks.append(section(_warnings(report)))
    if report.first_example:
        blocks.append(section("*The first example, as the model will see it*\n" + _preview(report.first_example)))
    attached = "the converted chat JSONL" + (" and every problem (CSV)" if report.error_count else "")
    blocks.append(context(f"Attached in this thread: {attached}."))
    actions = _actions(report, dataset_id, backend)
    if actions:
        blocks.append({"type": "actions", "block_id": "dataset_actions", "elements": actions})
    return {"text": report_text(report), "blocks": blocks}


def _verdict(report: IntakeReport) -> str:
    if report.ok:
        left_out = f" ({report.dropped} bad ones left out)" if report.dropped else ""
        return f"{report.examples_converted} examples{left_out}, ready to fine-tune."
    return (
        f"{report.error_count} {'problem' if report.error_count == 1 else 'problems'} to fix before training "
        "(OpenAI refuses a file with any invalid example)."
    )


def _fields(report: IntakeReport, backend: str) -> list[dict]:
    fields = [
        f"*Format*\n{escape(report.format_label)}",
        f"*Examples*\n{report.examples_read} read · {report.examples_converted} converted · "
        f"{report.examples_skipped} skipped",
    ]
    tokens = report.tokens
    if tokens:
        fields.append(
            f"*Tokens per example*\nmin {tokens.min} · median {tokens.median} · p90 {tokens.p90} · max {tokens.max}"
        )
        estimate = f"{report.epochs} epochs (auto) · {report.trained_tokens} trained tokens"
        if backend == "openai" and report.cost_usd is not None:
            estimate += f"\n≈ ${report.cost_usd:,.2f} ({report.price_note})"
        elif report.estimated_seconds is not None:
            estimate += f"\n≈ {duration(report.estimated_seconds)} on this machine's CPU"
        fields.append(f"*Training*\n{estimate}")
    return [{"type": "mrkdwn", "text": _fit(text, 2000)} for text in fields]


def _errors(report: IntakeReport) -> str:
    lines = [f"• {escape(str(issue))}" for issue in report.errors[:ERRORS_SHOWN]]
    more = report.error_count - min(len(report.errors), ERRORS_SHOWN)
    if more > 0:
        lines.append(f"…and {more} more in the attached CSV.")
    return "*Errors*\n" + _join_within(lines, SECTION_LIMIT - 20)


def _warnings(report: IntakeReport) -> str:
    lines = [f"• {escape(warning)}" for warning in report.warnings[:WARNINGS_SHOWN]]
    if len(report.warnings) > WARNINGS_SHOWN:
        lines.append(f"…and {len(report.warnings) - WARNINGS_SHOWN} more.")
    return "*Warnings* (training can go ahead)\n" + _join_within(lines, SECTION_LIMIT - 50)


def _join_within(lines: list[str], limit: int) -> str:
    """Whole lines only: a list cut mid-line reads as a different problem."""
    kept, size = [], 0
    for line in lines:
        if size + len(line) + 1 > limit:
            kept.append("…")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def _preview(messages: list[dict]) -> str:
    budget = SECTION_LIMIT - 120
    parts = []
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else str(content)
        if len(text) > PREVIEW_CHARS_PER_MESSAGE:
            text = text[:PREVIEW_CHARS_PER_MESSAGE] + f"… ({len(text)} characters)"
        parts.append(f"{message.get('role', '?')}: {text}")
    body = escape("\n".join(parts)).replace("```", "ˋˋˋ")
    if len(body) > budget:
        body = body[:budget] + "…"
    return f"```{body}```"


def _actions(report: IntakeReport, dataset_id: str, backend: str) -> list[dict]:
    if report.ok:
        return [
            button("Fine-tune", FINETUNE_ACTION, dataset_id, style="primary", confirm=_start_confirm(report, backend)),
            button("Options…", OPTIONS_ACTION, dataset_id),
        ]
    if report.can_drop_bad:
        noun = "example" if report.examples_skipped == 1 else "examples"
        return [button(f"Drop the {report.examples_skipped} bad {noun}", DROP_BAD_ACTION, dataset_id)]
    return []

def _start_confirm(report: IntakeReport, backend: str) -> dict:
    if backend == "openai" and report.cost_usd is not None:
        cost = f"It will cost about ${report.cost_usd:,.2f} ({report.trained_tokens} trained tokens)."
    elif report.estimated_seconds is not None:
        cost = f"It should take about {duration(report.estimated_seconds)} on the local backend."
    else:
        cost = "It trains on the configured backend."
    return {
        "title": {"type": "plain_text", "text": "Start fine-tuning?"},
        "text": {"type": "mrkdwn", "text": f"{report.examples_converted} examples, {report.epochs} epochs. {cost}"},
        "confirm": {"type": "plain_text", "text": "Start"},
        "deny": {"type": "plain_text", "text": "Not now"},
    }


def _mapping_needed(report: IntakeReport, dataset_id: str) -> dict:
    headers = ", ".join(f"`{escape(h)}`" for h in report.needs_mapping)
    text = (
        f":grey_question: *{escape(report.filename)}* is a table, but none of its columns ({headers}) say which is "
        "the prompt and which the answer.\nA dataset needs a pair of columns such as `prompt`/`completion`, "
        "`question`/`answer`, `input`/`output`, `instruction`/`response` or `user`/`assistant` "
        "(and optionally `system`). Rename them in the file and share it again, or map them here."
    )
    return {
        "text": report_text(report),
        "blocks": [
            section(text),
            {"type": "actions", "block_id": "dataset_actions", "elements": [button("Map columns…", MAP_COLUMNS_ACTION, dataset_id, style="primary")]},
        ],
    }


# -- modals ----------------------------------------------------------------------------------------------

MAP_COLUMNS_VIEW = "map_columns"
OPTIONS_VIEW = "job_options"


def _modal(callback_id: str, dataset_id: str, title: str, submit: str, blocks: list[dict]) -> dict:
    """A modal about one dataset (its id rides along in `private_metadata` to the submission)."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": dataset_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def _options(values: list[str]) -> list[dict]:
    """A select's options, within Slack's limits (100 options, 75-character labels, 150-character values)."""
    return [
        {"text": {"type": "plain_text", "text": _fit(v or "(empty header)", 75)}, "value": v[:150]} for v in values[:100]
    ]


def _select(block_id: str, label: str, options: list[dict], *, optional: bool = False, initial: dict | None = None) -> dict:
    element = {"type": "static_select", "action_id": "value", "options": options}
    if initial:
        element["initial_option"] = initial
    return {
        "type": "input", "block_id": block_id, "optional": optional, "element": element,
        "label": {"type": "plain_text", "text": label},
    }


def map_columns_modal(dataset_id: str, filename: str, headers: list[str]) -> dict:
    columns = _options(headers)
    return _modal(MAP_COLUMNS_VIEW, dataset_id, "Map columns", "Convert", [
        section(f"Which columns of *{escape(filename)}* hold what the model is asked, and what it should answer?"),
        _select("prompt", "Prompt (what the user says)", columns),
        _select("completion", "Completion (the answer to learn)", columns),
        _select("system", "System message (optional)", columns, optional=True),
    ])


# -- lists: /finetune list and the App Home tab ---------------------------------------------------------

STATUS_ICONS = {"ok": ":white_check_mark:", "rejected": ":x:", "needs_mapping": ":grey_question:", "reading": ":hourglass:"}


def dataset_lines(datasets: list[dict]) -> str:
    if not datasets:
        return "No datasets yet: share a JSONL, CSV, TSV or XLSX file in a channel where I am."
    lines = [
        f"{STATUS_ICONS.get(d['status'], '•')} `{d['id']}` {escape(d.get('summary') or d['filename'])}" for d in datasets
    ]
    return _join_within(lines, SECTION_LIMIT - 10)


def home_view(datasets: list[dict], jobs: list[dict]) -> dict:
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "tunehouse: fine-tuning from Slack"}},
            section(
                "Share a dataset (JSONL, JSON, CSV, TSV or XLSX) in a channel where I am: I check it, convert it "
                "to chat JSONL and answer in its thread with a *Fine-tune* button. Type `/finetune help` for the rest."
            ),
            {"type": "divider"},
            section("*Your fine-tuning jobs*\n" + job_lines(jobs)),
            section("*Your datasets*\n" + dataset_lines(datasets)),
        ],
    }


def options_modal(dataset_id: str, filename: str, models: list[str], default_model: str, suffix: str | None) -> dict:
    def text_input(block_id: str, label: str, placeholder: str, hint: str, initial: str | None = None) -> dict:
        element = {"type": "plain_text_input", "action_id": "value", "placeholder": {"type": "plain_text", "text": placeholder}}
        if initial:
            element["initial_value"] = initial
        return {
            "type": "input", "block_id": block_id, "optional": True, "element": element,
            "label": {"type": "plain_text", "text": label}, "hint": {"type": "plain_text", "text": hint},
        }

    models = _options([default_model] + [m for m in models if m != default_model])
    return _modal(OPTIONS_VIEW, dataset_id, "Fine-tuning options", "Start", [
        section(f"Fine-tune on *{escape(filename)}*. Empty fields stay on `auto`: the backend chooses."),
        _select("base_model", "Base model", models, initial=models[0]),
        text_input("n_epochs", "Epochs", "auto", "1 to 50; more epochs learn the examples more closely."),
        text_input("learning_rate_multiplier", "Learning-rate multiplier", "auto", "0.01 to 10."),
        text_input("batch_size", "Batch size", "auto", "1 to 256."),
        text_input("suffix", "Model name suffix", "e.g. support-bot", "Added to the fine-tuned model's name.", suffix),
        text_input("validation_share", "Validation share (%)", "0", "Held out to measure validation loss; the same examples every time."),
        text_input("seed", "Seed", "random", "The same seed and data give the same job."),
    ])


# -- a job's thread: the status message, milestones, the end ----------------------------------------------

CANCEL_ACTION = "job_cancel"
PAUSE_ACTION = "job_pause"
RESUME_ACTION = "job_resume"
FINETUNE_AGAIN_ACTION = "dataset_finetune_again"
CHAT_WITH_MODEL_ACTION = "model_chat"
COMPARE_WITH_BASE_ACTION = "model_compare"
ACTIVE_STATUSES = ("uploading", "validating_files", "queued", "running", "paused")


def job_starting(job: dict, dataset: dict) -> dict:
    text = f":hourglass_flowing_sand: Uploading *{escape(dataset['filename'])}* to the fine-tuning backend…"
    return {"text": "Starting a fine-tuning job", "blocks": [section(text), _job_context(job)]}


def job_start_failed(job: dict, error: str) -> dict:
    text = f":x: *The job did not start*: {escape(error)}"
    return {"text": f"The job did not start: {error}", "blocks": [section(text), _job_context(job)]}


def job_status(job: dict, line: str) -> dict:
    """The status message, updated in place: `line` is progress.status_line(); buttons while it is active."""
    blocks = [section(line), _job_context(job)]
    status = job.get("status")
    if status in ACTIVE_STATUSES and job.get("job_id"):
        pause_or_resume = (
            button("Resume", RESUME_ACTION, job["id"]) if status == "paused" else button("Pause", PAUSE_ACTION, job["id"])
        )
        cancel = button(
            "Cancel", CANCEL_ACTION, job["id"], style="danger",
            confirm={
                "title": {"type": "plain_text", "text": "Cancel this job?"},
                "text": {"type": "mrkdwn", "text": "Training stops now and no model is made."},
                "confirm": {"type": "plain_text", "text": "Cancel the job"},
                "deny": {"type": "plain_text", "text": "Keep training"},
            },
        )
        blocks.append({"type": "actions", "block_id": "job_actions", "elements": [cancel, pause_or_resume]})
    plain = line.replace("*", "")
    return {"text": plain, "blocks": blocks}


def _job_context(job: dict) -> dict:
    parts = []
    if job.get("job_id"):
        parts.append(f"`{job['job_id']}`")
    if job.get("base_model"):
        parts.append(f"base model `{escape(job['base_model'])}`")
    if job.get("user"):
        parts.append(f"started by <@{job['user']}>")
    return context(" · ".join(parts) or "fine-tuning job")


def milestone(text: str, fields: dict[str, str], *, compact: bool = False) -> dict:
    """A thread reply for a step of a job; `compact` (checkpoints, one an epoch) puts its fields on one small
    line, so a long job's thread stays readable."""
    message = {"text": text.replace("*", ""), "blocks": [section(escape(text))]}
    if fields and compact:
        message["blocks"].append(context(" · ".join(f"{escape(k)} {escape(v)}" for k, v in fields.items())))
    elif fields:
        message["blocks"].append(
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{escape(k)}*\n{escape(v)}"} for k, v in list(fields.items())[:10]]}
        )
    return message


def job_end(job: dict, text: str, fields: dict[str, str], *, succeeded: bool, offer_retry: bool) -> dict:
    """The one final reply, broadcast to the channel: the model id, the starter mentioned, what to do next."""
    lead = f"<@{job['user']}> " if job.get("user") else ""
    message = milestone(text, fields)
    message["blocks"][0] = section(lead + escape(text))
    message["text"] = lead + message["text"]
    if succeeded and job.get("fine_tuned_model"):
        model = job["fine_tuned_model"][:2000]
        message["blocks"].append(
            {"type": "actions", "block_id": "job_end_actions", "elements": [
                button("Chat with it", CHAT_WITH_MODEL_ACTION, model, style="primary"),
                button("Compare with base", COMPARE_WITH_BASE_ACTION, model),
            ]}
        )
    if offer_retry and job.get("dataset_id"):
        message["blocks"].append(
            {"type": "actions", "block_id": "job_end_actions", "elements": [button("Fine-tune again", FINETUNE_AGAIN_ACTION, job["dataset_id"])]}
        )
    return message


def job_lines(jobs: list[dict]) -> str:
    if not jobs:
        return "No fine-tuning jobs yet."
    icons = {"succeeded": ":white_check_mark:", "failed": ":x:", "cancelled": ":no_entry_sign:"}
    lines = []
    for job in jobs:
        what = f"`{job.get('job_id') or job['id']}` {job.get('status') or '?'}"
        if job.get("fine_tuned_model"):
            what += f" → `{escape(job['fine_tuned_model'])}`"
        lines.append(f"{icons.get(job.get('status'), ':hourglass_flowing_sand:')} {what}, started by <@{job['user']}>")
    return _join_within(lines, SECTION_LIMIT - 10)
