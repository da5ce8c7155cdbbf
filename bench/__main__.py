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

HERE = Path(__file__).resolve().parent
RUNS = [
    ("Training: tunehouse against TRL SFTTrainer + PEFT", ["bench/training_vs_trl.py"]),
    ("Training: what each technique gives (the recipe alone)", ["bench/recipe_throughput.py"]),
    ("End to end: one job through the API", ["bench/job_overhead.py"]),
    ("Quality with everything on auto", ["bench/structured_task.py"]),
    ("Serving (HTTP API vs transformers.generate)", ["bench/serving.py"]),
    ("Serving with bf16 products throughout", ["bench/serving.py", "--precision", "bf16"]),
]


def main() -> None:
    sections = [
        "# Benchmark results",
        "",
        f"Run on {datetime.date.today()} with `make bench`: {platform.processor() or platform.machine()}, "
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
