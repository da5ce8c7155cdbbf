"""Products on 4- and 8-bit weights for AVX2 CPUs, decoding steps' and prompts': `lowbit.c`, compiled on
first use.

Why: on an AVX2 CPU torch's int4 kernel (`_weight_int4pack_mm_for_cpu`) expands the weights to fp32 again
for every few rows, so its cost grows with the batch: decoding 32 streams of the default model took
~150-215 ms a step in its layers' products against ~75 with this kernel, which expands each weight once per
step for all rows (and one stream ~11 against ~8 ms). Its weights keep fp32 steps and minimums (torch's
kernel rounds them to bf16), and each row's numbers are the same in any batch, as serving requires.

The kernel is plain C with AVX2 intrinsics and OpenMP (torch's own OpenMP runtime, already loaded, runs
it), compiled once per source version into the user's cache folder by the C compiler (`CC`, else `cc`).
Where there is no AVX2 CPU, no compiler, or the build fails, `library()` is None and the decoder keeps
torch's kernel.
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

log = logging.getLogger("tunehouse.serve")

SOURCE = Path(__file__).with_name("lowbit.c")
FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC"]
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
    if x.dtype != torch.float32 or not x.is_contiguous():
        x = x.float().contiguous()
    out = torch.empty(x.shape[0], weight.out_features)
    status = library().lowbit_matmul(x.data_ptr(), *weight.pointers, out.data_ptr(), x.shape[0], weight.out_features,
                                     weight.in_features, weight.bits, torch.get_num_threads())
    if status:
        raise MemoryError("the low-bit kernel could not allocate its buffers")
    return out


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it cannot run here (see the module's docstring)."""
    if torch.backends.cpu.get_cpu_capability() != "AVX2":
        return None  # measured on AVX2 only; AVX-512 CPUs have torch's AVX-512 kernels
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        log.info("no C compiler: decoding uses torch's int4 kernel")
        return None
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunehouse"
    target = cache / f"lowbit-{digest}.so"
    try:
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as scratch:  # then renamed: concurrent builds are safe
                built = Path(scratch) / target.name
                subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], check=True, capture_output=True,
                               text=True, timeout=120)
                os.replace(built, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or error
        log.warning("could not build the low-bit kernel (%s): decoding uses torch's int4 kernel", detail)
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    lib.lowbit_matmul.argtypes = [pointer] * 5 + [integer] * 5
    lib.lowbit_matmul.restype = integer
    return lib
