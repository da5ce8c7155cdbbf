"""The LoRA SFT recipe on a tiny randomly initialised Llama (real tokenizer): it learns, it saves PEFT
adapters, and a resumed run ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json

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
