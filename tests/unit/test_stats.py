from __future__ import annotations

import json

from tunehouse.data.render import render_example
from tunehouse.data.stats import auto_epochs, compute_stats
from tunehouse.data.validate import validate_dataset


def test_auto_epochs_follows_openais_rule():
    assert auto_epochs(2) == 25  # tiny sets: up to 25 epochs
    assert auto_epochs(10) == 10  # ceil(100 / 10)
    assert auto_epochs(50) == 3
    assert auto_epochs(20_000) == 1  # huge sets: down to 1


def test_stats_count_tokens_truncation_and_cost(tmp_path, tokenizer):
    records = [{"prompt": "Q: " + "word " * n, "completion": " A"} for n in (1, 5, 50)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = validate_dataset(path)
    lengths = [len(render_example(e.record, e.format, tokenizer).input_ids) for e in report.examples]
    stats = compute_stats(report, tokenizer, context_length=20, n_epochs=2, tokens_per_second=10)
    assert stats.examples == 3 and stats.format == "prompt_completion"
    assert stats.tokens_min == min(lengths) and stats.tokens_max == 20  # the long one is truncated to 20
    assert stats.examples_over_context == 1
    assert stats.billable_tokens == 2 * (lengths[0] + lengths[1] + 20)
    assert stats.estimated_seconds == stats.billable_tokens / 10
