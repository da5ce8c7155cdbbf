"""A Llama-family decoder for serving: slot-based KV cache and per-row LoRA adapters.

Why not `transformers.generate`: serving needs requests to join and leave a running batch between decoding
steps (continuous batching), several fine-tuned adapters of one base in the same batch, and no per-call
overhead. This module is the model's math only (the scheduler lives in engine.py):

- weights come from the base's safetensors (SmolLM2, Llama, and other `LlamaForCausalLM` folders);
- the KV cache is one tensor per layer, `(slots, kv_heads, max_len, head_dim)`; a sequence owns a slot
  from its prefill until it finishes, and decoding attends over each row's own length;
- a LoRA adapter (PEFT folder) adds `scale * (x @ A.T) @ B.T` to the projections it targets, applied to
  the rows that use it, so different adapters share one batch.

Numerics match `transformers` (same RMSNorm, rotary embedding and attention); a test compares greedy
outputs token for token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class UnsupportedModel(ValueError):
    """The folder is not a Llama-family model this engine can serve."""


@dataclass
class Adapter:
    """LoRA weights per (layer, projection): (A of shape (r, in), B of shape (out, r)) and the scale alpha/r."""

    name: str
    scale: float
    weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


class LlamaDecoder:
    def __init__(self, model_dir: Path, *, slots: int, max_len: int, dtype: torch.dtype = torch.float32) -> None:
        config = json.loads((Path(model_dir) / "config.json").read_text())
        if config.get("model_type") not in ("llama", "mistral", "qwen2") or config.get("sliding_window"):
            raise UnsupportedModel(f"serving supports Llama-family models, not {config.get('model_type')!r}")
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        if rope.get("rope_type", "default") != "default":
            raise UnsupportedModel(f"rope type {rope.get('rope_type')!r} is not supported yet")
        self.config = config
        self.dtype = dtype
        self.hidden = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.kv_heads = config.get("num_key_value_heads", self.heads)
        self.head_dim = config.get("head_dim") or self.hidden // self.heads
        self.layers_n = config["num_hidden_layers"]
        self.eps = config.get("rms_norm_eps", 1e-6)
        self.vocab = config["vocab_size"]
        self.context_length = config.get("max_position_embeddings", 2048)
        self.max_len = min(max_len, self.context_length)
        self.slots = slots

        weights = _load_weights(Path(model_dir))
        cast = lambda name: weights.pop(name).to(dtype)  # noqa: E731
        self.embed = cast("model.embed_tokens.weight")
        self.lm_head = cast("lm_head.weight") if "lm_head.weight" in weights else self.embed
        self.norm = cast("model.norm.weight")
        self.layers = []
        for i in range(self.layers_n):
            prefix = f"model.layers.{i}."
            layer = {"input_norm": cast(prefix + "input_layernorm.weight"),
                     "post_norm": cast(prefix + "post_attention_layernorm.weight")}
            for proj in PROJECTIONS:
                group = "self_attn" if proj in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
                layer[proj] = cast(f"{prefix}{group}.{proj}.weight")
                bias = f"{prefix}{group}.{proj}.bias"
                layer[proj + ".bias"] = cast(bias) if bias in weights else None
            self.layers.append(layer)

        theta = rope.get("rope_theta") or config.get("rope_theta", 10000.0)
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        angles = torch.outer(torch.arange(self.max_len, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)  # (max_len, head_dim), as transformers lays it out
        self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)
        shape = (slots, self.kv_heads, self.max_len, self.head_dim)
        self.cache_k = [torch.zeros(shape, dtype=dtype) for _ in range(self.layers_n)]
        self.cache_v = [torch.zeros(shape, dtype=dtype) for _ in range(self.layers_n)]

    # --- adapters -----------------------------------------------------------------------------------------

    def load_adapter(self, name: str, folder: Path) -> Adapter:
        config = json.loads((folder / "adapter_config.json").read_text())
        adapter = Adapter(name=name, scale=config["lora_alpha"] / config["r"])
        tensors = load_file(str(folder / "adapter_model.safetensors"))
        for key, tensor in tensors.items():
            parts = key.split(".")
            if "lora_A" not in parts:
                continue
            layer = int(parts[parts.index("layers") + 1])
            proj = parts[parts.index("lora_A") - 1]
            b_key = key.replace("lora_A", "lora_B")
            adapter.weights[(layer, proj)] = (tensor.to(self.dtype), tensors[b_key].to(self.dtype))
        if not adapter.weights:
            raise UnsupportedModel(f"{folder} holds no LoRA weights")
        return adapter

    # --- forward --------------------------------------------------------------------------------------

    def _linear(self, x: torch.Tensor, layer: int, proj: str, adapters: list[Adapter | None]) -> torch.Tensor:
        weights = self.layers[layer]
        out = F.linear(x, weights[proj], weights[proj + ".bias"])
        groups: dict[int, list[int]] = {}
        for row, adapter in enumerate(adapters):
            if adapter is not None and (layer, proj) in adapter.weights:
                groups.setdefault(id(adapter), []).append(row)
        for rows in groups.values():
            adapter = adapters[rows[0]]
            lora_a, lora_b = adapter.weights[(layer, proj)]
            index = torch.tensor(rows)
            delta = F.linear(F.linear(x[index], lora_a), lora_b) * adapter.scale
            out[index] += delta
        return out

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return weight * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)

    def _rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cos = self.cos[positions].unsqueeze(1)  # (B, 1, T, D)
        sin = self.sin[positions].unsqueeze(1)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    @torch.inference_mode()
    def prefill(self, slot: int, tokens: list[int], adapter: Adapter | None) -> torch.Tensor:
        """Run a prompt into `slot`'s cache; returns the logits (vocab,) for the next token (float32)."""
        ids = torch.tensor([tokens])
        positions = torch.arange(len(tokens)).unsqueeze(0)
        x = self.embed[ids]
        for i in range(self.layers_n):
            x = self._block(i, x, positions, [adapter], slots=None, prefill_slot=slot)
        x = self._rms_norm(x[:, -1], self.norm)
        return F.linear(x, self.lm_head).float()[0]

    @torch.inference_mode()
    def decode(self, slots: list[int], tokens: list[int], lengths: list[int], adapters: list[Adapter | None]) -> torch.Tensor:
        """One step for a batch: token b is at position lengths[b] of slot slots[b]. Returns (B, vocab) logits."""
        ids = torch.tensor(tokens).unsqueeze(1)
        positions = torch.tensor(lengths).unsqueeze(1)
        x = self.embed[ids]
        for i in range(self.layers_n):
            x = self._block(i, x, positions, adapters, slots=torch.tensor(slots), prefill_slot=None)
        x = self._rms_norm(x[:, -1], self.norm)
        return F.linear(x, self.lm_head).float()

    def _block(self, i, x, positions, adapters, *, slots, prefill_slot) -> torch.Tensor:
        layer = self.layers[i]
        batch, steps, _ = x.shape
        h = self._rms_norm(x, layer["input_norm"])
        q = self._linear(h, i, "q_proj", adapters).view(batch, steps, self.heads, self.head_dim).transpose(1, 2)
        k = self._linear(h, i, "k_proj", adapters).view(batch, steps, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self._linear(h, i, "v_proj", adapters).view(batch, steps, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self._rotate(q, positions), self._rotate(k, positions)
        if prefill_slot is not None:  # (1, kvh, T, d) written at positions 0..T-1
            self.cache_k[i][prefill_slot, :, :steps] = k[0]
            self.cache_v[i][prefill_slot, :, :steps] = v[0]
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:  # one new token per row, at its own position
            lengths = positions[:, 0]
            self.cache_k[i][slots, :, lengths] = k[:, :, 0]
            self.cache_v[i][slots, :, lengths] = v[:, :, 0]
            span = int(lengths.max()) + 1
            keys = self.cache_k[i][slots, :, :span]
            values = self.cache_v[i][slots, :, :span]
            mask = (torch.arange(span).unsqueeze(0) <= lengths.unsqueeze(1)).view(batch, 1, 1, span)
            attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)
        attended = attended.transpose(1, 2).reshape(batch, steps, self.heads * self.head_dim)
        x = x + self._linear(attended, i, "o_proj", adapters)
        h = self._rms_norm(x, layer["post_norm"])
        gated = F.silu(self._linear(h, i, "gate_proj", adapters)) * self._linear(h, i, "up_proj", adapters)
        return x + self._linear(gated, i, "down_proj", adapters)


def _load_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UnsupportedModel(f"no safetensors weights in {model_dir}")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(str(file)))
    return weights

