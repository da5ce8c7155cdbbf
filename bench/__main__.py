"""`make bench`: every benchmark in one run on this machine, written to bench/RESULTS.md.

    .venv/bin/python -m bench
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from pathlib import Path

import torch
import transformers

from tunehouse.cpu import native_bf16
from tunehouse.serve import kernels

HERE = Path(__file__).resolve().parent
RUNS = [
    ("Training: tunehouse against TRL SFTTrainer + PEFT", ["bench/training_vs_trl.py"]),
    ("Training: what each technique gives (the recipe alone)", ["bench/recipe_throughput.py"]),
    ("End to end: jobs through the API, and the time outside the training loop", ["bench/job_overhead.py"]),
    ("Quality with everything on auto", ["bench/structured_task.py"]),
    ("Serving (HTTP API vs transformers.generate)", ["bench/serving.py"]),
    ("Serving: the decoder alone, each way of running the products", ["bench/decoder.py"]),
    ("Dataset intake: the Slack bot's analysis against OpenAI's data-preparation notebook", ["bench/dataset_intake.py"]),
    ("The Slack bot against the local Slack: report, acknowledgements, a job followed live", ["bench/slack_bot.py"]),
    ("Talking to a model in Slack: first text after a mention, answer speed against the backend's", ["bench/slack_chat.py"]),
]
# the precision to set for many concurrent streams: bf16 where the CPU computes it natively, else fp32
RUNS.append(("Serving with bf16 products throughout", ["bench/serving.py", "--precision", "bf16"]) if native_bf16()
            else ("Serving with fp32 products throughout (no native bf16 here)", ["bench/serving.py", "--precision", "fp32"]))


def cpu_description() -> str:
    """The processor's name and the vector extensions that decide which kernels run (and so the figures)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    field = lambda key: next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), "")  # noqa: E731
    extensions = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in field("flags").split()]
    return (f"{field('model name') or platform.machine()} ({', '.join(extensions) or 'no AVX2'}; "
            f"native bf16 products: {'yes' if native_bf16() else 'no'}; "
            f"serving's 4-bit products through AMX tiles: {'yes' if kernels.uses_amx() else 'no'})")


def main() -> None:
    sections = [
        "# Benchmark results",
        "",
        f"Run on {datetime.date.today()} with `make bench`: {cpu_description()}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}.",
    ]
    for title, command in RUNS:
        print(f"== {title}", flush=True)
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=HERE.parent)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        print("\n".join(lines), flush=True)
        if result.returncode:
            lines.append(f"(failed with exit code {result.returncode}: {result.stderr.strip().splitlines()[-1:]})")
        sections += ["", f"## {title}", "", f"`{' '.join(command)}`", "", "```", *lines, "```"]
    (HERE / "RESULTS.md").write_text("\n".join(sections) + "\n")
    print(f"written {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
