"""The loss chart posted in a job's thread when it succeeds, and its alt text.

Drawn on a bare `Figure` (Agg, no pyplot): no display, no global backend switch, nothing kept between calls.
matplotlib is imported inside the function because importing it costs about half a second, which the bot
should not pay at startup. Sized for Slack's preview (800×450 px) with fonts that stay readable there.
"""

from __future__ import annotations

import io

Points = list[tuple[int, float]]
"""(step, loss) pairs."""

WIDTH_INCHES, HEIGHT_INCHES, DPI = 8, 4.5, 100
TRAIN_COLOR, VALID_COLOR = "#1f6fb4", "#d1495b"
MARKERS_UP_TO = 60
"""Series with at most this many points get a marker per point (validation is measured rarely)."""


def loss_chart_png(train: Points, valid: Points, *, title: str) -> bytes:
    """A PNG of the training and validation losses by step, each final value written at its end.

    Raises:
        ValueError: when both series are empty (there is nothing to draw).
    """
    if not train and not valid:
        raise ValueError("no loss values to plot")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    # each final value is written at its last point: the higher one above it, the lower one below
    train_on_top = not valid or (bool(train) and max(train)[1] >= max(valid)[1])
    for label, points, color, above in (
        ("training loss", train, TRAIN_COLOR, train_on_top),
        ("validation loss", valid, VALID_COLOR, not train_on_top),
    ):
        if not points:
            continue
        steps, losses = zip(*sorted(points))
        axes.plot(
            steps, losses, label=f"{label} (final {losses[-1]:.3f})", color=color, linewidth=2,
            marker="o" if len(points) <= MARKERS_UP_TO else None, markersize=4,
        )
        axes.annotate(
            f"{losses[-1]:.3f}", xy=(steps[-1], losses[-1]), xytext=(-6, 14 if above else -14),
            textcoords="offset points", ha="right", va="center", fontsize=13, fontweight="bold", color=color,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )
    axes.set_title(title, fontsize=16)
    axes.set_xlabel("step", fontsize=14)
    axes.set_ylabel("loss", fontsize=14)
    axes.tick_params(labelsize=12)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    axes.grid(alpha=0.3)
    axes.legend(fontsize=12, loc="upper right")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def chart_alt_text(train: Points, valid: Points) -> str:
    """The chart in words, for the upload's `alt_txt`: where each loss began and ended, and the best validation."""
    sentences = ["Loss by training step."]
    if train:
        (first_step, first), (last_step, last) = min(train), max(train)
        sentences.append(
            f"Training loss went from {first:.3f} at step {first_step} to {last:.3f} at step {last_step}."
        )
    if valid:
        (first_step, first), (last_step, last) = min(valid), max(valid)
        best_step, best = min(valid, key=lambda point: (point[1], point[0]))
        sentences.append(
            f"Validation loss went from {first:.3f} at step {first_step} to {last:.3f} at step {last_step}, "
            f"lowest {best:.3f} at step {best_step}."
        )
    if not train and not valid:
        sentences.append("No losses were reported.")
    return " ".join(sentences)
