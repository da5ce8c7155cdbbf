"""Supervised fine-tuning, top to bottom: config -> setup -> train (epochs of steps) -> checkpoints.

LoRA by default; `full=True` trains every weight instead (checkpoints are then whole model folders).

    from tunehouse.train.lora_sft import TrainConfig, run
    result = run(TrainConfig(model_dir=..., output_dir=...), train_examples, valid_examples, hooks)

Examples arrive already rendered (token ids + loss mask, from data/render.py), so what is trained is what
serving will prompt with. The loop:
- batches of similar length (length bucketing: little compute on padding), order fixed by the seed;
- logits and cross-entropy only at positions that carry loss (the 49k-word head is a fifth of the model);
- frozen weights in bf16 where the CPU has native bf16 (matrix products in bf16); activations, LoRA weights and AdamW state stay fp32;
- Llama-family models train through a compact forward of their own (train/llama_body.py);
- with bf16, a batch's row groups trained two at a time, each in its own thread (see batch_gradient);
- linear warmup then linear decay;
- a full validation pass and a checkpoint (PEFT adapter + optimizer + position) at each epoch end, the last
  `keep_checkpoints` kept; a resumed run continues from the latest checkpoint and ends where an
  uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..cpu import native_bf16, tune_malloc_for_training
from ..data.render import Rendered
from ..faults import hold_point
from . import llama_body

# ---------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    model_dir: str
    """A Hugging Face causal-LM folder (the converted default model, or a registered one)."""
    output_dir: str
    """Where checkpoints and the final adapter are written."""
    n_epochs: int = 3
    batch_size: int = 8
    learning_rate: float = 2e-4
    """Peak learning rate (OpenAI's `learning_rate_multiplier` scales tunehouse's base rate)."""
    full: bool = False
    """Full fine-tuning: every weight trains (no LoRA); each checkpoint is a whole model folder."""
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_seq_len: int = 2048
    """Longer examples are truncated from the end."""
    seed: int = 0
    bf16: bool | None = None
    """Frozen weights in bf16 (see FrozenBf16Linear); None picks it when the CPU computes bf16 natively."""
    micro_batch_tokens: int = 512
    """A batch goes through the model in groups of rows of at most this many padded tokens, gradients summed:
    the same update as the whole batch at once, with bounded activation memory (~1.7 MB per token in flight
    for the default model, `lanes` groups at a time)."""
    keep_checkpoints: int = 3
    log_every: int = 10
    threads: int | None = None
    """CPU threads in all; torch's default (one per core) when None."""
    compact_forward: bool = True
    """Llama-family models train through train/llama_body.py instead of transformers' layers (same
    parameters and files; with bf16 ~1.07x tokens/s and ~450 MB less peak RSS, in fp32 on an AVX2 CPU
    1.0-1.1x and ~300 MB less)."""
    lanes: int | None = None
    """Row groups trained at the same time, each in its own thread (see batch_gradient). None: two where
    there are at least two threads, for LoRA on bf16 frozen weights; one for full fine-tuning, where each
    extra lane would hold a copy of every weight's gradient, and in fp32, where MKL's products keep both
    cores busy alone (on an AVX2 CPU two lanes gave ~1.1x at best for 0.5-1.1 GB more peak RSS, above TRL's)."""

    def __post_init__(self) -> None:
        if self.n_epochs < 1 or self.batch_size < 1:
            raise ValueError("n_epochs and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")


@dataclass
class Hooks:
    """How the recipe reports to its caller (the job worker, a benchmark, a test)."""

    on_metrics: Callable[[dict], None] = lambda data: None
    on_message: Callable[[str, str], None] = lambda level, text: None
    on_checkpoint: Callable[[int, Path, dict], None] = lambda step, path, metrics: None
    should_stop: Callable[[], str | None] = lambda: None
    """Polled between steps; a non-None answer ('cancel', 'pause') stops training after saving if 'pause'."""


@dataclass
class TrainResult:
    adapter_dir: Path | None
    steps: int
    trained_tokens: int
    stopped: str | None = None
    history: list[dict] = field(default_factory=list)
    """One row per logged step: step, train_loss, train_accuracy, valid_loss, valid_mean_token_accuracy."""


# ---------------------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------------------


def load_base(model_dir: str):
    """The pretrained model as training starts from it: fp32, no KV cache."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base.config.use_cache = False
    return base


def load_model(config: TrainConfig, bf16: bool = False, base=None):
    """The base model, frozen, with LoRA adapters on its linear layers (or, for full fine-tuning, as it is).

    With `bf16`, the frozen weights are stored in bf16 (LoRA weights, optimizer and activations stay fp32).
    `base`: `load_base(config.model_dir)` done ahead (jobs/runner.py), not used since; it trains as one loaded
    here provided loading it draws no random numbers, as for a folder that holds every weight."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    base = base if base is not None else load_base(config.model_dir)
    if config.full:
        return base
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    if bf16:
        freeze_in_bf16(model)
    if config.compact_forward:
        llama_body.install(model)  # Llama-family models only; the others keep transformers' layers
    return model


class FrozenBf16Linear(torch.nn.Module):
    """A frozen linear layer stored in bf16 (the vocabulary head): bf16 matrix products, fp32 in and out."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight).to(x.dtype)


class LoraOnBf16Base(torch.autograd.Function):
    """y = x W^T (+ bias) + scaling * (x' A^T) B^T with the frozen W in bf16 and everything else fp32.

    The base product runs in bf16 (the CPU's fast path, forward and input gradient) and is widened to fp32
    before LoRA's term is added, so LoRA's small updates are not rounded to the base output's 8-bit
    mantissa, which is what plain bf16 autocast does (bench/recipe_throughput.py: validation loss 2.35
    against 1.63 in fp32, and 1.63 this way). One function
    instead of PEFT's chain of modules also saves the elementwise passes over the output (scale, add).
    `x'` is the input after LoRA dropout (the same tensor when there is none).
    """

    @staticmethod
    def forward(ctx, x, x_lora, weight, bias, lora_a, lora_b, scaling):
        rows = x.reshape(-1, x.shape[-1])
        rows_lora = x_lora.reshape(-1, x_lora.shape[-1])
        out = torch.mm(rows.to(torch.bfloat16), weight.t()).float()
        if bias is not None:
            out += bias
        low_rank = torch.mm(rows_lora, lora_a.t()).mul_(scaling)  # (N, r)
        out.addmm_(low_rank, lora_b.t())
        ctx.save_for_backward(rows_lora, weight, lora_a, lora_b, low_rank)
        ctx.scaling, ctx.x_shape, ctx.same_input = scaling, x.shape, x_lora is x
        return out.view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad):
        rows_lora, weight, lora_a, lora_b, low_rank = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.shape[-1])
        grad_b = torch.mm(low_rank.t(), grad_rows).t().contiguous()  # 4x faster than grad_rows.t() @ low_rank
        grad_low = torch.mm(grad_rows, lora_b).mul_(ctx.scaling)  # (N, r)
        grad_a = torch.mm(grad_low.t(), rows_lora)
        grad_x = grad_x_lora = None
        if ctx.needs_input_grad[0]:  # not for the first layer's inputs, which come from the frozen embedding
            grad_x = torch.mm(grad_rows.to(torch.bfloat16), weight).float()
            if ctx.same_input:  # no dropout: both terms' gradients go to x
                grad_x.addmm_(grad_low, lora_a)
            grad_x = grad_x.view(ctx.x_shape)
        if not ctx.same_input and ctx.needs_input_grad[1]:
            grad_x_lora = torch.mm(grad_low, lora_a).view(ctx.x_shape)
        return grad_x, grad_x_lora, None, None, grad_a, grad_b, None


def freeze_in_bf16(model) -> None:
    """Store the frozen weights under LoRA, and the vocabulary head, in bf16 (see LoraOnBf16Base).

    The LoRA parameters, their names and PEFT's adapter files are unchanged: only how each layer computes.
    """
    from peft.tuners.lora import Linear as LoraLinear

    converted = set()
    for module in model.modules():
        if isinstance(module, LoraLinear) and isinstance(module.base_layer, torch.nn.Linear):
            base = module.base_layer
            base.weight = torch.nn.Parameter(base.weight.detach().to(torch.bfloat16), requires_grad=False)
            if base.bias is not None:
                base.bias.requires_grad_(False)
            converted.add(id(base.weight))
            module.forward = _lora_forward(module)
    causal_lm = model.get_base_model()
    causal_lm.lm_head = FrozenBf16Linear(causal_lm.lm_head)  # unties it from the (fp32) embedding: both frozen
    # the fp32 rest (embedding, norms) into memory of its own, so that the loaded file's mapping, whose
    # pages all count in RSS once read, is released
    for parameter in model.parameters():
        if id(parameter) not in converted and parameter.dtype == torch.float32:
            parameter.data = parameter.data.clone()


def _lora_forward(module):
    (name,) = module.active_adapters
    base, lora_a, lora_b = module.base_layer, module.lora_A[name], module.lora_B[name]
    dropout, scaling = module.lora_dropout[name], module.scaling[name]

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        x_lora = x if isinstance(dropout, torch.nn.Identity) else dropout(x)
        return LoraOnBf16Base.apply(x, x_lora, base.weight, base.bias, lora_a.weight, lora_b.weight, scaling)

    return forward


def make_batches(examples: list[Rendered], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices grouped by similar length, in an order fixed by (seed, epoch)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(examples)))
    rng.shuffle(order)  # ties in length are broken by the shuffle
    order.sort(key=lambda i: len(examples[i].input_ids))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def split_rows(examples: list[Rendered], indices: list[int], max_tokens: int, at_least: int = 1) -> list[list[int]]:
    """The batch's rows in groups whose padded size (rows x longest) stays within `max_tokens` (at least
    one row each): activation memory then depends on this budget, not on batch size x length. At least
    `at_least` groups where there are that many rows (one per lane)."""
    width = max(len(examples[i].input_ids) for i in indices)
    groups = max(math.ceil(len(indices) / max(1, max_tokens // width)), min(at_least, len(indices)))
    rows = math.ceil(len(indices) / groups)  # even groups: 4 + 4 rather than 5 + 3
    return [indices[start : start + rows] for start in range(0, len(indices), rows)]


def collate(examples: list[Rendered], indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(examples[i].input_ids) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(indices), width), dtype=torch.long)
    loss_mask = torch.zeros((len(indices), width), dtype=torch.bool)
    for row, i in enumerate(indices):
        n = len(examples[i].input_ids)
        ids[row, :n] = torch.tensor(examples[i].input_ids)
        attention[row, :n] = 1
        loss_mask[row, :n] = torch.tensor(examples[i].loss_mask)
    return {"input_ids": ids, "attention_mask": attention, "loss_mask": loss_mask}


# ---------------------------------------------------------------------------------------------------------
# The pieces of a step
# ---------------------------------------------------------------------------------------------------------


HEAD_ROWS = 64
"""Loss positions per pass through the vocabulary head: a chunk's fp32 logits (64 x 49k words, 12.6 MB)
stay under the size that the allocator maps afresh (cpu.tune_malloc_for_training), so they reuse memory."""


def loss_step(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, int]:
    """Summed cross-entropy over the loss positions, their count, and how many were predicted right.

    Token t is predicted from position t-1, so the hidden states at positions whose *next* token carries
    loss are the only ones that go through the vocabulary head, `HEAD_ROWS` at a time.
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets_at = batch["loss_mask"][:, 1:]  # (B, T-1)
    selected = hidden[:, :-1][targets_at]  # (N, H)
    targets = batch["input_ids"][:, 1:][targets_at]  # (N,)
    weight, bias = causal_lm.lm_head.weight, getattr(causal_lm.lm_head, "bias", None)
    loss_sum, right = torch.zeros(()), 0
    for start in range(0, len(targets), HEAD_ROWS):
        rows = slice(start, start + HEAD_ROWS)
        loss, right_here = HeadCrossEntropy.apply(selected[rows], weight, bias, targets[rows])
        loss_sum = loss_sum + loss
        right += int(right_here)
    return loss_sum, int(targets.numel()), right


class HeadCrossEntropy(torch.autograd.Function):
    """The summed cross-entropy of hidden rows (N, H) through the vocabulary head, and how many rows give
    their target the highest logit, as one function.

    The logits are computed as W h^T (vocabulary x rows): for a chunk's few rows MKL's fp32 product is
    ~1.5x faster that way round than h W^T, and the input gradient as W^T G likewise. Backward needs only
    the softmax, kept in the logits' own memory, where `F.cross_entropy` keeps the log-softmax besides the
    logits and makes two more passes over them."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets):
        logits = torch.mm(weight, hidden.t().to(weight.dtype)).to(hidden.dtype)  # (V, N), fp32 from a bf16 head
        if bias is not None:
            logits += bias[:, None]
        top = logits.amax(0)
        target_logits = logits.gather(0, targets[None]).squeeze(0)
        right = (target_logits >= top).sum()
        probs = logits.sub_(top).exp_()
        total = probs.sum(0)
        loss = (total.log() + top - target_logits).sum()
        ctx.save_for_backward(hidden, weight, targets, probs.div_(total))
        ctx.mark_non_differentiable(right)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return loss, right

    @staticmethod
    def backward(ctx, grad_loss, _):
        # d loss / d logits is softmax - one-hot: the one-hot's part is the target's row of W (or of h)
        hidden, weight, targets, probs = ctx.saved_tensors
        grad_hidden = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_hidden = torch.mm(weight.t(), probs.to(weight.dtype)).t().to(hidden.dtype)
            grad_hidden = grad_hidden.sub_(weight[targets]).mul_(grad_loss)
        if ctx.needs_input_grad[1]:  # full fine-tuning
            grad_weight = torch.mm(probs, hidden).index_add_(0, targets, hidden, alpha=-1).mul_(grad_loss)
            grad_weight = grad_weight.to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = probs.sum(1).index_add_(0, targets, torch.ones_like(targets, dtype=probs.dtype), alpha=-1)
            grad_bias = grad_bias.mul_(grad_loss).to(ctx.bias_dtype)
        return grad_hidden, grad_weight, grad_bias, None


def batch_gradient(model, trainable: list[torch.Tensor], examples: list[Rendered], groups: list[list[int]],
                   n_targets: int, pad_id: int, lanes: int) -> tuple[float, int, int]:
    """Sum the batch's gradient (mean over its `n_targets` loss tokens) into `.grad`, its row groups shared
    among `lanes` threads; returns the summed loss, the right predictions and the tokens trained.

    Why threads: a step is thousands of small operations issued one after another, and one thread keeps two
    cores only partly busy. Two lanes of one core each, each on its own row groups, train ~1.2x faster on
    the 2-core reference machine (bench/recipe_throughput.py: 430 against 528 tokens/s, same validation
    loss); the operators run outside Python's lock. Lane 0 accumulates into `.grad`; the others return their
    gradients (`torch.autograd.grad`), added after it in lane order, so the sum does not depend on which
    thread finishes first.
    """
    shares = [groups[lane::lanes] for lane in range(lanes)]
    outcomes: list = [None] * lanes

    def train_share(lane: int) -> None:
        try:
            loss_sum, correct, tokens, grads = 0.0, 0, 0, None
            for rows in shares[lane]:
                batch = collate(examples, rows, pad_id)
                part_loss, _, part_correct = loss_step(model, batch)
                scaled = part_loss / max(n_targets, 1)
                if lane == 0:
                    scaled.backward()
                else:
                    part = torch.autograd.grad(scaled, trainable, allow_unused=True)
                    grads = list(part) if grads is None else [
                        g if p is None else p if g is None else g.add_(p) for g, p in zip(grads, part)]
                loss_sum += part_loss.item()
                correct += part_correct
                tokens += int(batch["attention_mask"].sum())
            outcomes[lane] = (loss_sum, correct, tokens, grads)
        except BaseException as error:  # raised again in the caller's thread
            outcomes[lane] = error

    helpers = [threading.Thread(target=train_share, args=(lane,), name=f"tunehouse-lane-{lane}")
               for lane in range(1, lanes) if shares[lane]]
    for helper in helpers:
        helper.start()
    train_share(0)
    for helper in helpers:
        helper.join()
    totals = [0.0, 0, 0]
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is None:
            continue
        *counts, grads = outcome
        totals = [total + count for total, count in zip(totals, counts)]
        for parameter, grad in zip(trainable, grads or []):
            if grad is not None:
                parameter.grad = grad if parameter.grad is None else parameter.grad.add_(grad)
    return totals[0], totals[1], totals[2]


def get_lr(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warmup to `peak`, then linear decay to zero at `total_steps`."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    remaining = max(1, total_steps - warmup_steps)
    return peak * max(0.0, (total_steps - step) / remaining)


@torch.no_grad()
def evaluate(model, examples: list[Rendered], max_tokens: int, pad_id: int) -> tuple[float, float]:
    """Mean token loss and accuracy over a whole dataset, in groups of rows of at most `max_tokens` padded
    tokens (the logits of a group are its loss tokens x the vocabulary: long examples would not fit at once)."""
    model.eval()
    loss_total, tokens, correct = 0.0, 0, 0
    groups: list[list[int]] = []
    for i in sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids)):  # each row the group's longest
        if not groups or (len(groups[-1]) + 1) * len(examples[i].input_ids) > max_tokens:
            groups.append([])
        groups[-1].append(i)
    for rows in groups:
        loss_sum, n, right = loss_step(model, collate(examples, rows, pad_id))
        loss_total, tokens, correct = loss_total + float(loss_sum), tokens + n, correct + right
    model.train()
    return loss_total / max(tokens, 1), correct / max(tokens, 1)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: PEFT adapter folder + trainer state, written whole or not at all
# ---------------------------------------------------------------------------------------------------------

STATE_FILE = "trainer_state.pt"


def save_checkpoint(
    model, optimizer, config: TrainConfig, position: dict, metrics: dict
) -> Path:
    """Save at `position` = {step, epoch, batches_done, trained_tokens}: a resumed run continues at batch
    `batches_done` of `epoch` (0-based)."""
    step = position["step"]
    root = Path(config.output_dir) / "checkpoints"
    final = root / f"step-{step:06d}"
    staging = root / f".step-{step:06d}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    # LoRA: adapter_model.safetensors + adapter_config.json (the LoRA weights only); full: the whole model
    model.save_pretrained(staging)
    hold_point("checkpoint.write")
    if config.full:  # a whole model folder is only usable with its tokenizer beside it
        _copy_tokenizer(config.model_dir, staging)
    torch.save({"optimizer": optimizer.state_dict(), **position}, staging / STATE_FILE)
    (staging / "tunehouse_config.json").write_text(json.dumps(asdict(config), indent=2))
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    kept = sorted(root.glob("step-*"))
    for old in kept[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    for older in kept[-config.keep_checkpoints : -1]:  # only the newest is resumed from: drop the rest's optimizer
        (older / STATE_FILE).unlink(missing_ok=True)
    return final


def _copy_tokenizer(model_dir: str, target: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "generation_config.json"):
        if (Path(model_dir) / name).exists():
            shutil.copy2(Path(model_dir) / name, target / name)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = sorted(p for p in (Path(output_dir) / "checkpoints").glob("step-*") if (p / STATE_FILE).exists())
    return found[-1] if found else None


def load_checkpoint(model, optimizer, checkpoint: Path) -> dict:
    """Restore adapter weights and optimizer; returns the saved position (see save_checkpoint)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if (checkpoint / "adapter_model.safetensors").exists():
        set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter_model.safetensors")))
    else:
        model.load_state_dict(_full_state(checkpoint), strict=False)
    state = torch.load(checkpoint / STATE_FILE, weights_only=False)
    optimizer.load_state_dict(state.pop("optimizer"))
    return state


def _full_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for file in sorted(checkpoint.glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


# ---------------------------------------------------------------------------------------------------------
# Train
# ---------------------------------------------------------------------------------------------------------


def run(
    config: TrainConfig, train_set: list[Rendered], valid_set: list[Rendered] | None = None, hooks: Hooks | None = None,
    base=None,
) -> TrainResult:
    """Train; `base` is the model of `config.model_dir` if it was loaded ahead (see load_model)."""
    hooks = hooks or Hooks()
    tune_malloc_for_training()
    threads_before = torch.get_num_threads()
    threads = config.threads or threads_before
    bf16 = native_bf16() if config.bf16 is None else config.bf16
    lanes = config.lanes or (2 if threads >= 2 and bf16 and not config.full else 1)
    torch.set_num_threads(max(1, threads // lanes))  # the lanes share the cores
    try:
        return _train(config, train_set, valid_set, hooks, lanes, bf16, base)
    finally:
        torch.set_num_threads(threads_before)


def _train(config: TrainConfig, train_set: list[Rendered], valid_set: list[Rendered] | None, hooks: Hooks,
           lanes: int, bf16: bool, base) -> TrainResult:
    """The recipe, once `run` has shared the CPU threads among the lanes."""
    train_set = [example.truncate(config.max_seq_len) for example in train_set]
    valid_set = [example.truncate(config.max_seq_len) for example in valid_set or []]
    if truncated := sum(example.truncated for example in train_set):
        hooks.on_message("warn", f"{truncated} training example(s) longer than {config.max_seq_len} tokens were truncated")

    model = load_model(config, bf16=bf16 and not config.full, base=base)
    model.train()
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  fused=True)  # one kernel over all tensors: 3 ms a step against 16 (LoRA, one thread)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = steps_per_epoch * config.n_epochs
    warmup_steps = max(1, int(total_steps * config.warmup_ratio))

    position = {"step": 0, "epoch": 0, "batches_done": 0, "trained_tokens": 0}
    for unfinished in (Path(config.output_dir) / "checkpoints").glob(".step-*.partial"):  # left by a crash
        shutil.rmtree(unfinished, ignore_errors=True)
    checkpoint = latest_checkpoint(config.output_dir)
    if checkpoint is not None:
        position = load_checkpoint(model, optimizer, checkpoint)
        hooks.on_message("info", f"Resumed from the checkpoint at step {position['step']}")
    step, start_epoch, skip_batches = position["step"], position["epoch"], position["batches_done"]

    result = TrainResult(adapter_dir=None, steps=step, trained_tokens=position["trained_tokens"])
    last_log = (time.monotonic(), result.trained_tokens, step)  # (time, tokens, step) at the last log line
    for epoch in range(start_epoch, config.n_epochs):
        batches = make_batches(train_set, config.batch_size, config.seed, epoch)
        for batch_number, indices in enumerate(batches):
            if epoch == start_epoch and batch_number < skip_batches:
                continue  # done before the checkpoint we resumed from
            stop = hooks.should_stop()
            if stop is not None:
                if stop == "pause":
                    position = {"step": step, "epoch": epoch, "batches_done": batch_number,
                                "trained_tokens": result.trained_tokens}
                    save_checkpoint(model, optimizer, config, position, {"step": step})
                result.stopped, result.steps = stop, step
                return result

            n_targets = sum(sum(train_set[i].loss_mask[1:]) for i in indices)
            groups = split_rows(train_set, indices, config.micro_batch_tokens, at_least=lanes)
            loss_sum, correct, tokens = batch_gradient(model, trainable, train_set, groups, n_targets, pad_id, lanes)
            result.trained_tokens += tokens
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            for group in optimizer.param_groups:
                group["lr"] = get_lr(step, total_steps, warmup_steps, config.learning_rate)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            if step % config.log_every and step not in (1, total_steps):
                continue
            elapsed = time.monotonic() - last_log[0]
            rate = (result.trained_tokens - last_log[1]) / elapsed if elapsed > 0 else 0.0
            seconds_per_step = elapsed / max(1, step - last_log[2])
            last_log = (time.monotonic(), result.trained_tokens, step)
            metrics = {
                "step": step,
                "total_steps": total_steps,
                "train_loss": loss_sum / max(n_targets, 1),
                "train_mean_token_accuracy": correct / max(n_targets, 1),
                "tokens_per_second": round(rate, 1),
                "seconds_per_step": round(seconds_per_step, 3),
            }
            result.history.append({"step": step, "train_loss": metrics["train_loss"],
                                   "train_accuracy": metrics["train_mean_token_accuracy"]})
            hooks.on_metrics(metrics)

        # --- epoch end: full validation pass, checkpoint -------------------------------------------------
        metrics = {"step": step, "total_steps": total_steps}
        if result.history:
            metrics["train_loss"] = result.history[-1]["train_loss"]
            metrics["train_mean_token_accuracy"] = result.history[-1]["train_accuracy"]
        if valid_set:
            valid_loss, valid_accuracy = evaluate(model, valid_set, config.micro_batch_tokens, pad_id)
            metrics.update(valid_loss=valid_loss, valid_mean_token_accuracy=valid_accuracy,
                           full_valid_loss=valid_loss, full_valid_mean_token_accuracy=valid_accuracy)
            result.history.append({"step": step, "valid_loss": valid_loss, "valid_mean_token_accuracy": valid_accuracy})
            hooks.on_metrics(metrics)
        position = {"step": step, "epoch": epoch + 1, "batches_done": 0, "trained_tokens": result.trained_tokens}
        path = save_checkpoint(model, optimizer, config, position, metrics)
        hooks.on_checkpoint(step, path, metrics)

    result.steps = step
    result.adapter_dir = latest_checkpoint(config.output_dir)
    return result
