"""Training: what each technique of the recipe gives, one at a time, on the default model.

    .venv/bin/python bench/recipe_throughput.py [--examples 96] [--epochs 1]

The chat examples of bench/training_vs_trl.py (a short note turned into a JSON record, ~92 tokens), with 16
held-out ones for validation; batch 8, LoRA r=8 on all linear layers. Every run has length bucketing and
the vocabulary head only at loss positions (always on). The runs:
- fp32: every weight and product in fp32, transformers' layers;
- fp32, compact forward: the same through train/llama_body.py (where bf16 is not native, the default);
- bf16 autocast: PyTorch's CPU autocast through transformers' layers (the usual recipe; every product and
  LoRA's sum in bf16);
- bf16 base: tunehouse's way, frozen weights stored in bf16, activations and LoRA in fp32, still through
  transformers' layers (each LoRA layer one LoraOnBf16Base);
- bf16 base, whole batches: the same without splitting a batch into row groups of 512 tokens;
- + compact forward: bf16 base through train/llama_body.py (fused projections, bf16-kept inputs);
- + two lanes: and two row groups at a time, each in its own thread: tunehouse's default where there are
  two cores or more. The runs above it use one lane (autocast is per thread, so it needs one).
Where the CPU has no native bf16 (bf16 products are then converted to fp32 and back, far slower than fp32),
the bf16 runs are left out and the compact forward in fp32, alone and with two lanes (the default there is
one), is measured instead.
Printed: steady tokens/s (after the first logged step), wall time with model load and validation, and the
validation loss after the run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from tunehouse.data.render import render_chat
from tunehouse.cpu import native_bf16
from tunehouse.models.catalog import ensure_default_model, load_tokenizer
from tunehouse.settings import Settings
from tunehouse.train.lora_sft import Hooks, TrainConfig, run
from training_vs_trl import make_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model-cache", type=Path, default=Settings().resolved_model_cache_dir)
    args = parser.parse_args()

    model_dir = ensure_default_model(args.model_cache)
    tokenizer = load_tokenizer(str(model_dir))
    examples = [render_chat(row["messages"], tokenizer) for row in make_dataset(args.examples, seed=1)]
    held_out = [render_chat(row["messages"], tokenizer) for row in make_dataset(16, seed=2)]
    mean_tokens = sum(len(e.input_ids) for e in examples) / len(examples)
    print(f"{len(examples)} examples, {mean_tokens:.1f} tokens on average")
    runs = [("fp32", dict(bf16=False, compact_forward=False, lanes=1))]
    if native_bf16():
        runs += [
            ("bf16 autocast", dict(bf16=False, compact_forward=False, autocast=True, lanes=1)),
            ("bf16 base", dict(bf16=True, compact_forward=False, lanes=1)),
            ("bf16 base, whole batches", dict(bf16=True, compact_forward=False, micro_batch_tokens=100_000, lanes=1)),
            ("+ compact forward", dict(bf16=True, lanes=1)),
            ("+ two lanes", dict(bf16=True, lanes=2)),
        ]
    else:
        print("no native bf16 products on this CPU: the bf16 runs are left out")
        runs += [("fp32, compact forward", dict(bf16=False, lanes=1)),
                 ("fp32, compact, two lanes", dict(bf16=False, lanes=2))]
    for label, options in runs:
        autocast = options.pop("autocast", False)
        metrics: list[dict] = []
        with tempfile.TemporaryDirectory() as out, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            config = TrainConfig(model_dir=str(model_dir), output_dir=out, n_epochs=args.epochs, batch_size=8,
                                 lora_rank=8, log_every=4, **options)
            started = time.monotonic()
            result = run(config, examples, held_out, Hooks(on_metrics=metrics.append))
            wall = time.monotonic() - started
        rates = [m["tokens_per_second"] for m in metrics if "tokens_per_second" in m][1:]
        valid = [m["valid_loss"] for m in metrics if "valid_loss" in m]
        steady = sum(rates) / len(rates) if rates else float("nan")
        print(
            f"{label:>25}: {steady:7.1f} tokens/s steady, {result.trained_tokens} tokens in {wall:.1f} s wall "
            f"(load + eval included), final valid loss {valid[-1]:.4f}"
        )


if __name__ == "__main__":
    main()
