"""The bot's plain functions: job options, suffixes, the validation split, where the token may go, Block Kit
within Slack's limits, and storage's claims (the exactly-once primitive)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from slack_sdk.models.blocks import Block

from bot import blocks
from bot.chat import usable_in
from bot.datasets import Issue, IntakeReport, TokenStats
from bot.jobs import AUTO, parse_options, split_validation, suffix_for_channel
from bot.settings import BotSettings
from bot.slack_ops import token_may_go_to
from storage import Storage

API = "http://127.0.0.1:8000/api/"


def test_options_default_to_auto_and_report_each_bad_field():
    options, errors = parse_options({"n_epochs": "", "batch_size": "auto"}, "gpt-4o-mini-2024-07-18")
    assert errors == {} and options.n_epochs == AUTO and options.batch_size == AUTO
    assert options.base_model == "gpt-4o-mini-2024-07-18" and options.validation_share == 0
    options, errors = parse_options(
        {"n_epochs": "0", "learning_rate_multiplier": "fast", "suffix": "a b", "validation_share": "80", "seed": "-1"},
        "m",
    )
    assert options is None
    assert set(errors) == {"n_epochs", "learning_rate_multiplier", "suffix", "validation_share", "seed"}
    options, errors = parse_options({"n_epochs": "3", "validation_share": "10%", "seed": "7", "base_model": "x"}, "m")
    assert (options.n_epochs, options.validation_share, options.seed, options.base_model) == (3, 0.1, 7, "x")


def test_suffix_from_a_channel_name():
    assert suffix_for_channel("Support Bot!") == "support-bot"
    assert suffix_for_channel("---") is None and suffix_for_channel(None) is None
    assert len(suffix_for_channel("x" * 100)) == 40


def test_the_validation_split_is_deterministic_and_loses_nothing(tmp_path: Path):
    converted = tmp_path / "all.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": str(i)}]}) + "\n" for i in range(200)]
    converted.write_text("".join(lines))
    train, valid = split_validation(converted, 0.1, tmp_path)
    first = (train.read_text(), valid.read_text())
    train, valid = split_validation(converted, 0.1, tmp_path)
    assert (train.read_text(), valid.read_text()) == first
    held = valid.read_text().splitlines(keepends=True)
    assert 5 <= len(held) <= 40
    assert sorted(train.read_text().splitlines(keepends=True) + held) == sorted(lines)
    assert split_validation(converted, 0, tmp_path) == (converted, None)


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://files.slack.com/files-pri/T1-F1/download/a.csv", True),
        ("http://127.0.0.1:8000/files-pri/T1-F1/download/a.csv", True),
        ("https://evil.example/files-pri/a.csv", False),
        ("https://files.slack.com.evil.example/a.csv", False),
        ("http://files.slack.com/a.csv", False),
        ("file:///etc/passwd", False),
    ],
)
def test_the_bot_token_goes_only_to_slack_or_the_configured_api(url, allowed):
    assert token_may_go_to(url, API) is allowed


def big_report(errors: int) -> IntakeReport:
    issues = tuple(
        Issue(where=f"line {i}", field="messages[0].content", message="x" * 400, code="missing_content") for i in range(errors)
    )
    return IntakeReport(
        filename="<@U1> & data.jsonl", base_model="gpt-4o-mini-2024-07-18", backend="openai", format_label="JSONL · chat",
        examples_read=5000, examples_converted=4000, examples_skipped=errors, errors=issues, error_count=errors,
        warnings=tuple("w" * 500 for _ in range(30)), tokens=TokenStats("o200k_base", 65536, 1, 2, 3, 4, 10, 0),
        epochs=3, trained_tokens=30, cost_usd=0.01, price_note="prices of 2025-04-14",
        first_example=[{"role": "user", "content": "```" + "y" * 5000}],
    )


@pytest.mark.parametrize("errors", [0, 3, 2000])
def test_a_report_fits_slacks_limits_whatever_the_file(errors):
    message = blocks.dataset_report(big_report(errors), dataset_id="ds_1", backend="openai")
    assert len(message["blocks"]) <= 50
    for block in message["blocks"]:
        Block.parse(block).validate_json()  # slack_sdk raises where Slack would answer invalid_blocks
    said = json.dumps(message["blocks"])
    assert "<@U1>" not in said and "&lt;@U1&gt;" in said, "dataset text can never ping anyone"
    assert ("dataset_drop_bad" in said) is bool(errors)


def test_a_claim_is_taken_once_across_threads_and_restarts(tmp_path: Path):
    path = tmp_path / "bot.db"
    storage = Storage(path)
    wins = []
    threads = [threading.Thread(target=lambda: wins.append(storage.claim("file:F1"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1
    reopened = Storage(path)
    assert not reopened.claim("file:F1")
    assert [key for key, _ in reopened.pending_claims("file:")] == ["file:F1"]
    reopened.finish_claim("file:F1")
    assert reopened.pending_claims("file:") == []


def test_a_released_claim_can_be_taken_again_and_a_finished_one_cannot(tmp_path: Path):
    storage = Storage(tmp_path / "bot.db")
    assert storage.claim("milestone:J1:end")
    storage.release_claim("milestone:J1:end")
    assert storage.claim("milestone:J1:end")
    storage.finish_claim("milestone:J1:end")
    storage.release_claim("milestone:J1:end")
    assert not storage.claim("milestone:J1:end")


def test_allowed_channels_and_direct_messages():
    anywhere = BotSettings(_env_file=None)
    assert anywhere.works_in("C1") and anywhere.works_in("G2")
    only = BotSettings(_env_file=None, SLACK_ALLOWED_CHANNELS="C1, C2")
    assert only.allowed_channels == ["C1", "C2"]
    assert only.works_in("C2") and only.works_in("D9") and not only.works_in("C3")


def test_a_tuned_model_answers_where_it_was_tuned_and_in_its_starters_dms(tmp_path: Path):
    storage = Storage(tmp_path / "bot.db")
    storage.save_job(channel="C1", user="U1", status="succeeded", fine_tuned_model="ft:secret", job_id="ftjob-1")
    assert usable_in(storage, "ft:secret", "C1", "U2")
    assert not usable_in(storage, "ft:secret", "C2", "U1")
    assert usable_in(storage, "ft:secret", "D1", "U1") and not usable_in(storage, "ft:secret", "D2", "U2")
    assert usable_in(storage, "gpt-4o-mini-2024-07-18", "C2", "U2"), "models the bot did not tune answer anywhere"
