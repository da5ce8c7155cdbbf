"""The LoRA SFT recipe on a tiny randomly initialised Llama (real tokenizer): it learns, it saves PEFT
adapters, and a resumed run ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import zlib

import pytest
import torch
from safetensors.torch import load_file

from tunehouse.data.render import render_chat
from tunehouse.train.lora_sft import Hooks, TrainConfig, get_lr, latest_checkpoint, make_batches, run


@pytest.fixture(scope="module")
def dataset(tokenizer):
    colours = ["red", "blue", "green", "white", "black", "pink"]
    return [
        render_chat(
            [{"role": "user", "content": f"Say {colour}."}, {"role": "assistant", "content": colour.upper()}],
            tokenizer,
        )
        for colour in colours
    ]


def config_for(model_dir, out, **overrides) -> TrainConfig:
    values = dict(model_dir=str(model_dir), output_dir=str(out), n_epochs=4, batch_size=2, learning_rate=1e-2,
                  lora_rank=8, seed=3, bf16=False, log_every=1)
    values.update(overrides)
    return TrainConfig(**values)


def give_lora_b_values(model) -> None:
    """LoRA B starts at zero, which hides LoRA from the outputs and A from the gradients: give it values to check,
    the same in every model of the same architecture."""
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.manual_seed(zlib.crc32(name.encode()))  # not hash(): it changes from process to process
            parameter.data.normal_(0, 0.05)


def adapter_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_loss_decreases_and_adapters_are_peft_folders(tiny_model_dir, dataset, tmp_path):
    metrics, checkpoints = [], []
    hooks = Hooks(on_metrics=metrics.append, on_checkpoint=lambda step, path, m: checkpoints.append((step, path)))
    result = run(config_for(tiny_model_dir, tmp_path, n_epochs=6), dataset, dataset, hooks)
    train = [m["train_loss"] for m in metrics if "tokens_per_second" in m]
    assert sum(train[-3:]) < sum(train[:3]) * 0.9
    valid = [m["valid_loss"] for m in metrics if "valid_loss" in m]
    assert len(valid) == 6 and valid[-1] < valid[0] * 0.9
    assert [step for step, _ in checkpoints] == [3, 6, 9, 12, 15, 18]
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-000012", "step-000015", "step-000018"]  # the last three epochs
    assert [p.parent.name for p in (tmp_path / "checkpoints").glob("*/trainer_state.pt")] == ["step-000018"]
    adapter = result.adapter_dir
    assert adapter.name == "step-000018" and result.steps == 18
    peft_config = json.loads((adapter / "adapter_config.json").read_text())
    assert peft_config["r"] == 8 and peft_config["peft_type"] == "LORA"
    weights = adapter_weights(adapter)
    assert weights and all("lora_" in name for name in weights)  # only the adapter is saved
    assert result.trained_tokens == sum(len(e.input_ids) for e in dataset) * 6  # no padding counted


def test_resume_after_pause_ends_where_an_uninterrupted_run_does(tiny_model_dir, dataset, tmp_path):
    straight = run(config_for(tiny_model_dir, tmp_path / "straight"), dataset)

    polls = {"n": 0}

    def pause_after_five_steps():
        polls["n"] += 1
        return "pause" if polls["n"] == 6 else None

    interrupted = tmp_path / "interrupted"
    paused = run(config_for(tiny_model_dir, interrupted), dataset, hooks=Hooks(should_stop=pause_after_five_steps))
    assert paused.stopped == "pause" and paused.steps == 5
    assert latest_checkpoint(interrupted).name == "step-000005"  # mid-epoch: epoch 2, batch 2 of 3
    resumed = run(config_for(tiny_model_dir, interrupted), dataset)
    assert resumed.steps == straight.steps == 12
    assert resumed.trained_tokens == straight.trained_tokens
    expected, actual = adapter_weights(straight.adapter_dir), adapter_weights(resumed.adapter_dir)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)


def test_a_base_loaded_ahead_trains_exactly_as_one_loaded_in_the_run(tiny_model_dir, dataset, tmp_path):
    """What a runner started ahead of its job does (jobs/runner.py preload): load_base long before run."""
    from tunehouse.train.lora_sft import load_base

    loaded_here = run(config_for(tiny_model_dir, tmp_path / "here"), dataset)
    base = load_base(str(tiny_model_dir))
    torch.rand(100)  # random numbers drawn in between do not matter: the run seeds before LoRA's init
    loaded_ahead = run(config_for(tiny_model_dir, tmp_path / "ahead"), dataset, base=base)
    expected, actual = adapter_weights(loaded_here.adapter_dir), adapter_weights(loaded_ahead.adapter_dir)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(actual[name], expected[name]) for name in expected)


def test_cancel_stops_without_saving(tiny_model_dir, dataset, tmp_path):
    result = run(config_for(tiny_model_dir, tmp_path), dataset, hooks=Hooks(should_stop=lambda: "cancel"))
    assert result.stopped == "cancel" and result.steps == 0 and latest_checkpoint(tmp_path) is None


def test_schedule_and_batches_are_deterministic(dataset):
    lrs = [get_lr(step, 10, 2, 1.0) for step in range(10)]
    assert lrs[:2] == [0.5, 1.0] and lrs[-1] == pytest.approx(0.125) and lrs == sorted(lrs[:2]) + lrs[2:]
    assert make_batches(dataset, 2, seed=1, epoch=0) == make_batches(dataset, 2, seed=1, epoch=0)
    assert make_batches(dataset, 2, seed=1, epoch=0) != make_batches(dataset, 2, seed=1, epoch=1)
    assert sorted(i for batch in make_batches(dataset, 4, 1, 0) for i in batch) == list(range(len(dataset)))


def test_full_fine_tuning_trains_every_weight_and_resumes_exactly(tiny_model_dir, dataset, tmp_path):
    from transformers import AutoModelForCausalLM

    straight = run(config_for(tiny_model_dir, tmp_path / "straight", full=True, learning_rate=1e-3), dataset)
    folder = straight.adapter_dir
    assert (folder / "model.safetensors").exists() and not (folder / "adapter_config.json").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    tuned = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    assert not torch.equal(base["model.layers.0.mlp.up_proj.weight"], tuned["model.layers.0.mlp.up_proj.weight"])

    polls = {"n": 0}

    def pause_once():
        polls["n"] += 1
        return "pause" if polls["n"] == 4 else None

    interrupted = tmp_path / "interrupted"
    run(config_for(tiny_model_dir, interrupted, full=True, learning_rate=1e-3), dataset, hooks=Hooks(should_stop=pause_once))
    resumed = run(config_for(tiny_model_dir, interrupted, full=True, learning_rate=1e-3), dataset)
    again = AutoModelForCausalLM.from_pretrained(resumed.adapter_dir).state_dict()
    for name, tensor in tuned.items():
        torch.testing.assert_close(again[name], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_bf16_base_gives_the_fp32_loss_and_lora_gradients(tiny_model_dir, dataset, tmp_path, dropout):
    """Frozen weights in bf16 (LoraOnBf16Base) against the plain fp32 PEFT model: same loss and LoRA
    gradients up to bf16 rounding of the base products, and the same adapter names and files."""
    from tunehouse.train.lora_sft import collate, load_model, loss_step

    config = config_for(tiny_model_dir, tmp_path, lora_dropout=dropout)
    results = {}
    for bf16 in (False, True):
        model = load_model(config, bf16=bf16)
        give_lora_b_values(model)
        torch.manual_seed(7)  # the same dropout masks in both runs
        loss, count, _ = loss_step(model, collate(dataset, [0, 1, 2, 3], model.config.pad_token_id))
        (loss / count).backward()
        results[bf16] = (float(loss / count), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    (loss32, grads32), (loss16, grads16) = results[False], results[True]
    assert grads16.keys() == grads32.keys() and any("lora_A" in name for name in grads16)
    assert loss16 == pytest.approx(loss32, rel=2e-2)
    for name, grad in grads32.items():
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), grads16[name].flatten(), dim=0)
        assert cosine > 0.95, name  # the tiny model's large random weights make bf16 rounding show


@pytest.mark.parametrize("same_input", [True, False])
def test_lora_on_bf16_base_function_matches_autograd_of_the_same_formula(same_input):
    from tunehouse.train.lora_sft import LoraOnBf16Base

    torch.manual_seed(0)
    x = torch.randn(3, 5, 16, requires_grad=True)
    x_lora = x if same_input else torch.nn.functional.dropout(x, 0.3)
    weight = torch.randn(24, 16).to(torch.bfloat16)
    a, b = torch.randn(4, 16, requires_grad=True), torch.randn(24, 4, requires_grad=True)
    out = LoraOnBf16Base.apply(x, x_lora, weight, None, a, b, 0.5)
    reference = (x.to(torch.bfloat16) @ weight.t()).float() + 0.5 * (x_lora @ a.t()) @ b.t()
    upstream = torch.randn_like(reference)
    grads = torch.autograd.grad((out * upstream).sum(), (x, a, b), retain_graph=True)
    expected = torch.autograd.grad((reference * upstream).sum(), (x, a, b))
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)  # the base input gradient runs in bf16


def test_a_batch_split_into_row_groups_gives_the_same_update(tiny_model_dir, dataset, tmp_path):
    """micro_batch_tokens bounds memory only: one row at a time trains the weights a whole batch does."""
    whole = run(config_for(tiny_model_dir, tmp_path / "whole", n_epochs=2, batch_size=3), dataset, None, Hooks())
    rows = run(config_for(tiny_model_dir, tmp_path / "rows", n_epochs=2, batch_size=3, micro_batch_tokens=1),
               dataset, None, Hooks())
    expected, got = adapter_weights(whole.adapter_dir), adapter_weights(rows.adapter_dir)
    assert whole.trained_tokens == rows.trained_tokens
    # sums in another order differ in the last bits, which Adam can lift to ~1e-5 where a gradient is near
    # zero (seen with AVX2's fp32 kernels); a lost or doubled row group moves weights by a good part of a step
    # (the learning rate, 1e-2)
    for name, weight in expected.items():
        torch.testing.assert_close(got[name], weight, rtol=1e-4, atol=1e-4)


def test_two_lanes_train_the_weights_one_lane_does(tiny_model_dir, dataset, tmp_path):
    """Lanes change how a batch's row groups are scheduled (two threads at once), not the update."""
    one = run(config_for(tiny_model_dir, tmp_path / "one", n_epochs=2, batch_size=4, lanes=1), dataset, None, Hooks())
    metrics = []
    two = run(config_for(tiny_model_dir, tmp_path / "two", n_epochs=2, batch_size=4, lanes=2), dataset, None,
              Hooks(on_metrics=metrics.append))
    assert one.trained_tokens == two.trained_tokens
    assert [m["train_loss"] for m in metrics] == pytest.approx([h["train_loss"] for h in one.history], rel=1e-4)
    expected, got = adapter_weights(one.adapter_dir), adapter_weights(two.adapter_dir)
    for name, weight in expected.items():
        torch.testing.assert_close(got[name], weight, rtol=1e-4, atol=1e-5)


def test_validation_in_row_groups_gives_the_whole_set_loss(tiny_model_dir, dataset):
    """evaluate bounds its groups by tokens (long validation examples would not fit at once), not the loss."""
    from tunehouse.train.lora_sft import evaluate, load_model

    model = load_model(config_for(tiny_model_dir, "unused"))
    one_row_at_a_time = evaluate(model, dataset, max_tokens=1, pad_id=0)
    all_at_once = evaluate(model, dataset, max_tokens=100_000, pad_id=0)
    assert one_row_at_a_time == pytest.approx(all_at_once, rel=1e-5)
    assert model.training  # left in training mode


def test_head_in_chunks_gives_the_loss_and_gradient_of_one_pass(tiny_model_dir, tokenizer):
    """loss_step sends the loss positions through the vocabulary head HEAD_ROWS at a time: the summed loss,
    the right predictions and the gradients are those of the whole head at once."""
    from tunehouse.train import lora_sft

    long_answer = " ".join(f"word{i}" for i in range(80))
    examples = [render_chat([{"role": "user", "content": f"List {n}."}, {"role": "assistant", "content": long_answer}],
                            tokenizer) for n in range(3)]
    batch = lora_sft.collate(examples, [0, 1, 2], pad_id=0)
    assert int(batch["loss_mask"].sum()) > 2 * lora_sft.HEAD_ROWS
    results = []
    for head_rows in (lora_sft.HEAD_ROWS, 100_000):
        model = lora_sft.load_model(config_for(tiny_model_dir, "unused"))
        give_lora_b_values(model)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(lora_sft, "HEAD_ROWS", head_rows)
            loss, count, right = lora_sft.loss_step(model, batch)
        loss.backward()
        results.append((float(loss), count, right, [p.grad for p in model.parameters() if p.requires_grad]))
    (chunked_loss, *chunked_counts, chunked_grads), (whole_loss, *whole_counts, whole_grads) = results
    assert chunked_loss == pytest.approx(whole_loss, rel=1e-5) and chunked_counts == whole_counts
    for chunked, whole in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(chunked, whole, rtol=1e-3, atol=1e-6)  # bf16 head: sums in another order


def test_head_cross_entropy_is_cross_entropy_over_the_head_with_argmax_counted():
    """HeadCrossEntropy against its definition: F.cross_entropy of h W^T + b summed, the rows whose argmax
    is their target, and gradients for the rows, the head and its bias that gradcheck accepts."""
    from tunehouse.train.lora_sft import HeadCrossEntropy

    torch.manual_seed(0)
    hidden = torch.randn(40, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(300, dtype=torch.float64, requires_grad=True)
    logits = torch.nn.functional.linear(hidden, weight, bias)
    targets = torch.randint(0, 300, (40,))
    targets[::3] = logits[::3].argmax(-1)  # a third of the rows right
    loss, right = HeadCrossEntropy.apply(hidden, weight, bias, targets)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
    expected_right = int((logits.argmax(-1) == targets).sum())
    assert expected_right >= 14 and int(right) == expected_right
    assert torch.autograd.gradcheck(lambda h, w, b: HeadCrossEntropy.apply(h, w, b, targets)[0], (hidden, weight, bias))


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
def test_compact_llama_forward_matches_transformers_layers(tiny_model_dir, dataset, tmp_path, bf16):
    """train/llama_body.py against transformers' own layers with the same base (in bf16, LoraOnBf16Base; in
    fp32, PEFT's layers): the same loss and LoRA gradients, on a right-padded batch of different lengths."""
    from tunehouse.train.lora_sft import collate, load_model, loss_step

    reference = load_model(config_for(tiny_model_dir, tmp_path, compact_forward=False), bf16=bf16)
    compact = load_model(config_for(tiny_model_dir, tmp_path), bf16=bf16)
    assert "forward" in vars(compact.get_base_model().model) and "forward" not in vars(reference.get_base_model().model)
    batch = collate(dataset, [0, 1, 2, 3, 4, 5], pad_id=0)
    assert not bool(batch["attention_mask"].all())  # padding in the batch
    results = []
    for model in (reference, compact):
        give_lora_b_values(model)
        loss, count, right = loss_step(model, batch)
        loss.backward()
        results.append((float(loss), right, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (loss_hf, right_hf, grads_hf), (loss_compact, right_compact, grads_compact) = results
    assert loss_compact == pytest.approx(loss_hf, rel=1e-3 if bf16 else 1e-5) and right_compact == right_hf
    assert grads_compact.keys() == grads_hf.keys()
    for name, grad in grads_hf.items():
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), grads_compact[name].flatten(), dim=0)
        assert cosine > (0.999 if bf16 else 0.99999), (name, float(cosine))


def test_compact_forward_pieces_match_their_definitions():
    """RMSNorm, SwiGLU and attention (with the rotation) of train/llama_body.py: the forward of their
    definition, and a backward that gradcheck accepts (float64)."""
    from tunehouse.train.llama_body import CausalSelfAttention, RMSNorm, SwiGLU

    torch.manual_seed(0)
    x = torch.randn(6, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(16, dtype=torch.float64)
    torch.testing.assert_close(RMSNorm.apply(x, weight, 1e-5),
                               torch.nn.functional.rms_norm(x, (16,), weight, 1e-5))
    assert torch.autograd.gradcheck(lambda x: RMSNorm.apply(x, weight, 1e-5), (x,))
    gate_up = torch.randn(6, 32, dtype=torch.float64, requires_grad=True)
    gate, up = gate_up.chunk(2, dim=-1)
    torch.testing.assert_close(SwiGLU.apply(gate_up), torch.nn.functional.silu(gate) * up)
    assert torch.autograd.gradcheck(SwiGLU.apply, (gate_up,))
    batch, steps, heads, kv_heads, dim = 2, 5, 4, 2, 8
    qkv = torch.randn(batch * steps, (heads + 2 * kv_heads) * dim, dtype=torch.float64, requires_grad=True)
    angles = torch.randn(steps, 1, dim // 2, dtype=torch.float64)
    parts = qkv.view(batch, steps, heads + 2 * kv_heads, dim)
    half = dim // 2
    rotated_half = torch.cat([-parts[..., half:], parts[..., :half]], dim=-1)  # transformers' rotate_half
    rotated = (parts * angles.cos().repeat(1, 1, 2) + rotated_half * angles.sin().repeat(1, 1, 2)).transpose(1, 2)
    q, k, v = rotated[:, :heads], rotated[:, heads : heads + kv_heads], parts.transpose(1, 2)[:, heads + kv_heads :]
    group = heads // kv_heads  # transformers' repeat_kv: query head h reads key head h // group
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), is_causal=True)
    attended = CausalSelfAttention.apply(qkv, angles.cos(), angles.sin(), batch, heads, kv_heads)
    torch.testing.assert_close(attended, expected.transpose(1, 2).reshape(batch * steps, heads * dim))
    assert torch.autograd.gradcheck(
        lambda qkv: CausalSelfAttention.apply(qkv, angles.cos(), angles.sin(), batch, heads, kv_heads), (qkv,))
