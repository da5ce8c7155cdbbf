"""Fuzz every operation of the app's own OpenAPI document (schemathesis) against a real server:
no 5xx, and every error in OpenAI's envelope."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
HOOKS = Path(__file__).resolve().parent.parent / "fuzz_hooks.py"


def fuzz(server, *selection: str, examples: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"http://127.0.0.1:{server.port}/openapi.json",
               "--checks", "not_a_server_error,openai_error_envelope", "--max-examples", str(examples),
               "--seed", "1", *selection]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS.stem, "PYTHONPATH": str(HOOKS.parent)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_no_server_errors_and_every_error_in_the_envelope(server):
    result = fuzz(server, "--exclude-path-regex", "completions", examples=30)
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "generated" in result.stdout


def test_generation_endpoints_too(server):
    result = fuzz(server, "--include-path-regex", "completions", "--phases", "coverage,fuzzing", examples=10)
    assert result.returncode == 0, result.stdout[-4000:]
