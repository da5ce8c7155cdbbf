"""What the processor can do, for choosing precision in training and serving."""

from __future__ import annotations

import torch


def native_bf16() -> bool:
    """True where the CPU computes bf16 matrix products natively (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
