"""Chat and text completions with the real default model, through the real SDK (strict) and a real server."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import openai
import pytest

from tunehouse.serve import kernels

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TUTORIAL = b'{"prompt": "What is the capital of France?", "completion": " Paris"}\n{"prompt": "What is the capital of Norway?", "completion": " Oslo"}\n'


@pytest.fixture(scope="module")
def fine_tuned(server):
    """A fine-tuned model (and its checkpoints) made by a real job on this module's server."""
    client = server.client()
    file_id = client.files.create(file=TUTORIAL, purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(training_file=file_id, model="gpt-4o-mini-2024-07-18",
                                         hyperparameters={"n_epochs": 3}, suffix="capitals")
    deadline = time.monotonic() + 300
    while job.status not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
        job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    return job


def test_chat_with_base_and_alias(server, assert_matches_spec):
    client = server.client()
    for model in ("smollm2-135m-instruct", "gpt-4o-mini-2024-07-18"):
        answer = client.chat.completions.create(model=model, messages=QUESTION, temperature=0)
        assert answer.model == model and answer.id.startswith("chatcmpl-") and answer.object == "chat.completion"
        assert "Paris" in answer.choices[0].message.content and answer.choices[0].finish_reason == "stop"
        assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
        assert answer.system_fingerprint
    raw = httpx.post(f"{server.base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": QUESTION,
                                                                     "temperature": 0, "max_tokens": 4}, timeout=60)
    assert_matches_spec(raw.json(), "CreateChatCompletionResponse")
    assert raw.json()["choices"][0]["finish_reason"] == "length"


def test_streaming_chunks_usage_and_done(server):
    client = server.client()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    blocking = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, temperature=0)
    assert text == blocking.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == blocking.usage.completion_tokens
    if kernels.library() is not None:  # the same prompt again starts from the stream's cache (docs/serving.md)
        assert blocking.usage.prompt_tokens_details.cached_tokens == blocking.usage.prompt_tokens - 1
    raw = httpx.post(f"{server.base_url}/chat/completions",
                     json={"model": "gpt-4o-mini", "messages": QUESTION, "stream": True, "max_tokens": 3}, timeout=60)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_stop_n_seed_and_logprobs(server):
    client = server.client()
    counting = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    stopped = client.chat.completions.create(model="gpt-4o-mini", messages=counting, temperature=0, stop=["5"])
    assert "5" not in stopped.choices[0].message.content and stopped.choices[0].finish_reason == "stop"
    assert "4" in stopped.choices[0].message.content

    colour = [{"role": "user", "content": "Name a colour."}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=colour, n=3, seed=11, max_tokens=12)
    again = client.chat.completions.create(model="gpt-4o-mini", messages=colour, n=3, seed=11, max_tokens=12)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]

    scored = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, temperature=0, max_tokens=5,
                                            logprobs=True, top_logprobs=3)
    tokens = scored.choices[0].logprobs.content
    assert len(tokens) == 5 and all(len(t.top_logprobs) == 3 for t in tokens)
    assert "".join(t.token for t in tokens) == scored.choices[0].message.content
    assert tokens[0].logprob == max(t.logprob for t in tokens[0].top_logprobs)  # greedy picks the top token


def test_json_mode_answers_one_json_object(server):
    import json

    client = server.client()
    messages = [{"role": "user", "content": "Describe a cat as JSON with keys name and age."}]
    # greedy, and sampled with four seeds: a sampled 135M model may ramble inside the object until max_tokens
    # (which seeds do depends on the last bits of the CPU's arithmetic), but what ends is one JSON object
    finished = 0
    for options in ({"temperature": 0}, *({"seed": seed} for seed in range(1, 5))):
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=80,
                                                response_format={"type": "json_object"}, **options)
        choice = answer.choices[0]
        assert choice.message.content.lstrip().startswith("{")
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
            finished += 1
        else:
            assert choice.finish_reason == "length" and options != {"temperature": 0}
    assert finished >= 2
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, response_format={"type": "json_object"})
    assert err.value.body["param"] == "messages"


def test_structured_outputs_follow_the_schema_and_the_sdk_parses_them(server):
    from typing import Literal

    from pydantic import BaseModel

    class Capital(BaseModel):
        city: str
        country: Literal["France", "Norway", "Germany"]
        is_capital: bool

    client = server.client()
    for temperature, seed in ((0, None), (1.0, 1), (1.0, 2)):  # sampling, too, stays inside the schema
        answer = client.chat.completions.parse(model="gpt-4o-mini", messages=QUESTION, response_format=Capital,
                                               max_tokens=60, temperature=temperature, seed=seed)
        choice = answer.choices[0]
        assert choice.finish_reason == "stop" and isinstance(choice.message.parsed, Capital)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, response_format={
            "type": "json_schema", "json_schema": {"name": "code", "schema": {
                "type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}}})
    assert err.value.body["param"] == "response_format.json_schema.schema"
    assert "`pattern`" in err.value.body["message"]


def test_text_completions_feed_the_prompt_raw(server):
    client = server.client()
    completion = client.completions.create(model="gpt-4o-mini", prompt="The capital of France is", max_tokens=3,
                                           temperature=0)
    assert completion.object == "text_completion" and "Paris" in completion.choices[0].text
    # OpenAI's own completion chunks carry finish_reason null until the last, which the SDK's strict mode
    # refuses (its Completion type wants a reason); a loose client reads them as OpenAI's.
    loose = server.client(strict=False)
    streamed = "".join(c.choices[0].text for c in loose.completions.create(
        model="gpt-4o-mini", prompt="The capital of France is", max_tokens=3, temperature=0, stream=True) if c.choices)
    assert streamed == completion.choices[0].text


def test_fine_tuned_model_and_its_checkpoints_answer(server, fine_tuned):
    client = server.client()
    name = fine_tuned.fine_tuned_model
    assert name.startswith("ft:gpt-4o-mini-2024-07-18:default:capitals:")
    answer = client.completions.create(model=name, prompt="What is the capital of Norway?", max_tokens=8, temperature=0)
    assert answer.choices[0].text == " Oslo" and answer.choices[0].finish_reason == "stop"
    checkpoint = client.fine_tuning.jobs.checkpoints.list(fine_tuned.id).data[-1].fine_tuned_model_checkpoint
    assert client.completions.create(model=checkpoint, prompt="Hi", max_tokens=2).model == checkpoint
    chat = client.chat.completions.create(model=name, messages=QUESTION, max_tokens=10, temperature=0)
    assert chat.model == name
    listed = {m.id: m for m in client.models.list()}
    assert listed[name].owned_by == "default" and checkpoint in listed
    assert client.models.retrieve(name).id == name


def test_deleting_a_fine_tuned_model(server, fine_tuned):
    client = server.client()
    name = fine_tuned.fine_tuned_model
    with pytest.raises(openai.PermissionDeniedError):
        client.models.delete("gpt-4o-mini")
    deleted = client.models.delete(name)
    assert deleted.id == name and deleted.deleted
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model=name, messages=QUESTION)
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(name)


@pytest.mark.parametrize(
    "body,status,param,code",
    [
        ({"model": "nope", "messages": QUESTION}, 404, "model", "model_not_found"),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "temperature": 3}, 400, "temperature", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "n": 0}, 400, "n", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "top_logprobs": 50}, 400, "top_logprobs", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "tools": [{"type": "function", "function": {"name": "f"}}]},
         400, "tools", None),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
         400, "messages.0.content", None),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi " * 3000}]}, 400, "messages",
         "context_length_exceeded"),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": 100_000}, 400, "messages",
         "context_length_exceeded"),
        ({"model": "gpt-4o-mini", "messages": []}, 400, "messages", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "n": 10**6}, 400, "n", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": 0}, 400, "max_tokens", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": -5}, 400, "max_tokens", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "stop": 42}, 400, "stop", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "prediction": {"type": "content", "content": [
            {"type": "image_url", "image_url": {}}]}}, 400, "prediction.content", None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "prediction": {"type": "file", "content": "x"}}, 400,
         "prediction.type", None),
    ],
)
def test_bad_requests(server, body, status, param, code):
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["code"] == code


def test_a_predicted_output_gives_the_same_answer_and_reports_its_guesses(server):
    client = server.client()
    rewrite = [{"role": "user", "content": "Rewrite in the past tense: The dragon cooks soup and sings. The knight "
                                           "eats the soup and laughs. They walk home together under the stars."}]
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=rewrite, temperature=0, max_tokens=60)
    text = plain.choices[0].message.content
    predicted = client.chat.completions.create(model="gpt-4o-mini", messages=rewrite, temperature=0, max_tokens=60,
                                               prediction={"type": "content", "content": text})
    assert predicted.choices[0].message.content == text
    assert predicted.usage.completion_tokens == plain.usage.completion_tokens
    details = predicted.usage.completion_tokens_details
    if kernels.library() is not None:  # guesses run where rows are independent (docs/serving.md)
        assert details.accepted_prediction_tokens >= plain.usage.completion_tokens // 3
    sampled = client.chat.completions.create(model="gpt-4o-mini", messages=rewrite, max_tokens=8, seed=3,
                                             prediction={"type": "content", "content": text})
    assert sampled.usage.completion_tokens_details.accepted_prediction_tokens == 0  # only greedy answers guess


def test_32_concurrent_clients_get_the_unbatched_answers(server):
    client = server.client()
    prompts = [[{"role": "user", "content": f"Write the number {i} in words."}] for i in range(32)]
    ask = lambda messages: client.chat.completions.create(  # noqa: E731
        model="gpt-4o-mini", messages=messages, temperature=0, max_tokens=16).choices[0].message.content
    alone = [ask(prompts[i]) for i in (0, 17, 31)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, prompts))
    assert all(together) and len(together) == 32
    assert [together[i] for i in (0, 17, 31)] == alone


def test_a_disconnected_stream_frees_its_slot(server_factory):
    server = server_factory(TUNEHOUSE_SERVE_SLOTS="1")
    body = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 2000,
            "messages": [{"role": "user", "content": "Write a very long story."}]}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=120) as response:
        for _ in zip(range(3), response.iter_lines()):
            pass  # read a little, then hang up
    started = time.monotonic()
    answer = server.client().chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=5)
    assert answer.choices[0].message.content and time.monotonic() - started < 60


def test_limits_answer_429_with_retry_after_and_413(server_factory):
    import threading

    server = server_factory(TUNEHOUSE_SERVE_SLOTS="1", TUNEHOUSE_SERVE_MAX_WAITING="1",
                            TUNEHOUSE_MAX_REQUEST_BYTES="20000")
    url = f"{server.base_url}/chat/completions"
    long = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 300, "logit_bias": {"0": -100, "1": -100, "2": -100}}  # no early end: all 300 tokens
    assert httpx.post(url, json={**long, "max_tokens": 1}, timeout=120).status_code == 200  # model loaded
    threads = [threading.Thread(target=httpx.post, args=(url,), kwargs={"json": long, "timeout": 300})
               for _ in range(2)]
    for thread in threads:  # one decodes (300 tokens: seconds), one waits for the only slot
        thread.start()
        time.sleep(0.3)
    busy = httpx.post(url, json={**long, "max_tokens": 5}, timeout=60)
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["code"] == "rate_limit_exceeded"
    huge = httpx.post(url, json={**long, "messages": [{"role": "user", "content": "x" * 30000}]}, timeout=60)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    for thread in threads:
        thread.join()
    assert httpx.post(url, json={**long, "max_tokens": 2}, timeout=120).status_code == 200  # served again
