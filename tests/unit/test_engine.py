"""The engine's scheduling on a tiny model: prompts that share a prefix run it once, greedy answers guess
ahead, and every answer is what it would be alone, one token a step. In fp32, whose decoding steps run in
decoding.c on any CPU with the C kernels (bf16 products, which the tiny model takes on `auto` where the CPU
computes bf16 natively, keep torch's operations)."""

from __future__ import annotations

import threading

import pytest

from tunehouse.serve import engine as engine_module
from tunehouse.serve import kernels
from tunehouse.serve.engine import Engine, Finished, GenerationRequest, SamplingParams, TokenOutput


def fp32_engine(tokenizer) -> Engine:
    return Engine(lambda _: tokenizer, slots=4, max_len=256, precision="fp32")


def answers(engine: Engine, model_dir, prompts: list[list[int]], max_tokens: int = 8,
            prediction: list[int] | None = None) -> list[tuple[list[int], Finished]]:
    """Greedy answers of `max_tokens` to prompts submitted together: ((token id, its logprob) each, the
    Finished) for each prompt; the logprobs show any difference in the numbers, not only in the choices."""
    results = [([], None) for _ in prompts]
    done = threading.Semaphore(0)

    def emitter(index: int):
        def emit(output):
            if isinstance(output, TokenOutput) and output.token_id is not None:
                results[index][0].append((output.token_id, output.logprob))
            elif isinstance(output, (Finished, Exception)):  # an exception is raised below, not in the engine
                results[index] = (results[index][0], output)
                done.release()
        return emit

    for index, prompt in enumerate(prompts):
        engine.submit(GenerationRequest(model_dir, None, prompt, SamplingParams(max_tokens=max_tokens, temperature=0, top_logprobs=0,
                                                                       prediction=prediction or []),
                                        emitter(index)))
    for _ in prompts:
        assert done.acquire(timeout=60)
    for _, outcome in results:
        if isinstance(outcome, Exception):
            raise outcome
    return results


def test_prompts_sharing_a_prefix_run_it_once_and_answer_as_they_do_alone(tiny_model_dir, tokenizer):
    if kernels.library() is None:
        pytest.skip("reusing a prefix needs the C kernels (an AVX2 or AVX-512 CPU and a C compiler)")
    preamble = tokenizer("You are a terse assistant. Answer every question in one short line, please.").input_ids
    prompts = [preamble + tokenizer(f" Question {i}: what comes after {i}?").input_ids for i in range(3)]
    assert len(preamble) >= 16
    alone = [answers(fp32_engine(tokenizer), tiny_model_dir, [prompt])[0]
             for prompt in prompts]
    assert all(finished.cached_tokens == 0 for _, finished in alone)

    engine = fp32_engine(tokenizer)
    first, again = (answers(engine, tiny_model_dir, [prompts[0]])[0] for _ in range(2))
    assert again[1].cached_tokens == len(prompts[0]) - 1  # all but the last token, which runs for its logits
    assert first[0] == again[0] == alone[0][0]

    together = answers(engine, tiny_model_dir, prompts[1:] + prompts[1:2])
    assert [tokens for tokens, _ in together] == [alone[1][0], alone[2][0], alone[1][0]]
    shared = lambda a, b: next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)  # noqa: E731
    assert shared(prompts[0], prompts[1]) > len(preamble)  # " Question" too
    assert [finished.cached_tokens for _, finished in together] == [  # from the slot of prompts[0]'s answers
        shared(prompts[0], prompts[1]), shared(prompts[0], prompts[2]),
        len(prompts[1]) - 1]  # the third waited a round for the first's prefill


def test_greedy_guesses_change_the_steps_not_the_answer(tiny_model_dir, tokenizer, monkeypatch):
    if kernels.library() is None:
        pytest.skip("guessing ahead needs the C kernels (an AVX2 or AVX-512 CPU and a C compiler)")
    prompts = [tokenizer(text).input_ids for text in ("Say it twice: blue whale, blue whale.", "Count: 1 2 3 4 5")]
    one_by_one = lambda **kwargs: [answers(fp32_engine(tokenizer), tiny_model_dir,  # noqa: E731
                                           [prompt], max_tokens=24, **kwargs)[0] for prompt in prompts]
    with monkeypatch.context() as patched:
        patched.setattr(engine_module, "SPECULATION_ROWS", 0)  # no room for guesses: one token a step
        plain = one_by_one()
    assert all(finished.accepted_guesses == finished.rejected_guesses == 0 for _, finished in plain)

    answer = [token for token, _ in plain[0][0]]
    right = one_by_one(prediction=answer)  # the answer itself as the prediction: nearly every guess comes true
    assert [tokens for tokens, _ in right] == [tokens for tokens, _ in plain]
    assert right[0][1].accepted_guesses >= len(answer) // 2 and right[0][1].rejected_guesses <= 2

    wrong = one_by_one(prediction=answer[:6] + [token + 1 for token in answer[6:]])  # true, then never again
    assert [tokens for tokens, _ in wrong] == [tokens for tokens, _ in plain]
    assert wrong[0][1].rejected_guesses > 0

    together = answers(fp32_engine(tokenizer), tiny_model_dir, prompts, max_tokens=24,
                       prediction=answer)  # two rows of four: the first sequence guesses, in the same steps
    assert [tokens for tokens, _ in together] == [tokens for tokens, _ in plain]
    assert together[0][1].accepted_guesses > 0
