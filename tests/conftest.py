"""Shared fixtures: the real default model's tokenizer, and real servers on loopback ports.

The default model comes from the same per-user cache as `make run`'s (`make install` converts it there;
TUNEHOUSE_MODEL_CACHE_DIR picks another), so a test run never converts it again.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tunehouse.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MODEL_CACHE = Settings().resolved_model_cache_dir
SHARED_REFERENCE = ROOT.parent / "shared" / "reference"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "screenshots"
# Chromium on a closed network, as root, without a screen
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from tunehouse.models.catalog import ensure_default_model

    return ensure_default_model(MODEL_CACHE)


@pytest.fixture(scope="session")
def tokenizer(default_model_dir: Path):
    from tunehouse.models.catalog import load_tokenizer

    return load_tokenizer(str(default_model_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A 2-layer Llama with random weights and the real tokenizer: trains in milliseconds per step."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
        initializer_range=0.3,  # large enough logits that a 32-wide model can learn within a few steps
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TUNEHOUSE_MODEL_CACHE_DIR"] = str(MODEL_CACHE)
    env.pop("TUNEHOUSE_DATA_DIR", None)
    return env


@dataclass
class Server:
    """A real `tunehouse serve` process on a loopback port."""

    data_dir: Path
    port: int
    process: subprocess.Popen | None = None
    extra_env: dict[str, str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Server:
        env = {**server_env(), **(self.extra_env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tunehouse", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.data_dir.parent / f"server-{self.port}.log", "ab"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start within 60 s")

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(timeout=30)

    def client(self, api_key: str = "sk-anything", strict: bool = True):
        """The official SDK, validating every response strictly unless told otherwise."""
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key=api_key, _strict_response_validation=strict, max_retries=0)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def make(data_dir: Path | None = None, **extra_env: str) -> Server:
        directory = data_dir or tmp_path / f"data-{len(started)}"
        directory.mkdir(parents=True, exist_ok=True)
        server = Server(directory, free_port(), extra_env=extra_env).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """One server shared by a test module (open mode: no keys)."""
    data_dir = tmp_path_factory.mktemp("server") / "data"
    data_dir.mkdir()
    server = Server(data_dir, free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openapi_spec() -> dict | None:
    """OpenAI's published OpenAPI document, present in the development workspace and CI, not in a user's clone."""
    path = SHARED_REFERENCE / "openai-openapi.yaml"
    if not path.exists():
        return None
    import yaml

    spec = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    _upgrade_exclusive_minimum(spec)
    return spec


def _upgrade_exclusive_minimum(node) -> None:
    """The spec says 3.1 but keeps some 3.0 `exclusiveMinimum: true` (which 2020-12 reads as the number 1)."""
    if isinstance(node, dict):
        if node.get("exclusiveMinimum") is True:
            node["exclusiveMinimum"] = node.pop("minimum", 0)
        for value in node.values():
            _upgrade_exclusive_minimum(value)
    elif isinstance(node, list):
        for value in node:
            _upgrade_exclusive_minimum(value)


@pytest.fixture(scope="session")
def assert_matches_spec(openapi_spec):
    """Validate a JSON body against one of the spec's component schemas (a no-op, with a warning, without it).

    The rest of each test (the SDK's strict validation included) runs either way.
    """
    from jsonschema import Draft202012Validator

    def check(body: dict, schema_name: str) -> None:
        if openapi_spec is None:
            warnings.warn(f"OpenAI's openapi.yaml is not in {SHARED_REFERENCE}: {schema_name} not checked")
            return
        schema = {"$ref": f"#/components/schemas/{schema_name}", "components": openapi_spec["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
        assert not errors, f"{schema_name}: " + "; ".join(e.message for e in errors[:5])

    return check


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium, driven by Playwright (which downloads nothing). Without it the browser
    tests skip, unless TUNEHOUSE_REQUIRE_BROWSER=1 (set by `.ci/run`), where they fail instead."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("TUNEHOUSE_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required here (TUNEHOUSE_REQUIRE_BROWSER=1) but /usr/bin/chromium is missing")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
