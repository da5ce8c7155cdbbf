"""The loss chart is a real PNG of Slack's preview size, and its alt text carries the numbers."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from bot.chart import chart_alt_text, loss_chart_png

TRAIN = [(step, 2.0 / step) for step in range(1, 121)]
VALID = [(40, 0.31), (80, 0.262), (120, 0.275)]


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has right after its signature."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", png[16:24])


def test_chart_is_a_png_at_slack_preview_size():
    png = loss_chart_png(TRAIN, VALID, title="ft:gpt-4o-mini-2024-07-18:personal::Ajo5kvNY")
    assert png_size(png) == (800, 450)
    assert png.endswith(b"IEND\xaeB`\x82")


def test_chart_with_one_series_or_unsorted_points():
    assert png_size(loss_chart_png(TRAIN[::-1], [], title="training only")) == (800, 450)
    assert png_size(loss_chart_png([], VALID, title="validation only")) == (800, 450)


def test_chart_without_any_loss_is_refused():
    with pytest.raises(ValueError):
        loss_chart_png([], [], title="nothing")


def test_alt_text_says_where_the_losses_went():
    text = chart_alt_text(TRAIN, VALID)
    assert "Training loss went from 2.000 at step 1 to 0.017 at step 120." in text
    assert "Validation loss went from 0.310 at step 40 to 0.275 at step 120, lowest 0.262 at step 80." in text
    assert chart_alt_text([], []) == "Loss by training step. No losses were reported."


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, bot.chart; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
