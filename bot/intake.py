"""From a shared file to its report in the thread: claim, download, analyse, remember, answer, attach.

The analysis itself (`bot.datasets`) knows nothing of Slack; this module is the glue the file and view
listeners share, so that a share, a column mapping and a "drop the bad lines" click all answer the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tunehouse.faults import hold_point

from . import blocks
from .datasets import ColumnMapping, IntakeLimits, IntakeReport, analyse, drop_bad, write_error_report
from .slack_ops import (
    DownloadRefused,
    conversation_gone,
    download,
    post_in_thread,
    shared_file,
    tell_directly,
    upload_to_thread,
)

log = logging.getLogger(__name__)

FILE_CLAIM = "file:"


def share_thread(file_info: dict, channel: str) -> str | None:
    """The ts of the thread a file was shared into (its own message's ts at the top level), from `shares`."""
    for visibility in ("public", "private"):
        for share in file_info.get("shares", {}).get(visibility, {}).get(channel, []):
            return share.get("thread_ts") or share.get("ts")
    return None


def receive(services, client: WebClient, *, file_info: dict, channel: str, thread_ts: str, user: str, team: str) -> None:
    """Answer a shared file once, whichever of its deliveries comes first."""
    key = FILE_CLAIM + file_info["id"]
    payload = {"file": file_info, "channel": channel, "thread_ts": thread_ts, "user": user, "team": team}
    if not services.storage.claim(key, payload):
        return
    _answer_where_possible(services, client, payload)
    services.storage.finish_claim(key)


def resume_pending(services, client: WebClient) -> None:
    """Finish the reports a previous run claimed and never posted (it was killed half way). One that fails
    again stays claimed for the next start; the bot starts anyway."""
    for key, payload in services.storage.pending_claims(FILE_CLAIM):
        known = services.storage.dataset_for_file(payload["file"]["id"])
        try:
            if not (known and known.get("report_ts")):
                log.info("finishing the report on %s, left unfinished by the last run", payload["file"]["id"])
                _answer_where_possible(services, client, payload)
        except Exception:
            log.exception("could not finish the report on %s; the next start tries again", payload["file"]["id"])
            continue
        services.storage.finish_claim(key)


def _answer_where_possible(services, client: WebClient, payload: dict) -> None:
    """The report in the file's thread; if the bot can no longer post there (removed from the channel, the
    channel archived), a direct message to whoever shared the file says so."""
    try:
        _answer(services, client, **payload)
    except SlackApiError as error:
        if not conversation_gone(error):
            raise
        name = shared_file(payload["file"]).name
        log.warning("no report on %s: Slack answered %s in %s", name, error.response["error"], payload["channel"])
        if payload["user"]:
            tell_directly(
                client, payload["user"],
                f"I could not answer about *{blocks.escape(name)}* in <#{payload['channel']}>: I am not in that "
                f"channel any more (Slack said `{error.response['error']}`). Invite me back and share it again, or "
                "share it here.",
            )


def _answer(services, client: WebClient, *, file: dict, channel: str, thread_ts: str, user: str, team: str) -> None:
    settings = services.settings
    shared = shared_file(file)
    folder = settings.data_dir / "datasets" / shared.id
    try:
        source = download(
            shared, token=settings.secret("slack_bot_token"), api_url=settings.slack_api_url,
            max_bytes=settings.max_file_bytes, folder=folder,
        )
    except DownloadRefused as refusal:
        post_in_thread(client, channel=channel, thread_ts=thread_ts, text=f":warning: {refusal}")
        return
    hold_point("bot.downloaded")
    kept = folder / "source"
    source.replace(kept)
    dataset = services.storage.save_dataset(
        file_id=shared.id, team_id=team, channel=channel, thread_ts=thread_ts, user=user, filename=shared.name,
        source_path=str(kept), status="reading",
    )
    report = analyse(
        kept, shared.name, folder, base_model=settings.base_model, backend=services.backend.kind,
        limits=IntakeLimits(max_bytes=settings.max_file_bytes),
    )
    post_report(services, client, dataset, report)


def convert_with_mapping(services, client: WebClient, dataset: dict, mapping: ColumnMapping, user: str) -> None:
    """A table whose columns someone mapped by hand: read it again with their mapping, report as a new dataset."""
    settings = services.settings
    folder = Path(dataset["source_path"]).parent
    report = analyse(
        Path(dataset["source_path"]), dataset["filename"], folder, base_model=settings.base_model,
        backend=services.backend.kind, mapping=mapping, limits=IntakeLimits(max_bytes=settings.max_file_bytes),
    )
    mapped = services.storage.save_dataset(
        file_id=dataset["file_id"], team_id=dataset["team_id"], channel=dataset["channel"],
        thread_ts=dataset["thread_ts"], user=user, filename=dataset["filename"],
        source_path=dataset["source_path"], status="reading", mapping=mapping.__dict__,
    )
    post_report(services, client, mapped, report)


def drop_bad_examples(services, client: WebClient, dataset: dict, user: str) -> None:
    """Someone chose to train on what is left after the bad examples: a new report for that, with its button.
    The converted file already holds only the good examples; the new dataset row points at it."""
    cleaned = drop_bad(IntakeReport.from_dict(dataset["report"]))
    kept = services.storage.save_dataset(
        file_id=dataset["file_id"], team_id=dataset["team_id"], channel=dataset["channel"],
        thread_ts=dataset["thread_ts"], user=user, filename=dataset["filename"],
        source_path=dataset["source_path"], status="reading", mapping=dataset.get("mapping"),
    )
    post_report(services, client, kept, cleaned)


def post_report(services, client: WebClient, dataset: dict, report: IntakeReport) -> None:
    channel, thread_ts = dataset["channel"], dataset["thread_ts"]
    status = "ok" if report.ok else "needs_mapping" if report.needs_mapping else "rejected"
    services.storage.save_dataset(
        id=dataset["id"], status=status, format=report.format_label, examples_read=report.examples_read,
        examples=report.examples_converted, skipped=report.examples_skipped, errors=report.error_count,
        warnings=len(report.warnings), content_hash=report.content_hash,
        converted_path=str(report.converted_path) if report.converted_path else None,
        headers=report.needs_mapping, summary=blocks.report_text(report), report=report.to_dict(),
    )
    message = blocks.dataset_report(report, dataset_id=dataset["id"], backend=services.backend.kind)
    report_ts = post_in_thread(client, channel=channel, thread_ts=thread_ts, **message)
    services.storage.save_dataset(id=dataset["id"], report_ts=report_ts)
    try:
        _attach_files(client, dataset, report)
    except SlackApiError as error:
        log.error("could not attach files to the report on %s: %s", dataset["id"], error.response.get("error"))


def _attach_files(client: WebClient, dataset: dict, report: IntakeReport) -> None:
    channel, thread_ts = dataset["channel"], dataset["thread_ts"]
    stem = Path(dataset["filename"]).stem or "dataset"
    if report.converted_path and report.examples_converted and not report.dropped:
        upload_to_thread(
            client, channel=channel, thread_ts=thread_ts, path=report.converted_path,
            filename=f"{stem}.chat.jsonl", title=f"{stem}: {report.examples_converted} examples as chat JSONL",
        )
    if report.error_count:
        errors_path = write_error_report(report, Path(dataset["source_path"]).parent / "errors.csv")
        upload_to_thread(
            client, channel=channel, thread_ts=thread_ts, path=errors_path, filename=f"{stem}.errors.csv",
            title=f"{stem}: all {report.error_count} problems",
        )

