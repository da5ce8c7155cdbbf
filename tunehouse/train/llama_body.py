"""A compact training forward for LoRA on Llama-family models, over the PEFT model's own parameters.

Why: transformers' decoder layer and PEFT's wrappers issue many small operations and Python calls per layer,
and in training most of a step is such calls, not matrix products (docs/training.md). Here:
- q, k and v are one product, and so are gate and up; the LoRA A products of the projections that
  share an input are one product too;
- each projection keeps its input for backward once, in the frozen weights' precision (with a bf16 base,
  half the memory of fp32);
- attention from the q, k, v product (with the rotation of q and k), RMSNorm and SwiGLU are one
  operation each, with a hand-written backward whose gradient is one tensor (no zero-filled slices added
  up, no concatenation); SiLU is recomputed in backward.

The frozen weights are bf16 where the CPU computes bf16 natively, fp32 elsewhere (lora_sft.load_model).
The PEFT model still owns every parameter (the fused weights are the base layers' own storage, seen
through views), so the optimizer, checkpoints and adapter files are what they were. It is installed as the
decoder stack's `forward`, so `model(...)` and the training loop both go through it; right padding only
(the loop's batches): causal attention keeps padding out of every real position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutputWithPast

ATTENTION = ("q_proj", "k_proj", "v_proj")
MLP = ("gate_proj", "up_proj")


class FusedLora(torch.autograd.Function):
    """Projections that read one input, as one: x W^T (with a bf16 base, a bf16 product widened to fp32)
    plus, for each part p of the output, scaling * (x A_p^T) B_p^T in fp32 (LoRA's sum is never rounded to
    bf16; see lora_sft.LoraOnBf16Base). `lora_a` is the parts' A matrices stacked, (parts x r, in)."""

    @staticmethod
    def forward(ctx, x, weight, scaling, lora_a, *lora_bs):
        x_kept = x.to(weight.dtype)
        out = torch.mm(x_kept, weight.t()).float()
        low_rank = torch.mm(x, lora_a.t()).mul_(scaling)  # (N, parts x r)
        rank, start = lora_a.shape[0] // len(lora_bs), 0
        for part, lora_b in enumerate(lora_bs):
            out[:, start : start + lora_b.shape[0]].addmm_(low_rank[:, part * rank : (part + 1) * rank], lora_b.t())
            start += lora_b.shape[0]
        ctx.save_for_backward(x_kept, weight, lora_a, low_rank, *lora_bs)
        ctx.scaling = scaling
        return out

    @staticmethod
    def backward(ctx, grad):
        x_kept, weight, lora_a, low_rank, *lora_bs = ctx.saved_tensors
        rank, start = lora_a.shape[0] // len(lora_bs), 0
        grad_low = torch.empty_like(low_rank)
        grad_bs = []
        for part, lora_b in enumerate(lora_bs):
            grad_part = grad[:, start : start + lora_b.shape[0]]
            columns = slice(part * rank, (part + 1) * rank)
            grad_bs.append(torch.mm(low_rank[:, columns].t(), grad_part).t().contiguous())
            grad_low[:, columns] = torch.mm(grad_part, lora_b)
            start += lora_b.shape[0]
        grad_low.mul_(ctx.scaling)
        # in the kept input's precision (bf16 with fp32 sums, with a bf16 base): a rank x width result,
        # where widening x first would copy all of x
        grad_a = torch.mm(grad_low.t().to(weight.dtype), x_kept).float()
        grad_x = None
        if ctx.needs_input_grad[0]:  # not for the first layer's input, which comes from the frozen embedding
            grad_x = torch.mm(grad.to(weight.dtype), weight).float().addmm_(grad_low, lora_a)
        return grad_x, None, None, grad_a, *grad_bs


class CausalSelfAttention(torch.autograd.Function):
    """Causal attention from the fused q, k, v projection's output (B*T, (heads + 2 kv) D) to the heads'
    outputs side by side (B*T, heads D), q and k rotated by the rotary embedding as transformers applies it.

    The query heads that share a key head are one matrix product (no copies of k and v per head), with
    fp32 products and softmax: at training's ~100-token rows this is ~20% faster than the CPU's flash
    attention kernel, forward and backward. Backward takes the rotation back (the opposite angle) and
    writes the three gradients into one tensor of the input's shape: autograd's slicing would fill a zero
    tensor of that shape for each of q, k and v and add them up. The softmax is kept for backward
    (heads x T x T per row, ~1.3 MB a layer for 4 rows of 95 tokens)."""

    @staticmethod
    def forward(ctx, qkv, cos, sin, batch, heads, kv_heads):
        steps = cos.shape[0]
        parts = qkv.view(batch, steps, heads + 2 * kv_heads, -1)
        dim, group = parts.shape[-1], heads // kv_heads
        q, k, v = (torch.empty((batch, count, steps, dim), dtype=qkv.dtype) for count in (heads, kv_heads, kv_heads))
        _rotate(parts[:, :, :heads], cos, sin, out=q.transpose(1, 2))
        _rotate(parts[:, :, heads : heads + kv_heads], cos, sin, out=k.transpose(1, 2))
        v.transpose(1, 2).copy_(parts[:, :, heads + kv_heads :])
        # (B kv, group T, D): the query heads of a key head one after another, as transformers' repeat_kv pairs them
        q, k, v = q.view(batch * kv_heads, group * steps, dim), k.view(-1, steps, dim), v.view(-1, steps, dim)
        future = torch.full((steps, steps), float("-inf"), dtype=q.dtype).triu_(1).repeat(group, 1)
        probs = torch.baddbmm(future, q, k.transpose(1, 2), alpha=dim ** -0.5).softmax(dim=-1)
        out = torch.bmm(probs, v).view(batch, heads, steps, dim).transpose(1, 2).reshape(batch * steps, heads * dim)
        ctx.save_for_backward(q, k, v, probs, cos, sin)
        ctx.shape = (batch, steps, heads, kv_heads, dim)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, probs, cos, sin = ctx.saved_tensors
        batch, steps, heads, kv_heads, dim = ctx.shape
        grad_out = grad.view(batch, steps, heads, dim).transpose(1, 2).reshape(q.shape)
        grad_v = torch.bmm(probs.transpose(1, 2), grad_out)
        grad_scores = torch._softmax_backward_data(torch.bmm(grad_out, v.transpose(1, 2)), probs, -1, probs.dtype)
        grad_q = torch.bmm(grad_scores, k).mul_(dim ** -0.5)
        grad_k = torch.bmm(grad_scores.transpose(1, 2), q).mul_(dim ** -0.5)
        grad_qkv = torch.empty((batch, steps, heads + 2 * kv_heads, dim), dtype=grad.dtype)
        _rotate(grad_q.view(batch, heads, steps, dim).transpose(1, 2), cos, -sin, out=grad_qkv[:, :, :heads])
        _rotate(grad_k.view(batch, kv_heads, steps, dim).transpose(1, 2), cos, -sin,
                out=grad_qkv[:, :, heads : heads + kv_heads])
        grad_qkv[:, :, heads + kv_heads :] = grad_v.view(batch, kv_heads, steps, dim).transpose(1, 2)
        return grad_qkv.view(batch * steps, -1), None, None, None, None, None


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor) -> None:
    """x (..., D) with cos and sin (..., D/2) broadcast, into `out`: (x1 cos - x2 sin, x2 cos + x1 sin)."""
    x1, x2 = x.chunk(2, dim=-1)
    out1, out2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=out1).addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=out2).addcmul_(x1, sin)


class RMSNorm(torch.autograd.Function):
    """x / rms(x) * weight for a frozen weight (no weight gradient), with a backward of a few passes where
    autograd's chain of pow, mean, rsqrt and products takes twice as many."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        inverse_rms = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1]).add_(eps).rsqrt_()
        ctx.save_for_backward(x, weight, inverse_rms)
        return torch.mul(x, inverse_rms).mul_(weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight, inverse_rms = ctx.saved_tensors
        grad_normed = grad * weight
        # d/dx of x r: r (g - x r^2 <g, x> / n), with r = 1 / rms(x) and n the width
        along_x = torch.linalg.vecdot(grad_normed, x).unsqueeze(-1)  # <g, x> per row (7x faster than bmm)
        along_x.mul_(inverse_rms.square()).div_(x.shape[-1])
        return grad_normed.sub_(x * along_x).mul_(inverse_rms), None, None


class SwiGLU(torch.autograd.Function):
    """silu(gate) * up from the gate and up halves of one projection's output, keeping only that output for
    backward (SiLU recomputed there: keeping it cost ~150 MB of peak RSS, for a gain within the machine's
    noise). The gradient is one tensor of that output's shape (autograd's `chunk` would concatenate two),
    made by two fused kernels where the chain rule written out takes eight passes."""

    @staticmethod
    def forward(ctx, gate_up):
        ctx.save_for_backward(gate_up)
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx, grad):
        (gate_up,) = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        grad_gate_up = torch.empty_like(gate_up)
        grad_gate, grad_up = grad_gate_up.chunk(2, dim=-1)
        torch.mul(F.silu(gate), grad, out=grad_up)
        torch.ops.aten.silu_backward.grad_input(grad * up, gate, grad_input=grad_gate)
        return grad_gate_up


def install(peft_model) -> bool:
    """Make the decoder stack of `peft_model` (frozen weights in bf16 or fp32) compute with this module, where
    it is a plain Llama with LoRA on all seven projections and no dropout; False (nothing changed) where not."""
    from peft.tuners.lora import Linear as LoraLinear

    causal_lm = peft_model.get_base_model()
    config, decoder = causal_lm.config, causal_lm.model
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if config.model_type != "llama" or config.hidden_act != "silu" or rope.get("rope_type", "default") != "default" \
            or getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return False
    layers = []
    for layer in decoder.layers:
        modules = {name: getattr(layer.self_attn, name, None) for name in (*ATTENTION, "o_proj")}
        modules |= {name: getattr(layer.mlp, name, None) for name in (*MLP, "down_proj")}
        if not all(isinstance(module, LoraLinear) and len(module.active_adapters) == 1 for module in modules.values()):
            return False
        (adapter,) = modules["q_proj"].active_adapters
        dtype = modules["q_proj"].base_layer.weight.dtype
        if dtype not in (torch.bfloat16, torch.float32) or any(
                not isinstance(m.lora_dropout[adapter], torch.nn.Identity) or m.base_layer.weight.dtype != dtype
                or m.scaling[adapter] != modules["q_proj"].scaling[adapter] for m in modules.values()):
            return False
        layers.append((layer, modules, adapter))
    if not layers:
        return False
    decoder.forward = _Body(decoder, config, layers).forward
    return True


class _Body:
    def __init__(self, decoder, config, layers) -> None:
        self.decoder = decoder
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.rotary = decoder.rotary_emb
        _, first, adapter = layers[0]
        self.scaling = first["q_proj"].scaling[adapter]  # one for all (install checked)
        self.layers = []
        for layer, modules, adapter in layers:
            self.layers.append({
                "input_norm": layer.input_layernorm.weight, "post_norm": layer.post_attention_layernorm.weight,
                "qkv": _fuse([modules[name] for name in ATTENTION], adapter),
                "o": _fuse([modules["o_proj"]], adapter),
                "gate_up": _fuse([modules[name] for name in MLP], adapter),
                "down": _fuse([modules["down_proj"]], adapter),
            })

    def forward(self, input_ids=None, attention_mask=None, **kwargs) -> BaseModelOutputWithPast:
        if attention_mask is not None and bool((attention_mask[:, 1:] > attention_mask[:, :-1]).any()):
            raise ValueError("the training forward takes right-padded batches only")
        batch, steps = input_ids.shape
        x = self.decoder.embed_tokens(input_ids).view(batch * steps, -1)
        positions = torch.arange(steps).unsqueeze(0)
        cos, sin = self.rotary(x, positions)  # (1, T, D), the two halves equal
        half = self.head_dim // 2
        cos, sin = cos[0, :, None, :half], sin[0, :, None, :half]  # (T, 1, D/2): broadcast over heads
        for layer in self.layers:
            x = self._layer(layer, x, batch, cos, sin)
        hidden = F.rms_norm(x, (x.shape[-1],), self.decoder.norm.weight, self.eps)
        return BaseModelOutputWithPast(last_hidden_state=hidden.view(batch, steps, -1))

    def _layer(self, layer, x, batch, cos, sin):
        h = RMSNorm.apply(x, layer["input_norm"], self.eps)
        attended = CausalSelfAttention.apply(self._project(layer["qkv"], h), cos, sin, batch, self.heads, self.kv_heads)
        x = x + self._project(layer["o"], attended)
        h = RMSNorm.apply(x, layer["post_norm"], self.eps)
        return x + self._project(layer["down"], SwiGLU.apply(self._project(layer["gate_up"], h)))

    def _project(self, fused, x):
        weight, lora_as, lora_bs = fused
        lora_a = torch.cat(lora_as) if len(lora_as) > 1 else lora_as[0]
        return FusedLora.apply(x, weight, self.scaling, lora_a, *lora_bs)


def _fuse(modules, adapter):
    """One weight for projections that share an input; their base layers then see views of it."""
    weight = torch.cat([module.base_layer.weight.detach() for module in modules]) if len(modules) > 1 \
        else modules[0].base_layer.weight.detach()
    start = 0
    for module in modules:
        rows = module.base_layer.weight.shape[0]
        module.base_layer.weight.data = weight[start : start + rows]
        start += rows
    return weight, [m.lora_A[adapter].weight for m in modules], [m.lora_B[adapter].weight for m in modules]
