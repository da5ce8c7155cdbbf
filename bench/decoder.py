"""The serving decoder alone (no engine, no HTTP): time of a prompt and of a decoding step, one stream and 32,
for each way this machine can run the default model's products.

    .venv/bin/python bench/decoder.py

Ways: `int4` through lowbit.c's fp32 kernels, and through AMX tiles where the CPU has them (the default);
torch's operations (`int4` on torch's kernels, as where the C kernels cannot be built); and `bf16`
(oneDNN's bf16 products, where the CPU computes bf16 natively). Each: 32 prompts of ~40 tokens run together,
then 20 steps of 32 rows, then one prompt and 20 steps of one row; the best step of each.
"""

from __future__ import annotations

import time
from pathlib import Path

from tunehouse.cpu import native_bf16
from tunehouse.models.catalog import ensure_default_model, load_tokenizer
from tunehouse.data.render import render_chat
from tunehouse.serve import kernels
from tunehouse.serve.llama import LlamaDecoder
from tunehouse.settings import Settings


def measure(model_dir: Path, prompt: list[int], precision: str) -> str:
    decoder = LlamaDecoder(model_dir, slots=32, max_len=512, precision=precision)
    figures = []
    for rows in (32, 1):
        slots = list(range(rows))
        started = time.perf_counter()
        decoder.prefill(slots, [prompt] * rows, [None] * rows)
        prefill = time.perf_counter() - started
        lengths, best = [len(prompt)] * rows, float("inf")
        for _ in range(20):
            started = time.perf_counter()
            decoder.decode(slots, [5] * rows, lengths, [None] * rows)
            best = min(best, time.perf_counter() - started)
            lengths = [length + 1 for length in lengths]
        figures.append(f"{rows} row(s): prompt(s) {prefill * 1000:.0f} ms, a step {best * 1000:.1f} ms "
                       f"({rows / best:.0f} tokens/s)")
    return "; ".join(figures)


def main() -> None:
    model_dir = ensure_default_model(Settings().resolved_model_cache_dir)
    tokenizer = load_tokenizer(str(model_dir))
    prompt = render_chat([{"role": "user", "content": "Write a long story about a dragon who learns to cook."}],
                         tokenizer, add_generation_prompt=True).input_ids
    print(f"default model, a prompt of {len(prompt)} tokens")
    if kernels.library() is not None:
        for tiles in (False, True):
            if tiles and not kernels.use_amx(True):
                print("int4, lowbit.c on AMX tiles: this CPU has none")
                continue
            kernels.use_amx(tiles)
            print(f"int4, lowbit.c {'on AMX tiles' if tiles else 'fp32 kernels'}: {measure(model_dir, prompt, 'int4')}")
        library = kernels.library
        kernels.library = lambda: None  # as where the C kernels cannot be built
        try:
            print(f"int4, torch's operations: {measure(model_dir, prompt, 'int4')}")
        finally:
            kernels.library = library
    if native_bf16():
        print(f"bf16 (oneDNN): {measure(model_dir, prompt, 'bf16')}")


if __name__ == "__main__":
    main()
