"""The default model's cache: one per user, converted once even when several processes ask at once, and a
"Preparing the model" message before any conversion (the Slack bot shows a job's status from it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tunehouse.models import catalog
from tunehouse.settings import Settings


@pytest.fixture
def conversions(monkeypatch) -> list[Path]:
    """Stand in for the ~20 s GGUF conversion: a slow fake that writes the folder's manifest."""
    done: list[Path] = []

    def convert(_gguf: Path, target: Path) -> None:
        time.sleep(0.3)  # long enough for concurrent callers to meet at the lock
        target.mkdir(parents=True)
        (target / catalog.MANIFEST).write_text("{}")
        done.append(target)

    monkeypatch.setattr(catalog, "_convert_gguf", convert)
    monkeypatch.setattr(catalog, "default_gguf_path", lambda: Path("unused.gguf"))
    return done


def test_preparing_the_model_is_said_before_a_conversion_and_never_once_cached(tmp_path, conversions):
    messages: list[str] = []
    folder = catalog.ensure_default_model(tmp_path, log=messages.append)
    assert conversions == [folder] and catalog.converted_default_model(tmp_path) == folder
    assert messages[0].startswith("Preparing the model smollm2-135m-instruct") and len(messages) == 2
    assert "model ready" in messages[1].lower()  # what the Slack bot's status matches, as the words above
    messages.clear()
    assert catalog.ensure_default_model(tmp_path, log=messages.append) == folder
    assert messages == [] and len(conversions) == 1


def test_callers_at_the_same_time_convert_once_and_all_get_the_model(tmp_path, conversions):
    results: list[Path] = []

    def prepare() -> None:
        results.append(catalog.ensure_default_model(tmp_path, log=lambda _: None))

    callers = [threading.Thread(target=prepare) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(conversions) == 1 and results == [conversions[0]] * 3


def test_the_cache_is_per_user_and_shared_by_data_dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNEHOUSE_MODEL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first, second = Settings(data_dir=tmp_path / "a"), Settings(data_dir=tmp_path / "b")
    shared = tmp_path / "xdg" / "tunehouse" / "models"
    assert first.resolved_model_cache_dir == second.resolved_model_cache_dir == shared
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert Settings().resolved_model_cache_dir == Path.home() / ".cache" / "tunehouse" / "models"
    monkeypatch.setenv("TUNEHOUSE_MODEL_CACHE_DIR", str(tmp_path / "mine"))
    assert Settings(data_dir=tmp_path / "a").resolved_model_cache_dir == tmp_path / "mine"
