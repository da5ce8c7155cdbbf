"""From an OpenAI request to engine work and back: resolve the model, render the prompt exactly as training
rendered examples, check it fits, turn request fields into SamplingParams, and bridge the engine thread's
outputs into the caller's event loop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..data.render import render_chat, render_prompt_completion
from ..data.validate import ROLES, content_text
from ..errors import InvalidRequest, RateLimited, ServerError
from ..models.catalog import load_tokenizer
from ..protocol.chat import ChatCompletionRequest, CompletionRequest, SamplingFields
from ..services import Services
from .engine import Engine, Finished, GenerationRequest, SamplingParams, TokenOutput
from .json_mode import JsonPrefix, SchemaPrefix, UnsupportedSchema, check_schema
from .registry import ServedModel, resolve


@dataclass
class Prepared:
    model: ServedModel
    base_dir: Path
    tokenizer: object
    prompt_ids: list[int]
    params: SamplingParams
    n: int


def prepare_chat(services: Services, engine: Engine, project: str, request: ChatCompletionRequest) -> Prepared:
    _refuse_unsupported(request)
    for index, message in enumerate(request.messages):
        _check_message(index, message)
    model, base_dir, tokenizer = _load(services, project, request.model)
    prompt = render_chat(request.messages, tokenizer, add_generation_prompt=True)
    max_tokens = request.max_completion_tokens or request.max_tokens
    top = (request.top_logprobs or 0) if request.logprobs else None
    prepared = _prepared(engine, model, base_dir, tokenizer, prompt.input_ids, request, max_tokens, top)
    if request.prediction is not None:
        predicted = content_text(request.prediction.content)
        if predicted is None:
            raise InvalidRequest("`prediction.content` must be a string or a list of text parts.",
                                 param="prediction.content")
        prepared.params.prediction = tokenizer(predicted, add_special_tokens=False).input_ids
    kind = request.response_format.type if request.response_format else "text"
    if kind == "json_object" or (kind == "json_schema" and request.response_format.json_schema.schema_ is None):
        prepared.params.json_format = JsonPrefix
    elif kind == "json_schema":
        prepared.params.json_format = partial(SchemaPrefix, request.response_format.json_schema.schema_)
    return prepared


def prepare_completion(services: Services, engine: Engine, project: str, request: CompletionRequest) -> Prepared:
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if len(prompts) != 1:
        raise InvalidRequest("Send exactly one prompt per request.", param="prompt")
    for field_name in ("suffix", "best_of", "logprobs"):
        if getattr(request, field_name) not in (None, 1 if field_name == "best_of" else None):
            raise InvalidRequest(f"`{field_name}` is not supported on /v1/completions.", param=field_name)
    if request.echo:
        raise InvalidRequest("`echo` is not supported.", param="echo")
    model, base_dir, tokenizer = _load(services, project, request.model)
    prompt = render_prompt_completion(prompts[0], None, tokenizer)  # raw, exactly as prompt/completion training
    return _prepared(engine, model, base_dir, tokenizer, prompt.input_ids, request, request.max_tokens, None)


def _load(services: Services, project: str, name: str):
    model = resolve(services, project, name)
    base_dir = model.full_model_dir or services.catalog.model_path(model.base)
    return model, base_dir, load_tokenizer(str(base_dir))


def _prepared(engine, model, base_dir, tokenizer, prompt_ids, request: SamplingFields, max_tokens, top) -> Prepared:
    context = engine.context_length(base_dir)
    room = context - len(prompt_ids)
    prompt_param = "messages" if isinstance(request, ChatCompletionRequest) else "prompt"
    if room < 1:
        raise InvalidRequest(
            f"This model's maximum context length is {context} tokens; the prompt has {len(prompt_ids)} tokens.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    if max_tokens is not None and max_tokens > room:  # OpenAI refuses this too, rather than answering less
        raise InvalidRequest(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the {prompt_param}, {max_tokens} in the "
            f"completion). Please reduce the length of the {prompt_param} or completion.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    bias = {int(token): value for token, value in (request.logit_bias or {}).items()}
    if any(token >= len(tokenizer) for token in bias):
        raise InvalidRequest("`logit_bias` names a token id outside the vocabulary.", param="logit_bias")
    params = SamplingParams(
        max_tokens=max_tokens or room,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        stop=list(request.stop or []),
        seed=request.seed,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        top_logprobs=top,
        logit_bias=bias,
    )
    n = request.n or 1
    if engine.waiting + n > engine.max_waiting:  # checked before any response starts, so it is a real 429
        raise RateLimited(
            f"The server is busy: {engine.waiting} generations are waiting for a free slot "
            f"(limit {engine.max_waiting}). Retry shortly.",
            code="rate_limit_exceeded",
            headers={"Retry-After": "1"},
        )
    return Prepared(model, base_dir, tokenizer, prompt_ids, params, n)


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    if request.tools:
        raise InvalidRequest("`tools` are not supported: the model was not trained for tool calls.", param="tools")
    if request.modalities and set(request.modalities) != {"text"}:
        raise InvalidRequest("Only the `text` modality is supported.", param="modalities")
    if request.audio is not None:
        raise InvalidRequest("Audio output is not supported.", param="audio")
    kind = request.response_format.type if request.response_format else "text"
    if kind == "json_schema":
        if request.response_format.json_schema is None:
            raise InvalidRequest("response_format of type 'json_schema' needs `json_schema` with a `name` and a "
                                 "`schema`.", param="response_format.json_schema")
        schema = request.response_format.json_schema.schema_
        try:
            if schema is not None:
                check_schema(schema)
        except UnsupportedSchema as exc:
            raise InvalidRequest(f"Invalid schema for response_format: {exc}.",
                                 param="response_format.json_schema.schema") from None
    if kind == "json_object" and not any("json" in (content_text(m.get("content")) or "").lower()
                                         for m in request.messages if isinstance(m, dict)):
        raise InvalidRequest(  # OpenAI's own rule: the prompt must ask for JSON
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            param="messages",
        )


def _check_message(index: int, message: dict) -> None:
    where = f"messages.{index}"
    role = message.get("role") if isinstance(message, dict) else None
    if role not in ROLES + ("function",):
        raise InvalidRequest(f"{where}: unknown role {role!r} (expected one of {', '.join(ROLES)}).", param=f"{where}.role")
    content = message.get("content")
    if content is None and not (role == "assistant" and message.get("tool_calls")):
        raise InvalidRequest(f"{where}: `content` is required.", param=f"{where}.content")
    if content is not None and content_text(content) is None:
        raise InvalidRequest(
            f"{where}: `content` must be a string or a list of text parts (images and audio are not supported).",
            param=f"{where}.content",
        )


async def generate(engine: Engine, prepared: Prepared, *, per_token: bool = True
                   ) -> AsyncIterator[tuple[int, TokenOutput | Finished]]:
    """Yield (choice index, output) as the engine produces them, until every choice has Finished.

    With `per_token` False (an answer sent whole) the event loop is woken only when a choice ends, not for
    every token: with 32 such answers decoding, waking it 32 times a step took ~1.5 ms of a ~30 ms step from
    the decoding threads on a 2-core CPU. Leaving early (a client that disconnected) cancels the choices still
    running: their slots free up at the engine's next step.
    """
    loop = asyncio.get_running_loop()
    outputs: asyncio.Queue = asyncio.Queue()
    held: deque[tuple[int, TokenOutput | Finished | Exception]] = deque()  # appended by the engine thread

    def release() -> None:
        while held:
            outputs.put_nowait(held.popleft())

    def emit(index: int, item: TokenOutput | Finished | Exception) -> None:
        held.append((index, item))
        if per_token or not isinstance(item, TokenOutput):
            loop.call_soon_threadsafe(release)

    requests = []
    for index in range(prepared.n):
        params = prepared.params
        if params.seed is not None and index:  # n choices from one seed: different, and still repeatable
            params = dataclasses.replace(params, seed=params.seed + index)
        request = GenerationRequest(
            base_dir=prepared.base_dir,
            adapter_dir=None if prepared.model.full_model_dir else prepared.model.adapter_dir,
            prompt_ids=prepared.prompt_ids,
            params=params,
            emit=partial(emit, index),
        )
        requests.append(request)
        engine.submit(request)
    try:
        running = prepared.n
        while running:
            index, item = await outputs.get()
            if isinstance(item, Exception):
                raise ServerError(f"Generation failed: {item}")
            if isinstance(item, Finished):
                running -= 1
            yield index, item
    finally:
        for request in requests:
            request.cancelled.set()
