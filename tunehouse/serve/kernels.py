"""C kernels for x86-64 CPUs with AVX2 (AVX-512 ones included), compiled on first use: `lowbit.c`, products
on 4- and 8-bit weights, and `decoding.c`, the small operations of a decoding step around its products.

Why lowbit.c: on an AVX2 CPU torch's int4 kernel (`_weight_int4pack_mm_for_cpu`) expands the weights to
fp32 again for every few rows, so its cost grows with the batch: decoding 32 streams of the default model
took ~150-215 ms a step in its layers' products against ~75 with this kernel, which expands each weight once
per step for all rows (and one stream ~11 against ~8 ms). Its weights keep fp32 steps and minimums (torch's
kernel rounds them to bf16). Where the CPU has AMX tiles (Xeons since Sapphire Rapids), the same weights
go through them (the rows in bf16, the weights' integers exact; see lowbit.c): on a 2-core AMX Xeon a
32-stream step went from ~59 to ~23 ms and one stream's from ~7.3 to ~5.7 ms.

Why decoding.c: one stream's step runs ~50 small torch operations per layer (norms, rotation, cache
writes, attention, SiLU), whose dispatch cost more than their arithmetic: ~7 ms of a ~16 ms step of the
default model, against ~1 ms as four C calls per layer. Where every product is lowbit.c's,
`decode_layers` makes all of a step's calls from C: a Python call costs ~6 us, and a step makes ~240 (one
stream of the default model 12.4 → 10.3 ms a step, the same bits). LoRA adapters' deltas are added there
too (`lora_add` where the calls are made from Python), row by row, so a fine-tuned model's row gets the same
bits in any batch, which torch's `F.linear` does not give for a few rows.

Each row's numbers are the same in any batch, as serving requires. The kernels are plain C with AVX2
intrinsics (AVX-512 and AMX ones in functions used only where the CPU has them) and OpenMP (torch's own
OpenMP runtime, already loaded, runs them), compiled once per source version into the user's cache folder
by the C compiler (`CC`, else `cc`). Where there is no AVX2 CPU, no compiler, or the build fails,
`library()` is None and the decoder keeps torch's operations.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..settings import user_cache_dir

log = logging.getLogger("tunehouse.serve")

SOURCES = [Path(__file__).with_name(name) for name in ("lowbit.c", "decoding.c")]
FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC"]
STRIP = 16
"""Output columns stored together (two AVX2 registers of fp32)."""
GROUP = 32
"""Input positions sharing a step and a minimum, as in GGUF's Q4_1 and Q8_0."""


@dataclass
class LowbitWeight:
    """An (out, in) weight as integers in strips of STRIP columns, with each group's step and minimum."""

    integers: torch.Tensor
    steps: torch.Tensor
    minimums: torch.Tensor
    bits: int
    out_features: int
    in_features: int

    def __post_init__(self) -> None:
        # looked up once: a decoding step makes ~120 calls, each worth a few microseconds
        self.pointers = (self.integers.data_ptr(), self.steps.data_ptr(), self.minimums.data_ptr())


def fits(weight: torch.Tensor) -> bool:
    return weight.shape[0] % STRIP == 0 and weight.shape[1] % GROUP == 0


def pack(integers: torch.Tensor, steps: torch.Tensor, minimums: torch.Tensor, bits: int) -> LowbitWeight:
    """`integers` (out, in): 0..15 for 4 bits, -127..127 for 8; `steps` and `minimums` (out, in / GROUP);
    the weight is integers * step + minimum of their group."""
    out_features, in_features = integers.shape
    strips = out_features // STRIP
    by_strip = integers.to(torch.int32).view(strips, STRIP, in_features).transpose(1, 2)  # (strips, in, STRIP)
    if bits == 4:
        packed = (by_strip[..., :8] | (by_strip[..., 8:] << 4)).to(torch.uint8)
    else:
        packed = by_strip.to(torch.int8).view(torch.uint8)

    def per_strip(values: torch.Tensor) -> torch.Tensor:
        return values.float().view(strips, STRIP, -1).transpose(1, 2).contiguous()

    return LowbitWeight(packed.contiguous(), per_strip(steps), per_strip(minimums), bits, out_features, in_features)


def matmul(x: torch.Tensor, weight: LowbitWeight) -> torch.Tensor:
    """x (rows, in) @ W.T in fp32, each row's result independent of the others."""
    x = _contiguous(x)
    out = torch.empty(x.shape[0], weight.out_features)
    status = library().lowbit_matmul(x.data_ptr(), *weight.pointers, out.data_ptr(), x.shape[0], weight.out_features,
                                     weight.in_features, weight.bits, torch.get_num_threads())
    if status:
        raise MemoryError("the low-bit kernel could not allocate its buffers")
    return out


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, out: torch.Tensor,
                 eps: float) -> None:
    """x += delta (in place, when given), then out = RMSNorm(x) * weight; all fp32, contiguous, (rows, width)."""
    delta = None if delta is None else _contiguous(delta)  # held here: the C call reads it
    library().add_rms_norm(x.data_ptr(), None if delta is None else delta.data_ptr(), weight.data_ptr(), out.data_ptr(),
                           x.shape[0], x.shape[1], eps)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """SiLU(gate) * up for rows of [gate | up] side by side."""
    gate_up = _contiguous(gate_up)
    out = torch.empty(gate_up.shape[0], gate_up.shape[1] // 2)
    library().silu_mul(gate_up.data_ptr(), out.data_ptr(), out.shape[0], out.shape[1])
    return out


def attend(qkv: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, positions: torch.Tensor,
           slots: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, heads: int) -> torch.Tensor:
    """Attention for rows that are each a token at a position of a slot (a decoding step, or prompts' tokens
    in order): qkv (rows, (heads + 2 kv_heads) * d) holds each row's q, k and v for its token at `positions`
    of `slots`; k (rotated by `cos` and `signed_sin`, both (max_len, d)) and v go into the caches (slots,
    kv_heads, max_len, d; fp32 or fp16), then each row attends over its slot up to its position. Returns
    (rows, heads * d)."""
    qkv = _contiguous(qkv)
    _, kv_heads, max_len, head_dim = cache_k.shape
    out = torch.empty(qkv.shape[0], heads * head_dim)
    status = library().attend(qkv.data_ptr(), cos.data_ptr(), signed_sin.data_ptr(), positions.data_ptr(),
                              slots.data_ptr(), cache_k.data_ptr(), cache_v.data_ptr(),
                              int(cache_k.dtype == torch.float16), out.data_ptr(), qkv.shape[0], heads, kv_heads,
                              head_dim, max_len, head_dim ** -0.5, torch.get_num_threads())
    if status:
        raise MemoryError("the attention kernel could not allocate its scores")
    return out


class LayerTable:
    """What `decode_layers` reads of each layer (see decoding.c), laid out once: 16 pointers and 4 bit widths
    a layer, and whether the caches are fp16. The tensors pointed to must outlive it (the decoder holds them)."""

    def __init__(self, pointers: list[int], bits: list[int], cache_fp16: bool) -> None:
        self._pointers = (ctypes.c_void_p * len(pointers))(*pointers)
        self._bits = (ctypes.c_int * len(bits))(*bits)
        self.addresses = ctypes.addressof(self._pointers), ctypes.addressof(self._bits)
        self.layers = len(bits) // 4
        self.cache_fp16 = cache_fp16


LORA_RANK = 256
"""The largest LoRA rank decoding.c adds deltas for."""


def lora_add(x: torch.Tensor, rows: torch.Tensor, lora_a: torch.Tensor, lora_b_t: torch.Tensor, out: torch.Tensor,
             scale: float) -> None:
    """out[rows] += scale * (x[rows] @ A.T) @ B.T, each row on its own; `lora_b_t` is B transposed (rank, out),
    `out` may be columns of a wider output (a part of a fused projection's)."""
    x, rows = _contiguous(x), rows.to(torch.int64).contiguous()
    library().lora_add(x.data_ptr(), rows.data_ptr(), rows.numel(), lora_a.data_ptr(), lora_b_t.data_ptr(),
                       out.data_ptr(), x.shape[1], lora_a.shape[0], out.shape[1], out.stride(0), scale)


def decode_layers(x: torch.Tensor, table: LayerTable, final_norm: torch.Tensor, cos: torch.Tensor,
                  signed_sin: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                  lora: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, *, intermediate: int, heads: int,
                  kv_heads: int, head_dim: int, max_len: int, eps: float) -> torch.Tensor:
    """Every layer for rows x (rows, hidden), each a token at `positions` of `slots` (as `attend`), in one
    call: x becomes the residual stream; returns its final norm (rows, hidden). `lora`: each row's adapter
    (an index, or -1), the adapters' tables stacked (see `Adapter.table` in llama.py) and their scales."""
    rows, hidden = x.shape
    normed = torch.empty_like(x)
    scratch = [torch.empty(rows, width) for width in ((heads + 2 * kv_heads) * head_dim, heads * head_dim, hidden,
                                                      2 * intermediate, intermediate)]
    status = library().decode_layers(
        x.data_ptr(), normed.data_ptr(), *table.addresses, table.layers, final_norm.data_ptr(), cos.data_ptr(),
        signed_sin.data_ptr(), positions.data_ptr(), slots.data_ptr(), *(t.data_ptr() for t in scratch),
        *((None,) * 3 if lora is None else (t.data_ptr() for t in lora)), rows, hidden, intermediate, heads, kv_heads,
        head_dim, max_len, int(table.cache_fp16), head_dim ** -0.5, eps, torch.get_num_threads())
    if status:
        raise MemoryError("the decoding kernels could not allocate their buffers")
    return normed


def sample_rows(logits: torch.Tensor, rows: list[int], temperatures: list[float], draws: list[float]) -> list[int]:
    """A token for each of `rows` of logits (rows, vocab): the first maximum at temperature 0, else an
    inverse-CDF draw at `draws` (uniform in [0, 1)) from softmax(logits / temperature); each row on its own
    (see decoding.c). ~25 us a row against ~80 for the same draw in torch operations."""
    logits = _contiguous(logits)
    tokens = torch.empty(len(rows), dtype=torch.int64)
    row_ids = torch.tensor(rows, dtype=torch.int64)
    temperature_values = torch.tensor(temperatures, dtype=torch.float32)
    draw_values = torch.tensor(draws, dtype=torch.float32)
    status = library().sample_rows(logits.data_ptr(), row_ids.data_ptr(), temperature_values.data_ptr(),
                                   draw_values.data_ptr(), tokens.data_ptr(), len(rows), logits.shape[1],
                                   torch.get_num_threads())
    if status:
        raise MemoryError("the sampling kernel could not allocate its buffers")
    return tokens.tolist()


def runs_decoding_steps(hidden: int, intermediate: int, heads: int, kv_heads: int, head_dim: int) -> bool:
    """Whether decoding.c takes a model of these shapes: widths in whole AVX2 registers, heads of <= 256."""
    return (library() is not None and hidden % 8 == 0 and intermediate % 8 == 0 and head_dim % 8 == 0
            and head_dim <= 256 and heads % kv_heads == 0)


def _contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 and x.is_contiguous() else x.float().contiguous()


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot run here (see the module's docstring)."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        log.info("no C compiler: serving uses torch's kernels")
        return None
    digest = hashlib.sha256(b"".join(source.read_bytes() for source in SOURCES) + " ".join(FLAGS).encode())
    cache = user_cache_dir()
    target = cache / f"kernels-{digest.hexdigest()[:16]}.so"
    try:
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as scratch:  # then renamed: concurrent builds are safe
                built = Path(scratch) / target.name
                subprocess.run([compiler, *FLAGS, *map(str, SOURCES), "-o", str(built)], check=True,
                               capture_output=True, text=True, timeout=120)
                os.replace(built, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or error
        log.warning("could not build the C kernels (%s): serving uses torch's kernels", detail)
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    lib.lowbit_matmul.argtypes = [pointer] * 5 + [integer] * 5
    lib.lowbit_matmul.restype = integer
    lib.add_rms_norm.argtypes = [pointer] * 4 + [integer] * 2 + [ctypes.c_float]
    lib.add_rms_norm.restype = None
    lib.silu_mul.argtypes = [pointer] * 2 + [integer] * 2
    lib.silu_mul.restype = None
    lib.attend.argtypes = [pointer] * 7 + [integer, pointer] + [integer] * 5 + [ctypes.c_float, integer]
    lib.attend.restype = integer
    lib.decode_layers.argtypes = ([pointer] * 4 + [integer] + [pointer] * 13 + [integer] * 8
                                  + [ctypes.c_float] * 2 + [integer])
    lib.lora_add.argtypes = [pointer, pointer, integer, pointer, pointer, pointer] + [integer] * 4 + [ctypes.c_float]
    lib.lora_add.restype = None
    lib.decode_layers.restype = integer
    lib.sample_rows.argtypes = [pointer] * 5 + [integer] * 3
    lib.sample_rows.restype = integer
    lib.lowbit_use_amx.argtypes = [integer]
    lib.lowbit_use_amx.restype = integer
    lib.lowbit_uses_amx.argtypes = []
    lib.lowbit_uses_amx.restype = integer
    lib.lowbit_use_amx(1)
    return lib


def use_amx(on: bool) -> bool:
    """Products through AMX tiles (on), where the CPU has them, or through lowbit.c's fp32 kernels; the
    library starts with AMX where it can. Returns whether AMX is used now. For tests and benchmarks: weights
    laid out for one serve the other, but a decoder's numbers change with it."""
    return bool(library().lowbit_use_amx(int(on)))


def uses_amx() -> bool:
    return library() is not None and bool(library().lowbit_uses_amx())
