"""The serving decoder against transformers/PEFT: greedy tokens equal, with and without an adapter, alone or
batched with other sequences (each row its own length and adapter)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

from tunehouse.data.render import render_chat
from tunehouse.serve.engine import SamplingParams, _detokenize, _Sequence, sample
from tunehouse.cpu import native_bf16
from tunehouse.serve import kernels
from tunehouse.serve.llama import ADAPTED, INT4_GROUP, LlamaDecoder, _on_int4_grid, _on_int8_grid, _Projection
from tunehouse.train.lora_sft import TrainConfig, run
from safetensors.torch import save_file


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tokenizer, tmp_path_factory):
    examples = [render_chat([{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": w}], tokenizer)
                for w in ("red", "blue", "green", "white")]
    out = tmp_path_factory.mktemp("adapter")
    config = TrainConfig(model_dir=str(tiny_model_dir), output_dir=str(out), n_epochs=3, batch_size=2,
                         learning_rate=1e-2, bf16=False, seed=1)
    return run(config, examples).adapter_dir


def reference(model, prompt: list[int], steps: int) -> list[int]:
    with torch.no_grad():
        output = model.generate(torch.tensor([prompt]), max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                                pad_token_id=0, eos_token_id=None)
    return output[0, len(prompt):].tolist()


def ours(decoder: LlamaDecoder, prompts: list[list[int]], adapters: list, steps: int) -> list[list[int]]:
    tokens, lengths, outputs = [], [], []
    for slot, (prompt, adapter) in enumerate(zip(prompts, adapters)):
        tokens.append(int(decoder.prefill([slot], [prompt], [adapter])[0].argmax()))
        lengths.append(len(prompt))
        outputs.append([tokens[-1]])
    for _ in range(steps - 1):
        logits = decoder.decode(list(range(len(prompts))), tokens, lengths, adapters)
        tokens = [int(row.argmax()) for row in logits]
        lengths = [length + 1 for length in lengths]
        for output, token in zip(outputs, tokens):
            output.append(token)
    return outputs


@pytest.mark.parametrize("steps_in", ["C", "torch"])
def test_greedy_tokens_equal_transformers_and_peft_in_one_mixed_batch(tiny_model_dir, adapter_dir, tokenizer, steps_in,
                                                                      monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if steps_in == "torch":
        monkeypatch.setattr(kernels, "library", lambda: None)
    elif kernels.library() is None:
        pytest.skip("the C kernels need an AVX2 or AVX-512 CPU and a C compiler")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(adapter_dir)).eval()
    decoder = LlamaDecoder(tiny_model_dir, slots=3, max_len=256)
    assert decoder.steps_in_c == (steps_in == "C")
    adapter = decoder.load_adapter("tuned", adapter_dir)
    short = render_chat([{"role": "user", "content": "Say red."}], tokenizer, add_generation_prompt=True).input_ids
    long = render_chat([{"role": "user", "content": "Say blue, then say it again please."}], tokenizer,
                       add_generation_prompt=True).input_ids
    got = ours(decoder, [short, long, short], [adapter, None, None], steps=12)
    assert got[0] == reference(tuned, short, 12)
    assert got[1] == reference(base, long, 12)
    assert got[2] == reference(base, short, 12)
    assert got[0] != got[2]  # the adapter really changes the answer


def test_sampling_is_repeatable_with_a_seed_and_honours_its_controls():
    logits = torch.tensor([1.0, 3.0, 2.0, 0.5])
    assert sample(logits, SamplingParams(temperature=0), {}, None) == (1, None, None)  # no logprobs asked for
    greedy = sample(logits, SamplingParams(temperature=0, top_logprobs=0), {}, None)
    assert greedy == (1, pytest.approx(float(torch.log_softmax(logits, -1)[1])), [])
    draws = lambda seed: [sample(logits, SamplingParams(temperature=1.0), {}, g)[0]  # noqa: E731
                          for g in [torch.Generator().manual_seed(seed)] for _ in range(20)]
    assert draws(7) == draws(7)
    assert {sample(logits, SamplingParams(top_p=0.5), {}, None)[0] for _ in range(20)} == {1}
    # top_p 0.8 keeps tokens 1 and 2 (probabilities 0.63 and 0.23 of 1) and never draws the others
    generator = torch.Generator().manual_seed(3)
    assert {sample(logits, SamplingParams(top_p=0.8), {}, generator)[0] for _ in range(200)} == {1, 2}
    assert sample(logits, SamplingParams(temperature=0, logit_bias={3: 100.0}), {}, None)[0] == 3
    assert sample(logits, SamplingParams(temperature=0, presence_penalty=2.0), {1: 1}, None)[0] == 2
    top = sample(logits, SamplingParams(temperature=0, top_logprobs=2), {}, None)[2]
    assert [token for token, _ in top] == [1, 2]


@pytest.mark.skipif(kernels.library() is None, reason="the C kernels run on AVX2 or AVX-512 CPUs with a C compiler")
def test_c_sampling_draws_the_inverse_cdf_token_of_each_row_alone_or_batched():
    generator = torch.Generator().manual_seed(0)
    vocab = 1000 + 3  # a partial last block and a tail past whole registers
    logits = torch.randn(6, vocab, generator=generator) * 4
    logits[2, 17] = logits[2, 900] = 50.0  # a tie: the first maximum
    temperatures = [0.7, 1.3, 0.0, 0.2, 1.0, 0.0]
    draws = [0.1, 0.5, 0.0, 0.999, 0.0, 0.0]
    tokens = kernels.sample_rows(logits, list(range(6)), temperatures, draws)
    for row, (temperature, draw) in enumerate(zip(temperatures, draws)):
        values = logits[row].double()
        if temperature == 0:
            assert tokens[row] == int(values.argmax())
            continue
        cumulative = torch.cumsum(torch.exp((values - values.max()) / temperature), 0)
        assert tokens[row] == int(torch.searchsorted(cumulative, draw * cumulative[-1], right=True))
    assert tokens[2] == 17
    assert [kernels.sample_rows(logits, [row], [temperatures[row]], [draws[row]])[0] for row in range(6)] == tokens
    assert kernels.sample_rows(logits, [4, 1], [1.0, 1.3], [0.0, 0.5]) == [tokens[4], tokens[1]]


def test_incremental_detokenizing_gives_the_full_decode_and_never_half_a_character(tokenizer):
    text = "Grüße aus Köln 🐉🔥 東京で会いましょう — naïve café, ok."
    tokens = tokenizer(text, add_special_tokens=False).input_ids
    sequence = _Sequence(request=None, slot=0, adapter=None, length=0, next_token=-1)
    seen = []
    for token in tokens:
        sequence.generated.append(token)
        seen.append(_detokenize(tokenizer, sequence))
        assert "\ufffd" not in seen[-1] and text.startswith(seen[-1])
    assert seen[-1] == text
    assert len(set(seen)) < len(tokens)  # some tokens held half a character and added nothing until completed


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int4", "fp32 without C", "int4 without C"])
def test_a_rows_logits_do_not_depend_on_the_rest_of_the_batch(default_model_dir, tokenizer, precision, monkeypatch):
    """Bit for bit, on the real model's shapes, for prompts run together and for decoding steps (oneDNN's
    bf16 kernels compute each row alike up to 32 rows, and longer products go in chunks of 32 rows; its fp32
    kernels from the blocked layout compute each row alike for any number of rows; the C kernels and torch's
    int4 kernel compute each row on its own; torch's decoding steps attend over buckets of 64 positions).
    "without C": as on a machine with no C compiler."""
    if precision.endswith(" without C"):
        monkeypatch.setattr(kernels, "library", lambda: None)
        precision = precision.split()[0]
    decoder = LlamaDecoder(default_model_dir, slots=10, max_len=256, precision=precision)
    prompts = [render_chat([{"role": "user", "content": "hi " * n}], tokenizer, add_generation_prompt=True).input_ids
               for n in (1, 40, 90, 7)]  # lengths in different attention buckets, padded together
    prompts.append(prompts[3][:-5] + [tokenizer.convert_tokens_to_ids("yes")] + prompts[3][-4:])  # same length
    rows = len(prompts)
    first_together = decoder.prefill(list(range(rows)), prompts, [None] * rows)
    lengths = [len(p) for p in prompts]
    together = decoder.decode(list(range(rows)), [5 + row for row in range(rows)], lengths, [None] * rows)
    for row, prompt in enumerate(prompts):
        first_alone = decoder.prefill([rows + row], [prompt], [None])
        alone = decoder.decode([rows + row], [5 + row], [lengths[row]], [None])
        assert torch.equal(first_alone[0], first_together[row])
        assert torch.equal(alone[0], together[row])


@pytest.mark.skipif(kernels.library() is None, reason="the C kernels run on AVX2 or AVX-512 CPUs with a C compiler")
def test_all_layers_in_one_call_give_the_bits_of_one_call_per_operation(default_model_dir, tokenizer):
    decoder = LlamaDecoder(default_model_dir, slots=4, max_len=256, precision="int4")
    table = decoder.layer_table
    assert table is not None  # int4 products through lowbit.c, no biases
    prompts = [render_chat([{"role": "user", "content": "hi " * n}], tokenizer, add_generation_prompt=True).input_ids
               for n in (1, 30)]
    outputs = {}
    for one_call in (True, False):
        decoder.layer_table = table if one_call else None
        first = decoder.prefill([0, 1], prompts, [None, None])
        step = decoder.decode([0, 1, 1], [5, 6, 7], [len(prompts[0]), len(prompts[1]), len(prompts[1]) + 1],
                              [None] * 3)  # two rows of one slot, as a guess runs
        outputs[one_call] = (first, step)
    assert torch.equal(outputs[True][0], outputs[False][0]) and torch.equal(outputs[True][1], outputs[False][1])


def random_adapter(folder, model_dir, seed: int, rank: int = 8):
    """A PEFT folder with LoRA weights of `rank` on every projection of every layer, drawn at random: large
    enough to change the answers."""
    config = json.loads((model_dir / "config.json").read_text())
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    head_dim = hidden // config["num_attention_heads"]
    widths = {"q_proj": (hidden, hidden), "k_proj": (hidden, config["num_key_value_heads"] * head_dim),
              "v_proj": (hidden, config["num_key_value_heads"] * head_dim), "o_proj": (hidden, hidden),
              "gate_proj": (hidden, inner), "up_proj": (hidden, inner), "down_proj": (inner, hidden)}
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        for proj in ADAPTED:
            group = "mlp" if proj in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            key = f"base_model.model.model.layers.{layer}.{group}.{proj}"
            fan_in, fan_out = widths[proj]
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, fan_in, generator=generator) / fan_in ** 0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(fan_out, rank, generator=generator) * 0.02
    folder.mkdir()
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 2 * rank}))
    return folder


@pytest.mark.skipif(kernels.library() is None, reason="the C kernels run on AVX2 or AVX-512 CPUs with a C compiler")
@pytest.mark.parametrize("precision", ["int4", "fp32"])  # all layers in one call; one call per operation
def test_rows_with_adapters_get_the_same_bits_alone_or_among_others(default_model_dir, tokenizer, precision,
                                                                   tmp_path):
    """decoding.c adds an adapter's deltas row by row: a row's numbers do not depend on how many other rows use
    its adapter (torch's F.linear for the few rows of a LoRA product rounds by their number)."""
    decoder = LlamaDecoder(default_model_dir, slots=8, max_len=256, precision=precision)
    assert (decoder.layer_table is not None) == (precision == "int4")
    first, second = (decoder.load_adapter(str(seed), random_adapter(tmp_path / str(seed), default_model_dir, seed))
                     for seed in (1, 2))
    prompts = [render_chat([{"role": "user", "content": "hi " * n}], tokenizer, add_generation_prompt=True).input_ids
               for n in (1, 12, 5, 30)]
    adapters = [first, first, second, None]
    starts = decoder.prefill(list(range(4)), prompts, adapters)
    lengths = [len(prompt) for prompt in prompts]
    steps = decoder.decode([0, 1, 1, 2, 3], [5, 6, 7, 8, 9], [lengths[0], lengths[1], lengths[1] + 1, lengths[2],
                                                              lengths[3]], [first, first, first, second, None])
    for row, (prompt, adapter) in enumerate(zip(prompts, adapters)):
        alone = decoder.prefill([4 + row], [prompt], [adapter])
        assert torch.equal(alone[0], starts[row])
        step = decoder.decode([4 + row], [5 + row + (row > 1)], [lengths[row]], [adapter])
        assert torch.equal(step[0], steps[row + (row > 1)])
    assert not torch.equal(starts[0], decoder.prefill([7], [prompts[0]], [None])[0])  # the adapter matters
    if precision == "int4":  # and one call for all layers adds the deltas as one call per operation does
        decoder.layer_table = None
        assert torch.equal(decoder.prefill(list(range(4)), prompts, adapters), starts)


def test_int4_weights_are_the_4bit_models_own_and_give_its_products():
    """A weight whose groups of 32 are 16 evenly spaced values (as a Q4_1 GGUF's are) is taken exactly, and
    the int4 kernel then computes x @ W.T up to the bf16 rounding of input, output and each group's scale."""
    generator = torch.Generator().manual_seed(0)
    integers = torch.randint(0, 16, (96, 4, INT4_GROUP), generator=generator).float()
    step = torch.rand(96, 4, 1, generator=generator) * 0.01 + 0.001
    minimum = -torch.rand(96, 4, 1, generator=generator) * 0.05
    integers[:, :, 0], integers[:, :, 1] = 0, 15  # each group spans its whole range, as Q4_1 quantizes
    weight = (integers * step + minimum).view(96, 4 * INT4_GROUP)
    assert _on_int4_grid(weight)
    assert not _on_int4_grid(weight + torch.randn(weight.shape, generator=generator) * 1e-4)

    projection = _Projection(weight, None, "int4", native_bf16())
    x = torch.randn(5, 4 * INT4_GROUP, generator=generator)
    exact = x @ weight.T
    decoded = projection(x, decoding=True).float()
    assert (decoded - exact).abs().max() < 0.02 * exact.abs().max()
    if projection.lowbit_weight is not None:  # lowbit.c: the weight exactly; the rows in bf16 with AMX tiles
        rows = x.bfloat16().float() if kernels.uses_amx() else x
        torch.testing.assert_close(projection(x), rows @ weight.T, rtol=1e-5, atol=1e-5)
    elif native_bf16():
        assert not torch.equal(decoded, projection(x).float())  # decoding took torch's int4 kernel, prompts bf16
    else:  # bf16 products are slow without native bf16: prompts take the weight in fp32
        torch.testing.assert_close(projection(x), exact)


def test_fp32_products_give_a_row_alike_alone_or_among_any_others():
    """fp32 products give a row the same bits whatever number of rows it comes with and wherever it sits among
    them (MKL's `F.linear` does not, below 12 rows), with a bias too."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(1536, 576, generator=generator) * 0.05  # the default model's MLP shape
    projection = _Projection(weight, torch.randn(1536, generator=generator), "fp32", native_bf16=False)
    x = torch.randn(300, 576, generator=generator)
    together = projection(x)
    torch.testing.assert_close(together, F.linear(x, weight, projection.bias))
    for rows in (*range(1, 14), 40):
        assert torch.equal(projection(x[100:100 + rows]), together[100:100 + rows]), rows


@pytest.fixture(params=["AMX tiles", "fp32 kernels"])
def lowbit_path(request):
    """lowbit.c's products through AMX tiles (where the CPU has them) or through its fp32 kernels."""
    if kernels.library() is None:
        pytest.skip("lowbit.c runs on AVX2 or AVX-512 CPUs with a C compiler")
    tiles = request.param == "AMX tiles"
    if tiles and not kernels.use_amx(True):
        pytest.skip("this CPU has no AMX tiles")
    kernels.use_amx(tiles)
    yield tiles
    kernels.use_amx(True)


@pytest.mark.parametrize("bits", [4, 8])
def test_lowbit_products_are_exact_and_give_a_row_alike_alone_or_among_any_others(bits, lowbit_path):
    """The kernel's products equal float64 products of the weight it holds (and of the rows rounded to bf16,
    with AMX tiles), to fp32 rounding, and a row gets the same bits alone or among any rows (the fp32
    kernels' registers-only path up to 6 rows and their expanded one beyond; tiles of 16 rows or fewer)."""
    generator = torch.Generator().manual_seed(0)
    shape = (96, 3 * INT4_GROUP)
    if bits == 4:
        integers = torch.randint(0, 16, shape, generator=generator).float()
        minimums = -torch.rand(96, 3, generator=generator)
    else:
        integers = torch.randint(-127, 128, shape, generator=generator).float()
        minimums = torch.zeros(96, 3)
    steps = torch.rand(96, 3, generator=generator) * 0.01
    weight = kernels.pack(integers, steps, minimums, bits)
    exact = (integers * steps.repeat_interleave(INT4_GROUP, 1) + minimums.repeat_interleave(INT4_GROUP, 1))
    x = torch.randn(40, shape[1], generator=generator)
    together = kernels.matmul(x, weight)
    rows_taken = x.bfloat16() if lowbit_path else x
    torch.testing.assert_close(together.double(), rows_taken.double() @ exact.double().T, rtol=1e-5, atol=1e-5)
    for first, rows in ((0, 1), (5, 2), (9, 6), (3, 7), (20, 13), (2, 17), (0, 40)):
        assert torch.equal(kernels.matmul(x[first:first + rows], weight), together[first:first + rows]), rows


def test_the_c_kernels_are_built_on_an_avx2_or_avx512_cpu_with_a_c_compiler():
    """The fast path is not silently lost: where it can be built (CI's machines), it is."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512") or not shutil.which(os.environ.get("CC", "cc")):
        pytest.skip("the C kernels need an AVX2 or AVX-512 CPU and a C compiler")
    assert kernels.library() is not None


@pytest.mark.skipif(kernels.library() is None, reason="the C kernels run on AVX2 or AVX-512 CPUs with a C compiler")
@pytest.mark.parametrize("head_dim, cache_dtype", [(64, torch.float32), (24, torch.float32), (64, torch.float16),
                                                    (24, torch.float16)])
def test_decoding_kernels_compute_what_torch_does(head_dim, cache_dtype):
    """decoding.c's attention (rotation and cache writes included), norm and SiLU equal torch's operations to
    fp32 rounding, for rows at different positions of their slots (whole blocks of 8 positions and not), with
    a head whose halves do or do not fill whole registers, over an fp32 or an fp16 cache (keys and values
    rounded into it as torch rounds); and each row's numbers are the same alone."""
    generator = torch.Generator().manual_seed(0)
    heads, kv_heads, max_len, slots = 6, 2, 80, 5
    positions, slot_index = torch.tensor([0, 7, 8, 41, 79]), torch.tensor([3, 0, 4, 1, 2])
    cache_k = torch.randn(slots, kv_heads, max_len, head_dim, generator=generator).to(cache_dtype)
    cache_v = torch.randn(cache_k.shape, generator=generator).to(cache_dtype)
    qkv = torch.randn(len(positions), (heads + 2 * kv_heads) * head_dim, generator=generator)
    angles = torch.rand(max_len, head_dim, generator=generator) * 6
    cos, signed_sin = angles.cos(), angles.sin()
    expected_k, expected_v = cache_k.clone(), cache_v.clone()

    def rotate(x, position):
        swapped = torch.cat([x[..., head_dim // 2:], x[..., :head_dim // 2]], dim=-1)
        return x * cos[position] + swapped * signed_sin[position]

    expected = []
    for row, (position, slot) in enumerate(zip(positions.tolist(), slot_index.tolist())):
        q, k, v = qkv[row].split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim])
        expected_k[slot, :, position] = rotate(k.view(kv_heads, head_dim), position)
        expected_v[slot, :, position] = v.view(kv_heads, head_dim)
        attended = F.scaled_dot_product_attention(
            rotate(q.view(heads, head_dim), position)[:, None], expected_k[slot, :, :position + 1].float(),
            expected_v[slot, :, :position + 1].float(), enable_gqa=True)
        expected.append(attended.reshape(-1))
    together = kernels.attend(qkv, cos, signed_sin, positions, slot_index, cache_k, cache_v, heads)
    torch.testing.assert_close(together, torch.stack(expected))
    assert torch.equal(cache_k, expected_k) and torch.equal(cache_v, expected_v)
    for row in range(len(positions)):
        alone = kernels.attend(qkv[row:row + 1], cos, signed_sin, positions[row:row + 1], slot_index[row:row + 1],
                               cache_k, cache_v, heads)
        assert torch.equal(alone[0], together[row])

    x, delta, weight = (torch.randn(3, 96, generator=generator) for _ in range(3))
    residual, normed = x.clone(), torch.empty_like(x)
    kernels.add_rms_norm(residual, delta, weight[0], normed, 1e-5)
    assert torch.equal(residual, x + delta)
    torch.testing.assert_close(normed, F.rms_norm(x + delta, (96,), weight[0], 1e-5))
    gate_up = torch.randn(3, 2 * 40, generator=generator) * 30  # far into SiLU's tails too
    torch.testing.assert_close(kernels.silu_mul(gate_up), F.silu(gate_up[:, :40]) * gate_up[:, 40:])


@pytest.mark.parametrize("kernel", ["lowbit.c", "torch's int4, two halves"])
def test_an_8bit_head_gives_its_products_alike_for_any_rows(kernel, monkeypatch):
    """A weight whose groups of 32 are a step times integers -127..127 (GGUF's Q8_0, the default model's
    embedding) is taken exactly, as 8-bit integers for lowbit.c or as two int4 weights for torch's kernel, and
    gives x @ W.T up to bf16 rounding, each row the same whatever else is in the batch."""
    if kernel != "lowbit.c":
        monkeypatch.setattr(kernels, "library", lambda: None)
    elif kernels.library() is None:
        pytest.skip("lowbit.c needs an AVX2 or AVX-512 CPU and a C compiler")
    generator = torch.Generator().manual_seed(0)
    integers = torch.randint(-127, 128, (96, 4, INT4_GROUP), generator=generator).float()
    integers[:, :, 0] = 127  # each group's largest magnitude sets its step, as Q8_0 quantizes
    weight = (integers * (torch.rand(96, 4, 1, generator=generator) * 0.001)).view(96, 4 * INT4_GROUP)
    assert _on_int8_grid(weight)
    assert not _on_int8_grid(weight + torch.randn(weight.shape, generator=generator) * 1e-5)

    projection = _Projection(weight, None, "int8", native_bf16())
    x = torch.randn(7, 4 * INT4_GROUP, generator=generator)
    exact = x @ weight.T
    together = projection(x)
    assert (together - exact).abs().max() < 0.01 * exact.abs().max()
    assert all(torch.equal(projection(x[row:row + 1])[0], together[row]) for row in range(7))


def test_auto_precision_takes_int4_for_the_default_model_and_bf16_for_full_precision_weights(default_model_dir,
                                                                                          tiny_model_dir):
    native = native_bf16()
    assert LlamaDecoder(default_model_dir, slots=1, max_len=64, precision="auto").precision == "int4"
    assert LlamaDecoder(tiny_model_dir, slots=1, max_len=64, precision="auto").precision == (
        "bf16" if native else "fp32")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_model_with_attention_biases_decodes_like_transformers(tmp_path, precision):
    """Qwen2's q, k and v projections carry biases: in fp32 they widen bf16 products back to fp32, which the
    cache and attention must narrow again."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if precision == "bf16" and not native_bf16():
        pytest.skip("bf16 products need a CPU with native bf16")
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         initializer_range=0.3, use_sliding_window=False)
    model = Qwen2ForCausalLM(config).eval()
    for layer in model.model.layers:  # transformers initialises biases to zero
        for projection in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
            torch.nn.init.normal_(projection.bias, std=0.5)
    model.save_pretrained(tmp_path)
    decoder = LlamaDecoder(tmp_path, slots=2, max_len=128, precision=precision)
    prompts = [[5, 17, 99, 3, 42], [7, 8, 9]]
    got = ours(decoder, prompts, [None, None], steps=10)
    if precision == "fp32":
        assert got == [reference(model, prompt, 10) for prompt in prompts]
    else:  # bf16 rounds: the same answers batched or alone is what holds exactly
        alone = LlamaDecoder(tmp_path, slots=2, max_len=128, precision=precision)
        assert got[1] == ours(alone, prompts[1:], [None], steps=10)[0]
