"""`tunehouse data check`: statistics, precise problems and the loss-mask preview, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import server_env

pytestmark = pytest.mark.integration


def run_check(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "tunehouse", "data", "check", *args, "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, env=server_env(), timeout=300,
    )


def test_valid_file_prints_stats_and_preview(tmp_path, default_model_dir):
    path = tmp_path / "chat.jsonl"
    example = {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]}
    path.write_text(json.dumps(example) + "\n")
    result = run_check(tmp_path, str(path), "--show", "1")
    assert result.returncode == 0, result.stderr
    assert "1 chat messages examples" in result.stdout and "warning" in result.stdout
    assert "⟦Paris.<|im_end|>⟧" in result.stdout and "Capital of France?<|im_end|>" in result.stdout

    as_json = json.loads(run_check(tmp_path, str(path), "--json", "--epochs", "2").stdout)
    assert as_json["valid"] and as_json["examples"] == 1 and as_json["n_epochs"] == 2
    assert as_json["billable_tokens"] == 2 * as_json["tokens_max"] and as_json["context_length"] == 8192


def test_invalid_file_exits_1_naming_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "robot", "content": "x"}]}\n{"prompt": "no completion"}\n')
    result = run_check(tmp_path, str(path))
    assert result.returncode == 1
    assert "line 1: unrecognized_role" in result.stderr.replace("\n", " ")
    problems = json.loads(run_check(tmp_path, str(path), "--json").stdout)["problems"]
    assert [(p["line"], p["code"]) for p in problems] == [(1, "unrecognized_role"), (2, "mixed_formats")]
