"""Training: tunehouse's recipe against TRL's SFTTrainer + PEFT, same model, data and settings, one run.

    .venv/bin/python bench/training_vs_trl.py [--train 200] [--valid 40] [--epochs 1] [--rounds 2]

Both train LoRA r=8 (alpha 16, no dropout) on every linear layer of the default model, batch 8, the same
peak learning rate with 10% linear warmup and linear decay, loss on the assistant tokens only, on the same
synthetic chat examples of about 100 tokens. Each trains in its own process, so its peak RSS is its own (the evaluation runs elsewhere).

- tokens/s: tokens that are not padding, over the wall time of the training loop (model load and the final
  evaluation excluded, for both). Each trainer runs `--rounds` times (2 by default), in the order TRL,
  tunehouse, tunehouse, TRL: this machine's speed drifts by 20% within an hour, and the mirrored order
  cancels a steady drift. The tokens/s compared are total tokens over total seconds; the peak RSS is the
  largest of the runs; the held-out loss is the first run's (the runs are seeded alike).
- held-out loss: one evaluator for both, in fp32 with plain transformers + PEFT, mean cross-entropy over the
  assistant tokens of examples neither trainer saw.
- MFU: model FLOPs over the machine's measured matrix-product peak (bf16 where the CPU computes it natively,
  else fp32; the higher of a measure before the runs and one after, as the machine's speed drifts and one
  measure taken in a slow minute once gave an MFU over 100%). FLOPs per trained token are counted
  as 4 x the body's linear weights (forward 2, input gradients 2: the frozen weights need no weight
  gradient) plus 4 x the vocabulary head per loss token; attention scores, LoRA's rank-8 products and norms
  are left out (under 3% at 100 tokens). The same useful FLOPs are counted for both trainers.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEARNING_RATE = 1e-3  # tunehouse's base LoRA rate (train/auto.py), used by both
BATCH_SIZE = 8
RANK = 8

TOPICS = ["invoice", "meeting", "shipment", "ticket", "order", "booking", "review", "payment", "alert", "survey"]
NAMES = ["Ada", "Bruno", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kemal", "Lea"]
CITIES = ["Oslo", "Lima", "Pune", "Graz", "Accra", "Quito", "Hanoi", "Turin", "Perth", "Cork"]


WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def make_dataset(count: int, seed: int) -> list[dict]:
    """Chat examples of about 100 tokens: turn a short note into a JSON record (a typical fine-tune), with
    fields to copy, one to look up (the weekday of a date in a month starting on a Monday) and one to
    compute (the amount with 20% tax), so the held-out loss stays informative after an epoch."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        topic, name, city = rng.choice(TOPICS), rng.choice(NAMES), rng.choice(CITIES)
        amount, day = rng.randint(10, 999), rng.randint(1, 28)
        note = (f"{name} from {city} sent a {topic} on day {day} about {amount} euros; "
                f"priority {rng.choice(['low', 'normal', 'high'])}, reference {rng.randint(1000, 9999)}.")
        answer = json.dumps({"type": topic, "person": name, "city": city, "weekday": WEEKDAYS[(day - 1) % 7],
                             "with_tax": round(amount * 1.2, 2)})
        rows.append({"messages": [
            {"role": "system", "content": "Extract the record as compact JSON."},
            {"role": "user", "content": note},
            {"role": "assistant", "content": answer},
        ]})
    return rows


# --- the two trainers, each run in its own process ------------------------------------------------------


def run_tunehouse(model_dir: str, train_rows: list[dict], epochs: int, out: Path) -> dict:
    from tunehouse.data.render import render_chat
    from tunehouse.models.catalog import load_tokenizer
    from tunehouse.train.lora_sft import Hooks, TrainConfig, run

    tokenizer = load_tokenizer(model_dir)
    examples = [render_chat(row["messages"], tokenizer) for row in train_rows]
    loop: dict[str, float] = {}
    config = TrainConfig(model_dir=model_dir, output_dir=str(out), n_epochs=epochs, batch_size=BATCH_SIZE,
                         lora_rank=RANK, lora_alpha=2 * RANK, learning_rate=LEARNING_RATE, log_every=1000)

    def on_metrics(metrics: dict) -> None:
        loop.setdefault("first_step_at", time.perf_counter() - metrics.get("seconds_per_step", 0.0))
        loop["last_step_at"] = time.perf_counter()

    result = run(config, examples, None, Hooks(on_metrics=on_metrics))
    return {"seconds": loop["last_step_at"] - loop["first_step_at"], "tokens": result.trained_tokens,
            "adapter": str(result.adapter_dir)}


def run_trl(model_dir: str, train_rows: list[dict], epochs: int, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    # prompt/completion form: TRL's documented way to put the loss on the assistant's answer only
    dataset = Dataset.from_list([{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in train_rows])
    timing: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            timing["start"] = time.perf_counter()

        def on_train_end(self, *args, **kwargs):
            timing["end"] = time.perf_counter()

    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=BATCH_SIZE, num_train_epochs=epochs,
                     learning_rate=LEARNING_RATE, lr_scheduler_type="linear",
                     warmup_steps=max(1, int(0.1 * math.ceil(len(train_rows) / BATCH_SIZE) * epochs)),  # as ours
                     weight_decay=0.0, max_grad_norm=1.0, logging_steps=1000, save_strategy="no", report_to=[],
                     bf16=False, use_cpu=True, dataloader_num_workers=0, seed=0, max_length=2048)
    peft_config = LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.0, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[Clock()])
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * epochs
    trainer.train()
    trainer.model.save_pretrained(out / "adapter")
    return {"seconds": timing["end"] - timing["start"], "tokens": tokens, "adapter": str(out / "adapter")}


# --- one evaluator for both -----------------------------------------------------------------------------


def heldout_loss(model_dir: str, adapter: str, rows: list[dict]) -> float:
    import torch
    import torch.nn.functional as F
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunehouse.data.render import render_chat
    from tunehouse.models.catalog import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), adapter)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            rendered = render_chat(row["messages"], tokenizer)
            ids = torch.tensor([rendered.input_ids])
            logits = model(input_ids=ids).logits[0, :-1].float()
            targets = ids[0, 1:]
            mask = torch.tensor(rendered.loss_mask[1:], dtype=torch.bool)
            total += float(F.cross_entropy(logits[mask], targets[mask], reduction="sum"))
            count += int(mask.sum())
    return total / count


def matmul_peak(dtype_name: str, seconds: float = 3.0) -> float:
    """GFLOP/s of a large square matrix product on this machine, in the given dtype."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    runs, started = 0, time.perf_counter()
    while not runs or time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    return 2 * 2048**3 * runs / (time.perf_counter() - started) / 1e9


def flops_per_token(model_dir: str, loss_fraction: float) -> float:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    hidden, layers, inter = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = hidden // heads
    per_layer = hidden * (heads * head_dim) * 2 + hidden * (kv_heads * head_dim) * 2 + 3 * hidden * inter
    return 4 * layers * per_layer + 4 * hidden * config["vocab_size"] * loss_fraction


# --- the driver -----------------------------------------------------------------------------------------


def child(args) -> None:
    """Train in this process and save the adapter; the parent reads this process's peak RSS."""
    rows = json.loads(Path(args.data).read_text())
    trainer = run_tunehouse if args.child == "tunehouse" else run_trl
    with tempfile.TemporaryDirectory() as scratch:
        result = trainer(args.model_dir, rows["train"], args.epochs, Path(scratch))
        shutil.copytree(result.pop("adapter"), args.adapter_out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this process: training only
    print("RESULT " + json.dumps(result))


def train_in_child(name: str, data: str, model_dir: str, epochs: int, adapter_out: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", name, "--data", data, "--model-dir", model_dir,
                           "--epochs", str(epochs), "--adapter-out", adapter_out], capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        print(f"{name} failed:\n{done.stderr[-3000:]}")
        sys.exit(1)
    return json.loads(lines[-1][7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--valid", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=["tunehouse", "trl"])
    parser.add_argument("--data")
    parser.add_argument("--model-dir")
    parser.add_argument("--adapter-out")
    args = parser.parse_args()
    if args.child:
        return child(args)

    from tunehouse.data.render import render_chat
    from tunehouse.models.catalog import ensure_default_model, load_tokenizer
    from tunehouse.settings import Settings

    model_dir = str(ensure_default_model(Settings().resolved_model_cache_dir))
    tokenizer = load_tokenizer(model_dir)
    rows = {"train": make_dataset(args.train, seed=1), "valid": make_dataset(args.valid, seed=2)}
    rendered = [render_chat(row["messages"], tokenizer) for row in rows["train"]]
    mean_tokens = sum(len(r.input_ids) for r in rendered) / len(rendered)
    loss_fraction = sum(r.loss_tokens for r in rendered) / sum(len(r.input_ids) for r in rendered)
    print(f"{args.train} training and {args.valid} held-out chat examples, {mean_tokens:.0f} tokens on average; "
          f"LoRA r={RANK} on all linear layers, batch {BATCH_SIZE}, {args.epochs} epoch(s), peak lr {LEARNING_RATE}")
    from tunehouse.cpu import native_bf16

    def peaks() -> tuple[float, float | None]:  # bf16 is converted to fp32 without native bf16: no peak of its own
        return matmul_peak("float32"), matmul_peak("bfloat16") if native_bf16() else None

    peaks_before = peaks()
    runs: dict[str, list[dict]] = {"trl": [], "tunehouse": []}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data.json"
        data.write_text(json.dumps(rows))
        for round_index in range(args.rounds):
            for name in ("trl", "tunehouse") if round_index % 2 == 0 else ("tunehouse", "trl"):
                adapter = str(Path(scratch) / f"{name}-adapter-{round_index}")
                run = train_in_child(name, str(data), model_dir, args.epochs, adapter)
                if not runs[name]:
                    run["heldout_loss"] = heldout_loss(model_dir, adapter, rows["valid"])
                runs[name].append(run)
                print(f"  run {len(runs['trl']) + len(runs['tunehouse'])}: {name:>9} "
                      f"{run['tokens'] / run['seconds']:7.1f} tokens/s")
    results = {name: {"tokens": sum(r["tokens"] for r in done), "seconds": sum(r["seconds"] for r in done),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in done), "heldout_loss": done[0]["heldout_loss"]}
               for name, done in runs.items()}

    # the higher of a measure before the runs and one after: the machine's speed drifts, and a peak is a ceiling
    peaks_after = peaks()
    peak_fp32 = max(peaks_before[0], peaks_after[0])
    peak_bf16 = max(peaks_before[1], peaks_after[1]) if peaks_before[1] else None
    peak, peak_name = (peak_bf16, "bf16") if peak_bf16 else (peak_fp32, "fp32")
    flops = flops_per_token(model_dir, loss_fraction)
    print(f"matrix-product peak here (the higher of before and after the runs): "
          f"{f'bf16 {peak_bf16:.0f} GFLOP/s' if peak_bf16 else 'no native bf16'}, "
          f"fp32 {peak_fp32:.0f} GFLOP/s (after the runs {peaks_after[0]:.0f}); "
          f"{flops / 1e6:.0f} MFLOP per trained token")
    for name, label in (("trl", "TRL SFTTrainer + PEFT (fp32)"), ("tunehouse", "tunehouse recipe")):
        r = results[name]
        rate = r["tokens"] / r["seconds"]
        results[name]["rate"] = rate
        print(f"{label:>30}: {rate:7.1f} tokens/s ({r['tokens']} tokens in {r['seconds']:.1f} s), "
              f"peak RSS {r['peak_rss_mb']:.0f} MB, held-out loss {r['heldout_loss']:.4f}, "
              f"MFU {rate * flops / 1e9 / peak:.1%} of the {peak_name} peak"
              + (f" ({rate * flops / 1e9 / peak_fp32:.0%} of fp32's)" if peak_bf16 else ""))
    ours, theirs = results["tunehouse"], results["trl"]
    print(f"ratio: {ours['rate'] / theirs['rate']:.2f}x TRL's tokens/s, "
          f"{ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x its peak RSS, "
          f"held-out loss {100 * (ours['heldout_loss'] / theirs['heldout_loss'] - 1):+.1f}% against TRL's fp32")


if __name__ == "__main__":
    main()
