"""Dataset intake: the bot's analysis of a dropped file against OpenAI's own data-preparation notebook.

    .venv/bin/python bench/dataset_intake.py [--examples 100000]

The anchor is OpenAI's cookbook notebook "Data preparation and analysis for chat model fine-tuning"
(openai/openai-cookbook, examples/Chat_finetuning_data_prep.ipynb), re-implemented below cell by cell: load
every line with json.loads, count the format errors (data_type, missing_messages_list, message_missing_key,
message_unrecognized_key, unrecognized_role, missing_content, example_missing_assistant_message), count
tokens with its num_tokens_from_messages and num_assistant_tokens_from_messages, print the distributions,
and estimate epochs and billed tokens. bpe-openai's tiktoken-compatible `get_encoding("o200k_base")` stands
in for tiktoken (which would download the encoding); MAX_TOKENS_PER_EXAMPLE is gpt-4o-mini's 65,536
(the notebook's 16,385 is gpt-3.5-turbo's).

Three measures, each in a fresh child process (its own peak RSS, nothing cached from another run):
1. 100,000 three-message chat examples (~38 MB): the anchor and `bot.datasets.analyse`, with the same
   counts checked (examples, format errors, total tokens, examples over the context, epochs, billed
   tokens, median tokens), each `--runs` times in the order anchor, ours, ours, anchor, ... (the machine's
   speed drifts); the medians are compared. Times exclude start-up: loading the o200k tokenizer (the
   notebook) and `bot.datasets.prepare()` (worker processes up, tokenizers loaded: the bot does it once,
   at start), timed on their own.
2. Peak RSS of analysing a 50 MB file (ru_maxrss of the child), against the same child's RSS after
   loading the tokenizer and before reading.
3. Analysing a 1 MB, 2,000-example file: what someone dropping a typical file waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYSTEM_PROMPTS = [
    "You are a helpful assistant for a logistics company. Answer briefly and politely.",
    "You are Marv, a factual chatbot that is also sarcastic.",
    "You answer customer questions about invoices, orders and shipments in one or two sentences.",
]
WORDS = (
    "invoice order shipment ticket booking review payment alert survey delivery customer warehouse city "
    "Oslo Lima Pune Graz Accra Quito Hanoi Turin Perth Cork Monday Tuesday Friday euro tax total amount "
    "the a of to and in for on with is was will be please could you tell me when where how what status "
    "late early tomorrow today refund address change cancel confirm number account email phone"
).split()


def make_dataset(path: Path, count: int, seed: int, words_per_turn: int = 15) -> None:
    """`count` chat examples (system, user, assistant), ~370 bytes each with 15 words a turn, as JSONL."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for number in range(count):
            question = " ".join(rng.choices(WORDS, k=words_per_turn)) + f" (ref {number})?"
            answer = " ".join(rng.choices(WORDS, k=words_per_turn)) + "."
            example = {
                "messages": [
                    {"role": "system", "content": rng.choice(SYSTEM_PROMPTS)},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
            }
            handle.write(json.dumps(example) + "\n")


# --- the anchor: OpenAI's notebook, cell by cell -----------------------------------------------------------

MAX_TOKENS_PER_EXAMPLE = 65_536
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def cookbook_analysis(data_path: Path, encoding) -> dict:
    import numpy as np

    # Data loading
    with open(data_path, "r", encoding="utf-8") as f:
        dataset = [json.loads(line) for line in f]

    # Format validation
    format_errors = defaultdict(int)
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] += 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] += 1
            if any(k not in ("role", "content", "name", "function_call", "weight") for k in message):
                format_errors["message_unrecognized_key"] += 1
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] += 1
            content = message.get("content", None)
            function_call = message.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                format_errors["missing_content"] += 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            format_errors["example_missing_assistant_message"] += 1

    # Token counting utilities
    def num_tokens_from_messages(messages, tokens_per_message=3, tokens_per_name=1):
        num_tokens = 0
        for message in messages:
            num_tokens += tokens_per_message
            for key, value in message.items():
                num_tokens += len(encoding.encode(value))
                if key == "name":
                    num_tokens += tokens_per_name
        num_tokens += 3
        return num_tokens

    def num_assistant_tokens_from_messages(messages):
        num_tokens = 0
        for message in messages:
            if message["role"] == "assistant":
                num_tokens += len(encoding.encode(message["content"]))
        return num_tokens

    def print_distribution(values, name):
        return {
            "name": name, "min": min(values), "max": max(values), "mean": np.mean(values),
            "median": np.median(values), "p5": np.quantile(values, 0.1), "p95": np.quantile(values, 0.9),
        }

    # Data warnings and token counts
    n_missing_system = 0
    n_missing_user = 0
    n_messages = []
    convo_lens = []
    assistant_message_lens = []
    for ex in dataset:
        messages = ex["messages"]
        if not any(message["role"] == "system" for message in messages):
            n_missing_system += 1
        if not any(message["role"] == "user" for message in messages):
            n_missing_user += 1
        n_messages.append(len(messages))
        convo_lens.append(num_tokens_from_messages(messages))
        assistant_message_lens.append(num_assistant_tokens_from_messages(messages))
    distributions = [
        print_distribution(n_messages, "num_messages_per_example"),
        print_distribution(convo_lens, "num_total_tokens_per_example"),
        print_distribution(assistant_message_lens, "num_assistant_tokens_per_example"),
    ]
    n_too_long = sum(length > MAX_TOKENS_PER_EXAMPLE for length in convo_lens)

    # Pricing and default n_epochs estimate
    n_epochs = TARGET_EPOCHS
    n_train_examples = len(dataset)
    if n_train_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        n_epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_train_examples)
    elif n_train_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        n_epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_train_examples)
    n_billing_tokens_in_dataset = sum(min(MAX_TOKENS_PER_EXAMPLE, length) for length in convo_lens)
    return {
        "examples": n_train_examples,
        "format_errors": sum(format_errors.values()),
        "total_tokens": sum(convo_lens),
        "over_context": n_too_long,
        "epochs": n_epochs,
        "billed_tokens": n_billing_tokens_in_dataset * n_epochs,
        "median_tokens": distributions[1]["median"],
    }


# --- each measure in its own process ---------------------------------------------------------------------


def _child(kind: str, path: str, runs: int) -> None:
    """Run one measure `runs` times here and print one JSON line: the median seconds, counts, peak RSS of
    this process and of the largest worker process."""
    started = time.perf_counter()
    if kind == "anchor":
        import bpe_openai

        encoding = bpe_openai.get_encoding("o200k_base")
    else:
        from bot import datasets

        datasets.prepare()  # the bot does this at start: worker processes up, tokenizers loaded
    load_seconds = time.perf_counter() - started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # the worker processes are forked by the fork server: not in our RUSAGE_CHILDREN, read from /proc
    worker_pids = list(datasets._workers._processes) if kind == "ours" and datasets._workers else []
    cpu_before = _cpu_seconds(worker_pids)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        counts = _run(kind, Path(path), encoding if kind == "anchor" else None)
        times.append(time.perf_counter() - started)
    cpu = (_cpu_seconds(worker_pids) - cpu_before) / runs
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = max((_peak_rss_kb(pid) for pid in worker_pids), default=0)
    print(json.dumps({"seconds": sorted(times)[len(times) // 2], "cpu_seconds": cpu, "load_seconds": load_seconds,
                      "counts": counts, "rss_mb": rss / 1024, "rss_before_mb": rss_before / 1024,
                      "worker_rss_mb": workers / 1024}))


def _cpu_seconds(worker_pids: list[int]) -> float:
    """CPU time (user + system) of this process and the given workers."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    for pid in worker_pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _run(kind: str, path: Path, encoding) -> dict:
    if kind == "anchor":
        counts = cookbook_analysis(path, encoding)
        counts["median_tokens"] = int(counts["median_tokens"])
        return counts
    from bot.datasets import analyse

    with tempfile.TemporaryDirectory() as out:
        report = analyse(path, path.name, Path(out), base_model="gpt-4o-mini-2024-07-18", backend="openai")
    assert report.fatal is None, report.fatal
    return {
        "examples": report.examples_converted,
        "format_errors": report.error_count,
        "total_tokens": report.tokens.total,
        "over_context": report.tokens.over_context,
        "epochs": report.epochs,
        "billed_tokens": report.trained_tokens,
        "median_tokens": report.tokens.median,
    }


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def measure(kind: str, path: Path, runs: int = 1) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", kind, str(path), str(runs)], capture_output=True,
                            text=True, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each side on the large file (median)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PATH", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], int(args.child[2]))
        return
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        big = scratch / "chat.jsonl"
        make_dataset(big, args.examples, seed=1)
        size_mb = big.stat().st_size / 1e6
        runs: dict[str, list[dict]] = {"anchor": [], "ours": []}
        for number in range(args.runs):  # mirrored order, as this machine's speed drifts
            for kind in ("anchor", "ours") if number % 2 == 0 else ("ours", "anchor"):
                runs[kind].append(measure(kind, big))
        anchor, ours = (sorted(runs[kind], key=lambda run: run["seconds"])[args.runs // 2] for kind in ("anchor", "ours"))
        same = all(run["counts"] == anchor["counts"] for run in runs["anchor"] + runs["ours"])
        print(f"{args.examples:,} examples ({size_mb:.1f} MB JSONL), median of {args.runs} runs each: OpenAI's cookbook "
              f"notebook {anchor['seconds']:.2f} s, bot.datasets.analyse {ours['seconds']:.2f} s: "
              f"{anchor['seconds'] / ours['seconds']:.1f}x faster (goal >= 5x); start-up (tokenizer; workers for ours) "
              f"{anchor['load_seconds']:.2f} s / {ours['load_seconds']:.2f} s, not included")
        print(f"  CPU time per run (user + system, the bot's process and its workers): notebook {anchor['cpu_seconds']:.2f} s, "
              f"ours {ours['cpu_seconds']:.2f} s ({anchor['cpu_seconds'] / ours['cpu_seconds']:.1f}x less; moved less "
              "than wall time by other load on the machine)")
        print(f"  same counts: {'yes' if same else 'NO'} {ours['counts']}" + ("" if same else f" vs {anchor['counts']}"))

        fifty = scratch / "fifty.jsonl"
        make_dataset(fifty, int(50e6 / (big.stat().st_size / args.examples)), seed=2)
        memory = measure("ours", fifty)
        print(f"50 MB file ({fifty.stat().st_size / 1e6:.1f} MB): peak RSS {memory['rss_mb']:.0f} MB in the bot's process "
              f"({memory['rss_before_mb']:.0f} MB with the tokenizer loaded, before reading), {memory['worker_rss_mb']:.0f} MB "
              f"in the largest of the 2 worker processes (goal < 200 MB); analysed in {memory['seconds']:.2f} s")

        small = scratch / "small.jsonl"
        make_dataset(small, 2000, seed=3, words_per_turn=23)
        typical = measure("ours", small)
        print(f"1 MB file ({small.stat().st_size / 1e6:.2f} MB, 2,000 examples): analysed in {typical['seconds'] * 1000:.0f} ms "
              f"(+ {typical['load_seconds']:.2f} s tokenizer load once per process; goal well under 2 s)")


if __name__ == "__main__":
    main()
