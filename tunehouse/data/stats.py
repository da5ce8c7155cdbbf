"""Dataset statistics: examples, tokens with the target model's tokenizer, truncation, cost in tokens and time."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..cpu import native_bf16
from .costs import CPU_TOKENS_PER_SECOND_FP32, CPU_TOKENS_PER_SECOND_NATIVE_BF16, auto_epochs
from .render import render_example
from .validate import DatasetReport

__all__ = ["DatasetStats", "compute_stats", "cpu_training_tokens_per_second"]


def cpu_training_tokens_per_second() -> float:
    """Rough LoRA training throughput of the default model on a 2-core CPU (`make bench`), for estimates;
    the figures live in costs.py, shared with the bot, which judges the CPU without torch."""
    return CPU_TOKENS_PER_SECOND_NATIVE_BF16 if native_bf16() else CPU_TOKENS_PER_SECOND_FP32


@dataclass
class DatasetStats:
    format: str
    examples: int
    tokens_min: int
    tokens_mean: float
    tokens_max: int
    loss_tokens: int
    """Tokens that carry loss in one epoch (after truncation)."""
    context_length: int
    examples_over_context: int
    n_epochs: int
    billable_tokens: int
    """Tokens processed over all epochs (after truncation): what training costs."""
    estimated_seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def compute_stats(
    report: DatasetReport,
    tokenizer,
    *,
    context_length: int,
    n_epochs: int | None = None,
    tokens_per_second: float | None = None,
) -> DatasetStats:
    """Statistics of a valid dataset (`report.ok`)."""
    lengths = []
    loss_tokens = 0
    over = 0
    for example in report.examples:
        rendered = render_example(example.record, example.format, tokenizer)
        if len(rendered.input_ids) > context_length:
            over += 1
            rendered = rendered.truncate(context_length)
        lengths.append(len(rendered.input_ids))
        loss_tokens += rendered.loss_tokens
    epochs = n_epochs or auto_epochs(len(lengths))
    billable = sum(lengths) * epochs
    return DatasetStats(
        format=report.format or "",
        examples=len(lengths),
        tokens_min=min(lengths, default=0),
        tokens_mean=round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        tokens_max=max(lengths, default=0),
        loss_tokens=loss_tokens,
        context_length=context_length,
        examples_over_context=over,
        n_epochs=epochs,
        billable_tokens=billable,
        estimated_seconds=round(billable / (tokens_per_second or cpu_training_tokens_per_second()), 1),
    )
