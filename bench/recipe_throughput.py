"""Training throughput of the LoRA SFT recipe alone on the default model (no API, no TRL yet).

    .venv/bin/python bench/recipe_throughput.py [--examples 96] [--epochs 1]

Synthetic chat examples of ~95 tokens (a JSON summary task), batch 8, LoRA r=8 on all linear layers; runs
once with bf16 autocast and once in fp32, printing steady tokens/s (after the first logged step), wall time
including model load and the validation pass, and the validation loss. The comparison with TRL on the same
data is `make bench` (issue 5), which this grows into.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from tunehouse.data.render import render_chat
from tunehouse.models.catalog import ensure_default_model, load_tokenizer
from tunehouse.train.lora_sft import Hooks, TrainConfig, run

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def synthetic_examples(tokenizer, count: int, seed: int = 0):
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(30)]
        answer = json.dumps({"first": words[0], "count": len(set(words)), "last": words[-1]})
        messages = [
            {"role": "user", "content": "Summarise as JSON: " + " ".join(words)},
            {"role": "assistant", "content": answer},
        ]
        examples.append(render_chat(messages, tokenizer))
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model-cache", type=Path, default=Path(".cache/models"))
    args = parser.parse_args()

    model_dir = ensure_default_model(args.model_cache)
    tokenizer = load_tokenizer(str(model_dir))
    examples = synthetic_examples(tokenizer, args.examples)
    mean_tokens = sum(len(e.input_ids) for e in examples) / len(examples)
    print(f"{len(examples)} examples, {mean_tokens:.1f} tokens on average")
    for bf16 in (True, False):
        metrics: list[dict] = []
        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(model_dir=str(model_dir), output_dir=out, n_epochs=args.epochs, batch_size=8,
                                 lora_rank=8, log_every=4, bf16=bf16)
            started = time.monotonic()
            result = run(config, examples, examples[:16], Hooks(on_metrics=metrics.append))
            wall = time.monotonic() - started
        rates = [m["tokens_per_second"] for m in metrics if "tokens_per_second" in m][1:]
        valid = [m["valid_loss"] for m in metrics if "valid_loss" in m]
        steady = sum(rates) / len(rates) if rates else float("nan")
        print(
            f"{'bf16 autocast' if bf16 else 'fp32':>13}: {steady:7.1f} tokens/s steady, "
            f"{result.trained_tokens} tokens in {wall:.1f} s wall (load + eval included), "
            f"final valid loss {valid[-1]:.4f}"
        )


if __name__ == "__main__":
    main()
