"""`/finetune eval`: every example's prompt through the base and the tuned model, scored, without Slack.

- accuracy: the share of answers equal to the example's answer (whitespace at the ends ignored); when the
  expected answer is a JSON object, also field by field (the share of answers that parse as JSON and
  hold the field with the expected value);
- precision: each prompt is asked SAMPLES times at the model's default temperature; a prompt's precision
  is the share of its answers equal to its most common one (1 when all agree, 1/3 when none do), averaged
  over the prompts.

Every answer counts for accuracy (SAMPLES per prompt), so both numbers come from the same calls.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai

from .chat import ChatFailed, answer

SAMPLES = 3
MAX_EXAMPLES = 50
"""Examples evaluated at most (the first ones): 50 prompts x 3 samples x 2 models is 300 calls."""
PARALLEL_CALLS = 8


@dataclass(frozen=True)
class Example:
    messages: list[dict]
    """Everything before the last assistant turn: what the model is asked."""
    expected: str


@dataclass
class Scores:
    model: str
    answers: list[list[str | None]]
    """Per example, SAMPLES answers (None: the call failed)."""
    exact: float
    fields: dict[str, float]
    precision: float


def read_examples(path: Path, limit: int = MAX_EXAMPLES) -> list[Example]:
    """The chat JSONL's examples with a string answer last, up to `limit`."""
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        messages = json.loads(line).get("messages") or []
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None or not isinstance(messages[last].get("content"), str):
            continue
        examples.append(Example(messages[:last], messages[last]["content"]))
        if len(examples) == limit:
            break
    return examples


def normalized(text: str | None) -> str | None:
    return None if text is None else text.strip()


def exact_match(answer_text: str | None, expected: str) -> bool:
    return normalized(answer_text) == normalized(expected)


def expected_fields(expected: str) -> dict | None:
    """The expected answer as a JSON object, or None when it is not one."""
    try:
        value = json.loads(expected)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value else None


def field_matches(answer_text: str | None, fields: dict) -> dict[str, bool]:
    try:
        given = json.loads(answer_text or "")
    except ValueError:
        given = None
    if not isinstance(given, dict):
        return {name: False for name in fields}
    return {name: name in given and given[name] == value for name, value in fields.items()}


def agreement(answers: list[str | None]) -> float:
    """The share of the answers equal to the most common one (a failed call agrees with nothing)."""
    counted = Counter(normalized(a) for a in answers if a is not None)
    return counted.most_common(1)[0][1] / len(answers) if counted else 0.0


def score(model: str, examples: list[Example], answers: list[list[str | None]]) -> Scores:
    total = sum(len(samples) for samples in answers)
    exact = sum(exact_match(a, ex.expected) for ex, samples in zip(examples, answers) for a in samples)
    field_hits: Counter[str] = Counter()
    field_totals: Counter[str] = Counter()
    for example, samples in zip(examples, answers):
        fields = expected_fields(example.expected)
        if fields is None:
            continue
        for sample in samples:
            for name, hit in field_matches(sample, fields).items():
                field_totals[name] += 1
                field_hits[name] += hit
    precision = sum(agreement(samples) for samples in answers) / len(answers) if answers else 0.0
    return Scores(
        model=model, answers=answers, exact=exact / total if total else 0.0,
        fields={name: field_hits[name] / field_totals[name] for name in field_totals}, precision=precision,
    )


def answer_tokens(expected: str) -> int:
    """Room for an answer: about twice the expected one, so a wrong answer cannot run on for long."""
    return min(512, 16 + len(expected) // 2)


def run(
    client: openai.OpenAI, models: list[str], examples: list[Example],
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[Scores]:
    """Ask every model every example (as the data has it, system message included) SAMPLES times, in
    parallel; `progress(done, total)` after each answer.

    Raises:
        ChatFailed: every call to one model failed (unknown model, backend down): its message.
    """
    calls = [(m, e, s) for m in range(len(models)) for e in range(len(examples)) for s in range(SAMPLES)]
    answers = [[[None] * SAMPLES for _ in examples] for _ in models]
    failures: dict[int, str] = {}
    done = [0]
    lock = threading.Lock()

    def ask(call: tuple[int, int, int]) -> None:
        m, e, s = call
        example = examples[e]
        try:
            answers[m][e][s], _ = answer(client, models[m], example.messages, max_tokens=answer_tokens(example.expected))
        except ChatFailed as failure:
            failures[m] = str(failure)
        with lock:
            done[0] += 1
            progress(done[0], len(calls))

    with ThreadPoolExecutor(max_workers=PARALLEL_CALLS) as pool:
        list(pool.map(ask, calls))
    for m, message in failures.items():
        if all(a is None for samples in answers[m] for a in samples):
            raise ChatFailed(message)
    return [score(model, examples, answers[m]) for m, model in enumerate(models)]


# -- the report: a table, a chart, every answer ------------------------------------------------------------


def table(scores: list[Scores], labels: list[str], samples_per_model: int) -> str:
    """A fixed-width table (for a code block): exact match, each JSON field, precision, per model."""
    rows = [("", *labels)]
    rows.append(("exact match", *[f"{s.exact:.0%}" for s in scores]))
    for name in scores[0].fields:
        rows.append((f"field {name}"[:28], *[f"{s.fields.get(name, 0.0):.0%}" for s in scores]))
    rows.append((f"precision ({SAMPLES} samples)", *[f"{s.precision:.2f}" for s in scores]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + f"\n({samples_per_model} answers per model)"


def answers_csv(examples: list[Example], scores: list[Scores]) -> bytes:
    """Every answer: example, model, sample, prompt, expected, answer, exact."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["example", "model", "sample", "prompt", "expected", "answer", "exact"])
    for s in scores:
        for e, (example, samples) in enumerate(zip(examples, s.answers)):
            prompt = next((m["content"] for m in reversed(example.messages) if m.get("role") == "user"), "")
            for k, given in enumerate(samples):
                writer.writerow([e + 1, s.model, k + 1, prompt, example.expected, "" if given is None else given,
                                 int(exact_match(given, example.expected))])
    return buffer.getvalue().encode()


def chart_png(scores: list[Scores], labels: list[str]) -> bytes:
    """Bars for exact match, each field and precision, one colour per model (800x400 px)."""
    from matplotlib.figure import Figure

    metrics = ["exact match", *scores[0].fields, "precision"]
    values = [[s.exact, *[s.fields.get(f, 0.0) for f in scores[0].fields], s.precision] for s in scores]
    figure = Figure(figsize=(8, 4), dpi=100)
    axes = figure.subplots()
    width = 0.8 / len(scores)
    for i, (label, row) in enumerate(zip(labels, values)):
        positions = [x + (i - (len(scores) - 1) / 2) * width for x in range(len(metrics))]
        bars = axes.bar(positions, row, width, label=label, color=("#9aa5b1", "#1f6fb4", "#d1495b")[i % 3])
        axes.bar_label(bars, labels=[f"{v:.0%}" if m != "precision" else f"{v:.2f}" for m, v in zip(metrics, row)], fontsize=9)
    axes.set_xticks(range(len(metrics)), [m[:18] for m in metrics])
    axes.set_ylim(0, 1.12)
    axes.set_title("Evaluation: base against tuned")
    axes.legend(loc="upper right")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()
