"""A Llama-family decoder for serving: slot-based KV cache and per-row LoRA adapters.

Why not `transformers.generate`: serving needs requests to join and leave a running batch between decoding
steps (continuous batching), several fine-tuned adapters of one base in the same batch, and no per-call
overhead. This module is the model's math only (the scheduler lives in engine.py):

- weights come from the base's safetensors (SmolLM2, Llama, and other `LlamaForCausalLM` folders);
- the KV cache is one tensor per layer, `(slots, kv_heads, max_len, head_dim)`; a sequence owns a slot
  from its prefill until it finishes, and decoding attends over each row's own length;
- a LoRA adapter (PEFT folder) adds `scale * (x @ A.T) @ B.T` to the projections it targets, applied to
  the rows that use it, so different adapters share one batch.

The math is `transformers`' (same RMSNorm, rotary embedding and attention; where decoding.c runs them, it
adds in its own order); a test compares greedy outputs token for token, with torch's operations and with C.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ..cpu import native_bf16
from . import kernels

log = logging.getLogger("tunehouse.serve")


class UnsupportedModel(ValueError):
    """The folder is not a Llama-family model this engine can serve."""


ADAPTED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The projections a LoRA adapter may change, in the order decoding.c numbers them."""


@dataclass
class Adapter:
    """LoRA weights per (layer, projection): (A of shape (r, in), B of shape (out, r)) and the scale alpha/r."""

    name: str
    scale: float
    weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    transposed: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)
    """Where decoding.c adds the deltas (the decoder's `steps_in_c`, ranks up to kernels.LORA_RANK): each B
    transposed, and `table`, what `kernels.decode_layers` reads of them; else empty and None."""
    table: torch.Tensor | None = None


class LlamaDecoder:
    def __init__(self, model_dir: Path, *, slots: int, max_len: int, precision: str = "fp32") -> None:
        """`precision` of the matrix products (docs/serving.md): `fp32`; `bf16` (oneDNN's bf16 kernels, with a
        bf16 KV cache and attention); `int4` (the layers' weights as 4-bit integers in groups of 32 along the
        input, which decoding steps, whose few rows make a product a read of the weights, read a quarter of
        bf16's bytes of: where kernels.py's C kernels build (AVX2 or AVX-512 CPUs with a C compiler) through
        lowbit.c for every product (AMX tiles where the CPU has them); elsewhere through torch's int4
        kernel for decoding steps, whose group steps and minimums are rounded to bf16, and for prompts bf16
        where the CPU computes bf16 natively, else fp32);
        `auto`: int4 when the layers' weights already lie on such a grid (a model converted from a 4-bit
        GGUF, as the default model is), else bf16 where the CPU computes it natively, else fp32."""
        config = json.loads((Path(model_dir) / "config.json").read_text())
        if config.get("model_type") not in ("llama", "mistral", "qwen2") or config.get("sliding_window"):
            raise UnsupportedModel(f"serving supports Llama-family models, not {config.get('model_type')!r}")
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        if rope.get("rope_type", "default") != "default":
            raise UnsupportedModel(f"rope type {rope.get('rope_type')!r} is not supported yet")
        self.config = config
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
        native = native_bf16()
        if precision == "auto":
            if all(_on_int4_grid(w) for name, w in weights.items() if _is_layer_product(name)):
                precision = "int4"
            else:
                precision = "bf16" if native else "fp32"
        if precision == "bf16" and not native:
            log.warning("this CPU has no native bf16 (AVX-512 BF16 or AMX): bf16 products are converted to fp32 "
                        "and back, slower than TUNEHOUSE_SERVE_PRECISION=fp32")
        self.precision = precision
        self.dtype = torch.float32
        cast = lambda name: weights.pop(name).float()  # noqa: E731
        self.embed = cast("model.embed_tokens.weight")
        # the head is not int4: the default model's embedding is 8-bit, which 4 bits would round. Without
        # native bf16, an 8-bit head is read as 8-bit integers (lowbit.c) or as two 4-bit halves (torch's
        # int4 kernel): a quarter or half of fp32's bytes
        head = cast("lm_head.weight") if "lm_head.weight" in weights else self.embed
        head_precision = precision
        if precision == "int4":  # lowbit.c's 8-bit integers are read faster than bf16's bytes
            if kernels.library() is not None and _on_int8_grid(head):
                head_precision = "int8"
            else:
                head_precision = "bf16" if native else "int8" if _on_int8_grid(head) else "fp32"
        self.lm_head = _Projection(head, None, head_precision, native)
        self.norm = cast("model.norm.weight")
        self.layers = []
        for i in range(self.layers_n):
            prefix = f"model.layers.{i}."
            layer = {"input_norm": cast(prefix + "input_layernorm.weight"),
                     "post_norm": cast(prefix + "post_attention_layernorm.weight")}
            def take(group: str, proj: str) -> tuple[torch.Tensor, torch.Tensor | None]:
                bias = f"{prefix}{group}.{proj}.bias"
                return cast(f"{prefix}{group}.{proj}.weight"), cast(bias) if bias in weights else None

            # q, k, v (and gate, up) share their input: one matrix product each instead of three (two)
            fused = lambda parts: _Projection.fused(parts, precision, native)  # noqa: E731
            layer["qkv"] = fused([take("self_attn", p) for p in ("q_proj", "k_proj", "v_proj")])
            layer["o_proj"] = _Projection(*take("self_attn", "o_proj"), precision, native)
            layer["gate_up"] = fused([take("mlp", p) for p in ("gate_proj", "up_proj")])
            layer["down_proj"] = _Projection(*take("mlp", "down_proj"), precision, native)
            self.layers.append(layer)

        theta = rope.get("rope_theta") or config.get("rope_theta", 10000.0)
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        angles = torch.outer(torch.arange(self.max_len, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)  # (max_len, head_dim), as transformers lays it out
        shape = (slots, self.kv_heads, self.max_len, self.head_dim)
        self.intermediate = config["intermediate_size"]
        lowbit = self.layers[0]["qkv"].lowbit_weight is not None
        in_c = kernels.runs_decoding_steps(self.hidden, self.intermediate, self.heads, self.kv_heads, self.head_dim)
        if lowbit and in_c:
            # decoding.c runs the steps; attention reads the whole cache every step, so it is fp16 (half the
            # bytes) where lowbit.c's products round the rows to bf16 anyway (AMX tiles), else fp32. Not bf16:
            # its 8-bit keys moved the default model's logits by ~0.2, flipping near-ties (fp16's: ~0.01)
            self.cache_dtype = torch.float16 if kernels.uses_amx() else torch.float32
        else:
            # with bf16 products the cache and attention are bf16 too where the CPU computes bf16 natively;
            # elsewhere bf16 arithmetic is converted to fp32 and back
            self.cache_dtype = torch.bfloat16 if precision != "fp32" and native and not lowbit else torch.float32
        self.steps_in_c = in_c and (lowbit or self.cache_dtype == torch.float32)
        self.cache_k = [torch.zeros(shape, dtype=self.cache_dtype) for _ in range(self.layers_n)]
        self.cache_v = [torch.zeros(shape, dtype=self.cache_dtype) for _ in range(self.layers_n)]
        # the same caches with one row per (slot, head, position), for a step's writes: one call per layer
        self.cache_rows_k = [cache.view(-1, self.head_dim) for cache in self.cache_k]
        self.cache_rows_v = [cache.view(-1, self.head_dim) for cache in self.cache_v]
        # sin with its first half negated: rotating x is then x * cos + (x with its halves swapped) * signed_sin,
        # which is transformers' x * cos + cat(-x2, x1) * sin to the bit, in fewer operations
        half = self.head_dim // 2
        rotary_dtype = torch.float32 if self.steps_in_c else self.cache_dtype
        self.cos = angles.cos().to(rotary_dtype)
        self.signed_sin = torch.cat([-angles[:, :half].sin(), angles[:, half:].sin()], dim=-1).to(rotary_dtype)
        self.layer_table = self._layer_table() if self.steps_in_c else None

    def _layer_table(self) -> kernels.LayerTable | None:
        """For decoding.c's `decode_layers`, where every layer's products are lowbit.c's, without biases."""
        products = ("qkv", "o_proj", "gate_up", "down_proj")
        if any(layer[name].lowbit_weight is None or layer[name].bias is not None
               for layer in self.layers for name in products):
            return None
        pointers, bits = [], []
        for layer, cache_k, cache_v in zip(self.layers, self.cache_k, self.cache_v):
            pointers += [layer["input_norm"].data_ptr(), layer["post_norm"].data_ptr()]
            for name in products:
                pointers += layer[name].lowbit_weight.pointers
                bits.append(layer[name].lowbit_weight.bits)
            pointers += [cache_k.data_ptr(), cache_v.data_ptr()]
        return kernels.LayerTable(pointers, bits, self.cache_dtype == torch.float16)

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
        if self.steps_in_c and all(a.shape[0] <= kernels.LORA_RANK and proj in ADAPTED
                                   for (_, proj), (a, _) in adapter.weights.items()):
            adapter.transposed = {key: b.T.contiguous() for key, (_, b) in adapter.weights.items()}
            adapter.table = torch.zeros(self.layers_n, len(ADAPTED), 3, dtype=torch.int64)
            for (layer, proj), (a, _) in adapter.weights.items():
                b_t = adapter.transposed[(layer, proj)]
                adapter.table[layer, ADAPTED.index(proj)] = torch.tensor([a.data_ptr(), b_t.data_ptr(), a.shape[0]])
        return adapter

    # --- forward --------------------------------------------------------------------------------------

    def _linear(self, x: torch.Tensor, layer: int, name: str, parts: tuple[str, ...],
                adapter_rows: list[tuple[Adapter, torch.Tensor]], decoding: bool) -> torch.Tensor:
        """The (fused) projection `name` of `layer`, whose outputs are `parts` side by side, each plus its LoRA
        delta on the rows that use an adapter (`adapter_rows`: each adapter of the batch with its rows)."""
        projection = self.layers[layer][name]
        output = projection(x, decoding=decoding)
        if not adapter_rows:
            return output
        outputs = output.split(projection.sizes, dim=-1)  # views: adding to them adds to the output
        for adapter, index in adapter_rows:
            # attention's output is bf16 with a bf16 cache
            rows_in = x[index].to(self.dtype) if adapter.table is None else None
            for part, proj in enumerate(parts):
                if (layer, proj) not in adapter.weights:
                    continue
                lora_a, lora_b = adapter.weights[(layer, proj)]
                if adapter.table is not None:  # each row on its own: the same bits in any batch
                    kernels.lora_add(x, index, lora_a, adapter.transposed[(layer, proj)], outputs[part],
                                     adapter.scale)
                else:
                    outputs[part][index] += F.linear(F.linear(rows_in, lora_a), lora_b) * adapter.scale
        return output

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
        swapped = x.unflatten(-1, (2, -1)).flip(-2).flatten(-2)
        return x * cos + swapped * signed_sin

    @torch.inference_mode()
    def prefill(self, slots: list[int], prompts: list[list[int]], adapters: list[Adapter | None],
                cached: list[int] | None = None) -> torch.Tensor:
        """Run prompts into their slots' caches in one batch; returns (B, vocab) logits for each next token.

        With decoding.c (see `decode`), each prompt token is a row at its position of its slot, as in a
        decoding step: no padding; and a prompt whose first `cached[b]` tokens are in its slot's cache
        already (`copy_cache`, when `rows_independent`) runs only the rest. Otherwise shorter prompts are
        padded on the right: causal attention keeps the padding out of the real positions, and whatever the
        padding leaves in the cache past a prompt's end is overwritten by its own tokens before decoding ever
        attends to it."""
        if self.steps_in_c:
            cached = cached or [0] * len(prompts)
            rows = [(token, position, slot, adapter)
                    for prompt, slot, adapter, start in zip(prompts, slots, adapters, cached)
                    for position, token in enumerate(prompt[start:], start)]
            ends = torch.tensor([len(prompt) - start for prompt, start in zip(prompts, cached)]).cumsum(0) - 1
            return self._rows_in_c(*map(list, zip(*rows)), decoding=False, outputs=ends)
        if any(cached or []):
            raise ValueError("prompts run with torch's operations start at position 0")
        steps = max(len(prompt) for prompt in prompts)
        ids = torch.tensor([prompt + [0] * (steps - len(prompt)) for prompt in prompts])
        # cos and sin shaped (1, 1, T, head_dim) to broadcast over rows and heads
        rotary = self.cos[:steps].view(1, 1, steps, -1), self.signed_sin[:steps].view(1, 1, steps, -1)
        slot_index = torch.tensor(slots)
        length_groups = _rows_by([len(prompt) for prompt in prompts])
        adapter_rows = _adapter_rows(adapters)
        x = self.embed[ids]
        for i in range(self.layers_n):
            q, k, v = self._attention_inputs(i, x, rotary, adapter_rows, decoding=False)
            self.cache_k[i][slot_index, :, :steps] = k  # (B, kv_heads, T, d) at positions 0..T-1
            self.cache_v[i][slot_index, :, :steps] = v
            attended = torch.zeros_like(q)
            for length, rows in length_groups:  # prompts on their own length: padding would change the rounding
                attended[rows, :, :length] = F.scaled_dot_product_attention(
                    q[rows, :, :length], k[rows, :, :length], v[rows, :, :length], is_causal=True, enable_gqa=True)
            attended = attended.transpose(1, 2).reshape(len(prompts), steps, self.heads * self.head_dim)
            x = self._output_and_mlp(i, x, attended, adapter_rows, decoding=False)
        last = torch.tensor([len(prompt) - 1 for prompt in prompts])
        x = self._rms_norm(x[torch.arange(len(prompts)), last], self.norm)
        return self.lm_head(x).float()

    @property
    def rows_independent(self) -> bool:
        """Whether each row's numbers depend only on its token, its position and the cache before it, as with
        decoding.c: a prefix copied into a slot then gives the same bits as running it again, and one step can
        run several rows of one slot (a token and the guesses after it) as decoding them one by one would."""
        return self.steps_in_c

    @torch.inference_mode()
    def copy_cache(self, source: int, target: int, length: int) -> None:
        """Positions 0..length-1 of slot `source`'s cache into slot `target`, in every layer."""
        for cache in (*self.cache_k, *self.cache_v):
            cache[target, :, :length] = cache[source, :, :length]

    @torch.inference_mode()
    def decode(self, slots: list[int], tokens: list[int], lengths: list[int], adapters: list[Adapter | None]) -> torch.Tensor:
        """One step for a batch: token b is at position lengths[b] of slot slots[b] (where `rows_independent`,
        rows of one slot may follow each other at consecutive positions). Returns (B, vocab) logits.

        The hidden states are (B, hidden), one row per sequence, without the prompt path's time axis: for one
        stream, the small operations around the products cost more in calls than in arithmetic. Where
        `steps_in_c` (the C kernels, kernels.py, with an fp32 cache, or an fp16 one under lowbit.c's AMX
        products), decoding.c runs them (four calls a layer); elsewhere torch does (~50 a layer)."""
        if self.steps_in_c:
            return self._rows_in_c(tokens, lengths, slots, adapters, decoding=True)
        batch = len(tokens)
        positions = torch.tensor(lengths)
        rotary = self.cos[positions].unsqueeze(1), self.signed_sin[positions].unsqueeze(1)  # (B, 1, d): over heads
        slot_index = torch.tensor(slots)
        # where each row's key (and value) of each key/value head goes, in a layer's cache seen as one row
        # per (slot, head, position)
        heads = torch.arange(self.kv_heads)
        cache_rows = ((slot_index[:, None] * self.kv_heads + heads) * self.max_len + positions[:, None]).view(-1)
        span_groups = [(span, rows, _as_slice(slot_index[rows]), self._attention_mask(positions[rows], span))
                       for span, rows in _span_groups(lengths, self.max_len)]
        adapter_rows = _adapter_rows(adapters)
        group = self.heads // self.kv_heads
        x = self.embed[torch.tensor(tokens)]
        for i in range(self.layers_n):
            q, k, v = self._attention_inputs(i, x, rotary, adapter_rows, decoding=True)  # (B, heads, d)
            self.cache_rows_k[i].index_copy_(0, cache_rows, k.reshape(-1, self.head_dim))
            self.cache_rows_v[i].index_copy_(0, cache_rows, v.reshape(-1, self.head_dim))
            # the query heads that share a key/value head become that head's queries: (B, kv_heads, group, d)
            grouped = q.reshape(batch, self.kv_heads, group, self.head_dim)
            if len(span_groups) == 1:  # every row in one bucket (one stream, or sequences of like lengths)
                ((span, _, cached, mask),) = span_groups
                attended = F.scaled_dot_product_attention(
                    grouped, self.cache_k[i][cached, :, :span], self.cache_v[i][cached, :, :span], attn_mask=mask)
            else:
                attended = torch.empty_like(grouped)
                for span, rows, cached, mask in span_groups:
                    keys = self.cache_k[i][cached, :, :span]  # a view when the rows' slots are consecutive
                    values = self.cache_v[i][cached, :, :span]
                    attended[rows] = F.scaled_dot_product_attention(grouped[rows], keys, values, attn_mask=mask)
            x = self._output_and_mlp(i, x, attended.reshape(batch, self.heads * self.head_dim), adapter_rows,
                                     decoding=True)
        return self.lm_head(self._rms_norm(x, self.norm)).float()

    def _rows_in_c(self, tokens: list[int], positions: list[int], slots: list[int], adapters: list[Adapter | None],
                   decoding: bool, outputs: torch.Tensor | None = None) -> torch.Tensor:
        """Each row a token at its position of its slot, attending over its slot's cache up to that position
        (so a prompt's tokens, in order, are a causal prefill): each layer's products (and their LoRA deltas)
        in torch, the rest in decoding.c: attention (with the rotation and the cache writes), SiLU times up,
        and each residual add fused with the norm that follows it. Returns the logits of the rows `outputs`
        (default: all), (rows, vocab)."""
        positions, slot_index = torch.tensor(positions), torch.tensor(slots)
        adapter_rows = _adapter_rows(adapters)
        x = self.embed[torch.tensor(tokens)]  # the residual stream, added to in place
        if self.layer_table is not None and all(adapter.table is not None for adapter, _ in adapter_rows):
            lora = None  # all of it in one call (decoding.c), adapters' deltas included
            if adapter_rows:
                row_adapters = torch.full((len(tokens),), -1, dtype=torch.int32)
                for number, (_, rows) in enumerate(adapter_rows):
                    row_adapters[rows] = number
                lora = (row_adapters, torch.cat([adapter.table for adapter, _ in adapter_rows]),
                        torch.tensor([adapter.scale for adapter, _ in adapter_rows], dtype=torch.float32))
            normed = kernels.decode_layers(
                x, self.layer_table, self.norm, self.cos, self.signed_sin, positions, slot_index, lora,
                intermediate=self.intermediate, heads=self.heads, kv_heads=self.kv_heads, head_dim=self.head_dim,
                max_len=self.max_len, eps=self.eps)
            return self.lm_head(normed if outputs is None else normed[outputs], decoding=decoding).float()
        normed = torch.empty_like(x)  # x through the norm that comes next
        kernels.add_rms_norm(x, None, self.layers[0]["input_norm"], normed, self.eps)
        for i, layer in enumerate(self.layers):
            qkv = self._linear(normed, i, "qkv", ("q_proj", "k_proj", "v_proj"), adapter_rows, decoding)
            attended = kernels.attend(qkv, self.cos, self.signed_sin, positions, slot_index, self.cache_k[i],
                                      self.cache_v[i], self.heads)
            output = self._linear(attended, i, "o_proj", ("o_proj",), adapter_rows, decoding)
            kernels.add_rms_norm(x, output, layer["post_norm"], normed, self.eps)
            gate_up = self._linear(normed, i, "gate_up", ("gate_proj", "up_proj"), adapter_rows, decoding)
            down = self._linear(kernels.silu_mul(gate_up), i, "down_proj", ("down_proj",), adapter_rows, decoding)
            following = self.layers[i + 1]["input_norm"] if i + 1 < self.layers_n else self.norm
            kernels.add_rms_norm(x, down, following, normed, self.eps)
        return self.lm_head(normed if outputs is None else normed[outputs], decoding=decoding).float()

    def _attention_mask(self, lengths: torch.Tensor, span: int) -> torch.Tensor:
        """Additive mask (rows, 1, 1, span): 0 up to each row's own position, -inf past it (an additive
        mask takes a faster path than a boolean one); built once per step, shared by every layer."""
        hidden = torch.arange(span).unsqueeze(0) > lengths.unsqueeze(1)
        mask = torch.zeros(hidden.shape, dtype=self.cache_dtype).masked_fill_(hidden, float("-inf"))
        return mask.view(len(lengths), 1, 1, span)

    def _attention_inputs(self, i: int, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                          adapter_rows: list[tuple[Adapter, torch.Tensor]], decoding: bool) -> tuple[torch.Tensor, ...]:
        """Layer i's q, k and v for hidden states (B, T, hidden), as (B, heads, T, d), or, decoding, for
        (B, hidden), as (B, heads, d); q and k rotated, all three in the cache's dtype."""
        qkv = self._linear(self._rms_norm(x, self.layers[i]["input_norm"]), i, "qkv", ("q_proj", "k_proj", "v_proj"),
                           adapter_rows, decoding)
        qk, v = qkv.split([(self.heads + self.kv_heads) * self.head_dim, self.kv_heads * self.head_dim], dim=-1)
        qk = qk.unflatten(-1, (self.heads + self.kv_heads, self.head_dim))
        v = v.unflatten(-1, (self.kv_heads, self.head_dim))
        if not decoding:
            qk, v = qk.transpose(1, 2), v.transpose(1, 2)
        # q's and k's heads side by side, rotated in one call
        q, k = self._rotate(qk, *rotary).split([self.heads, self.kv_heads], dim=1)
        if v.dtype != self.cache_dtype:  # a bias (fp32) widened the bf16 products
            q, k, v = q.to(self.cache_dtype), k.to(self.cache_dtype), v.to(self.cache_dtype)
        return q, k, v

    def _output_and_mlp(self, i: int, x: torch.Tensor, attended: torch.Tensor,
                        adapter_rows: list[tuple[Adapter, torch.Tensor]], decoding: bool) -> torch.Tensor:
        """The rest of layer i once attention is done: its output projection and MLP, each added to x."""
        x = x + self._linear(attended, i, "o_proj", ("o_proj",), adapter_rows, decoding)
        h = self._rms_norm(x, self.layers[i]["post_norm"])
        gate, up = self._linear(h, i, "gate_up", ("gate_proj", "up_proj"), adapter_rows, decoding).split(
            self.layers[i]["gate_up"].sizes, dim=-1)
        return x + self._linear(F.silu(gate) * up, i, "down_proj", ("down_proj",), adapter_rows, decoding)


def _adapter_rows(adapters: list[Adapter | None]) -> list[tuple[Adapter, torch.Tensor]]:
    """Each adapter in the batch with the rows that use it; worked out once per forward, not per projection."""
    groups = _rows_by([id(adapter) for adapter in adapters])
    return [(adapters[int(rows[0])], rows) for _, rows in groups if adapters[int(rows[0])] is not None]


SPAN_BUCKET = 64


def _span_groups(lengths: list[int], max_len: int) -> list[tuple[int, torch.Tensor]]:
    """Rows grouped by how many cached positions they attend over: their own length rounded up to a bucket.

    A row's attention then has the same shape whatever else is in the batch, so its result (and the answer)
    is the same batched or alone, not merely close; one attention call per bucket keeps the batching.
    """
    return _rows_by([min(max_len, -(-(length + 1) // SPAN_BUCKET) * SPAN_BUCKET) for length in lengths])


def _rows_by(keys: list[int]) -> list[tuple[int, torch.Tensor]]:
    """(key, the rows with that key) for each distinct key, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    return [(key, torch.tensor(rows)) for key, rows in groups.items()]


def _as_slice(slots: torch.Tensor) -> slice | torch.Tensor:
    """Consecutive ascending slots as a slice (indexing the cache with it is a view, not a copy)."""
    first = int(slots[0])
    if torch.equal(slots, torch.arange(first, first + len(slots))):
        return slice(first, first + len(slots))
    return slots


ROW_INVARIANT_ROWS = 32
"""oneDNN's bf16 kernels compute each row of a product alike for up to this many rows; past it they block
the work differently and round differently. Products over more rows (a prompt, several prompts) go in
chunks of this size, so a sequence's numbers never depend on what it was batched with."""

INT4_GROUP = 32
"""Input positions that share one step and minimum in int4 weights, as in GGUF's Q4_1."""


class _Projection:
    """`x @ W.T + b` in the decoder's precision: W in oneDNN's blocked fp32 layout (fp32), in its blocked
    bf16 layout (bf16); for int4 and int8 (an 8-bit head) where the C kernels build, W as integers for
    lowbit.c, every product; elsewhere, for int4, 4-bit integers for torch's int4 kernel for decoding
    steps, and for prompts that bf16 layout where the CPU computes bf16 natively, else the blocked fp32
    layout (fp32 products of many rows are ~2x that kernel's speed, and emulated bf16 ~4x slower than
    fp32); for int8 without lowbit.c, two int4 halves."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, precision: str, native_bf16: bool,
                 sizes: list[int] | None = None) -> None:
        self.bias = bias
        self.out_features = weight.shape[0]
        self.sizes = sizes or [weight.shape[0]]
        """Output widths of the projections fused into this one (their outputs are split back)."""
        self.lowbit_weight = self.int4 = self.int8_halves = None
        if precision in ("int4", "int8") and kernels.fits(weight) and kernels.library():
            self.lowbit_weight = _lowbit_weight(weight, precision)
        elif precision == "int4":
            self.int4 = _int4_packed(weight)
        elif precision == "int8":
            self.int8_halves = _int8_as_int4_halves(weight)
        # without native bf16 (and without lowbit.c), prompts take fp32 products: torch's int4 kernel is slow
        # for many rows, and emulated bf16 slower still
        self.fp32_prompts = self.int4 is not None and not native_bf16
        self.bf16 = precision != "fp32"
        if precision == "int8" or self.lowbit_weight is not None:
            self.weight = None
        elif not self.bf16 or self.fp32_prompts:
            self.weight = _fp32_blocked(weight)
        else:
            # oneDNN's blocked layout, once: a plain bf16 weight is re-laid out at every call, which costs
            # as much as the product itself for the few rows of a decoding step
            self.weight = weight.to(torch.bfloat16).contiguous()
            if torch.backends.mkldnn.is_available() and native_bf16:
                self.weight = torch.ops.mkldnn._reorder_linear_weight(self.weight, None)

    @classmethod
    def fused(cls, parts: list[tuple[torch.Tensor, torch.Tensor | None]], precision: str,
              native_bf16: bool) -> _Projection:
        weight = torch.cat([w for w, _ in parts])
        biases = [b if b is not None else torch.zeros(w.shape[0], dtype=w.dtype) for w, b in parts]
        bias = torch.cat(biases) if any(b is not None for _, b in parts) else None
        return cls(weight, bias, precision, native_bf16, sizes=[w.shape[0] for w, _ in parts])

    def __call__(self, x: torch.Tensor, *, decoding: bool = False) -> torch.Tensor:
        if not self.bf16 or (self.fp32_prompts and not decoding):
            return self._product(x.float(), self.bias)
        flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])  # a decoding step's rows are 2-D already
        if self.lowbit_weight is not None:  # every product, prompts' too: as fast as fp32 products for them
            out = kernels.matmul(flat, self.lowbit_weight)
        else:
            flat = flat.to(torch.bfloat16)
            if self.int8_halves is not None:
                high, low = (torch.ops.aten._weight_int4pack_mm_for_cpu(flat, packed, INT4_GROUP, scales)
                             for packed, scales in self.int8_halves)
                out = high.float() + low.float()
            elif self.int4 is not None and decoding:
                # torch's int4 kernel computes each row on its own, the same for any number of rows
                out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.int4[0], INT4_GROUP, self.int4[1])
            elif flat.shape[0] > ROW_INVARIANT_ROWS:
                out = torch.cat([self._product(rows) for rows in flat.split(ROW_INVARIANT_ROWS)])
            else:
                out = self._product(flat)
            # left in bf16: what reads it next (rotation, cache, SiLU, the next product) is bf16 too, and the
            # fp32 residual stream widens it as it adds
        if x.dim() != 2:
            out = out.view(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias

    def _product(self, rows: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """rows @ W.T (+ bias) with W as laid out for its precision (oneDNN's blocked layout, or plain)."""
        if self.weight.is_mkldnn:
            if rows.numel() == rows.shape[-1] and rows.dtype == torch.float32:
                # oneDNN's fp32 kernel for a single row sums a long input (1,536) in another order than its
                # kernel for several rows, on an AVX-512 Xeon: the row goes in twice to get the same bits
                twice = rows.reshape(1, -1).expand(2, -1)
                out = torch.ops.mkldnn._linear_pointwise(twice, self.weight, bias, "none", [], "")[:1]
                return out.view(*rows.shape[:-1], out.shape[-1])
            return torch.ops.mkldnn._linear_pointwise(rows, self.weight, bias, "none", [], "")
        return F.linear(rows, self.weight, bias)


def _fp32_blocked(weight: torch.Tensor) -> torch.Tensor:
    """The weight laid out once in oneDNN's blocked fp32 layout, where torch has oneDNN.

    MKL (`F.linear`) re-packs the whole weight at every call, which costs more than the arithmetic for the
    few rows of a decoding step or a short prompt (a 42-token prompt's products: 145 against 103 ms on an
    AVX2 EPYC); and its kernels for fewer than 12 rows round differently from its others, so a row's numbers
    would depend on its batch. oneDNN's products from the blocked layout give each row the same bits for any
    number of rows, at any place among them (measured on an AVX2 EPYC for 1 to 4,100 rows, with one
    thread or two)."""
    if not torch.backends.mkldnn.is_available():
        return weight
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), None)


def _is_layer_product(name: str) -> bool:
    return name.startswith("model.layers.") and name.endswith("_proj.weight")


def _int4_grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, K) weight as integers 0..15 in groups of INT4_GROUP along K: each group's step (its range / 15)
    and minimum, as GGUF's Q4_1 stores them; returns (integers, steps, minimums)."""
    rows, columns = weight.shape
    if columns % INT4_GROUP:
        raise UnsupportedModel(f"int4 serving needs input widths divisible by {INT4_GROUP}, not {columns}")
    groups = weight.float().view(rows, columns // INT4_GROUP, INT4_GROUP)
    minimum = groups.amin(-1)
    step = ((groups.amax(-1) - minimum) / 15).clamp(min=1e-12)
    integers = torch.round((groups - minimum[..., None]) / step[..., None]).clamp(0, 15)
    return integers.view(rows, columns), step, minimum


def _on_int4_grid(weight: torch.Tensor) -> bool:
    """True when every group of the weight is exactly 16 evenly spaced values (a 4-bit model's weights)."""
    if weight.shape[-1] % INT4_GROUP:
        return False
    integers, step, minimum = _int4_grid(weight)
    rebuilt = integers.view(*step.shape, INT4_GROUP) * step[..., None] + minimum[..., None]
    error = (rebuilt - weight.float().view(rebuilt.shape)).abs() / step[..., None]
    return bool(error.max() < 1e-3)


def _int4_packed(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight packed for `_weight_int4pack_mm_for_cpu`, which computes (q - 8) * scale + zero in fp32:
    so scale is the group's step and zero its minimum plus 8 steps."""
    integers, step, minimum = _int4_grid(weight)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(integers.to(torch.int32), 1)
    scales_and_zeros = torch.stack([step, minimum + 8 * step], dim=-1).transpose(0, 1).contiguous()
    return packed, scales_and_zeros.to(torch.bfloat16)


def _lowbit_weight(weight: torch.Tensor, precision: str) -> kernels.LowbitWeight:
    """The weight for lowbit.c: int4 as `_int4_grid` finds it, int8 as `_int8_grid` does."""
    if precision == "int4":
        return kernels.pack(*_int4_grid(weight), bits=4)
    scaled, step = _int8_grid(weight)
    return kernels.pack(scaled.round().view(weight.shape), step, torch.zeros_like(step), bits=8)


def _int8_grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) weight over its groups' steps, in groups of INT4_GROUP along K, each group's step being its
    largest magnitude / 127 (GGUF's Q8_0): integers -127..127 for an 8-bit model; returns (that, steps)."""
    groups = weight.float().view(weight.shape[0], -1, INT4_GROUP)
    step = (groups.abs().amax(-1) / 127).clamp(min=1e-30)
    return groups / step[..., None], step


def _on_int8_grid(weight: torch.Tensor) -> bool:
    """True when every group of the weight is its step times integers (an 8-bit model's weights, as the
    default model's embedding)."""
    if weight.shape[-1] % INT4_GROUP:
        return False
    scaled, _ = _int8_grid(weight)
    return bool((scaled - scaled.round()).abs().max() < 1e-3)


def _int8_as_int4_halves(weight: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """An 8-bit weight (see `_on_int8_grid`) as two int4 weights that add up to it, for the int4 kernel: each
    integer q is 16 * high + low, with high in -8..7 and low in 0..15. Only each group's step is rounded (to
    bf16, as the int4 kernel takes it)."""
    scaled, step = _int8_grid(weight)
    integers = scaled.round()
    high = torch.div(integers, 16, rounding_mode="floor")
    low = integers - 16 * high
    halves = []
    # the kernel computes (q - 8) * scale + zero: high is stored as high + 8 with zero 0, low with zero 8 steps
    for stored, scale, zero in ((high + 8, 16 * step, torch.zeros_like(step)), (low, step, 8 * step)):
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(stored.view(weight.shape).to(torch.int32), 1)
        halves.append((packed, torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)))
    return halves


def _load_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UnsupportedModel(f"no safetensors weights in {model_dir}")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(str(file)))
    return weights

