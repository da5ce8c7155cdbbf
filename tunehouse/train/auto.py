"""What `"auto"` means for each OpenAI hyperparameter, in one place (documented in docs/training.md)."""

from __future__ import annotations

from ..data.costs import auto_epochs

BASE_LEARNING_RATE = 1e-3
"""LoRA peak learning rate at `learning_rate_multiplier` 1.0."""
FULL_BASE_LEARNING_RATE = 2e-5
"""Peak learning rate of full fine-tuning (every weight moves, so far smaller steps)."""


def auto_batch_size(n_examples: int) -> int:
    """Small sets take small batches (more optimizer steps per epoch); at most 8 on a CPU."""
    return max(1, min(8, n_examples // 16))


def resolve_hyperparameters(requested: dict, n_examples: int) -> dict:
    """OpenAI's `{n_epochs, batch_size, learning_rate_multiplier}`, each a number or "auto", made concrete."""
    n_epochs = requested.get("n_epochs", "auto")
    batch_size = requested.get("batch_size", "auto")
    multiplier = requested.get("learning_rate_multiplier", "auto")
    return {
        "n_epochs": auto_epochs(n_examples) if n_epochs == "auto" else int(n_epochs),
        "batch_size": auto_batch_size(n_examples) if batch_size == "auto" else int(batch_size),
        "learning_rate_multiplier": 1.0 if multiplier == "auto" else float(multiplier),
        "training": requested.get("training", "lora"),
    }
