"""`/v1/chat/completions` and `/v1/completions` (client.chat.completions.create, client.completions.create)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ... import __version__
from ...errors import TunehouseError
from ...protocol.chat import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionTokensDetails,
    ChunkDelta,
    CompletionChoice,
    CompletionRequest,
    PromptTokensDetails,
    TextCompletion,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from ...protocol.common import new_id
from ...serve.engine import Engine, Finished, TokenOutput
from ...serve.service import Prepared, generate, prepare_chat, prepare_completion
from ..deps import ProjectDep, ServicesDep

router = APIRouter(prefix="/v1", tags=["chat"])
FINGERPRINT = f"fp_tunehouse_{__version__}"


def get_engine(request: Request) -> Engine:
    return request.app.state.engine()


EngineDep = Annotated[Engine, Depends(get_engine)]


@router.post("/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, project: ProjectDep, services: ServicesDep,
                                 engine: EngineDep):
    prepared = prepare_chat(services, engine, project, body)
    meta = {"id": new_id("chatcmpl-"), "created": int(time.time()), "model": body.model,
            "system_fingerprint": FINGERPRINT}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_chat_chunks(engine, prepared, meta, include_usage))
    texts, logprobs, finish, usage = await _collect(engine, prepared)
    choices = [
        ChatChoice(index=i, message=ChatMessage(content=texts[i]), finish_reason=finish[i],
                   logprobs=ChoiceLogprobs(content=logprobs[i]) if body.logprobs else None)
        for i in range(prepared.n)
    ]
    return ChatCompletion(**meta, choices=choices, usage=usage)


@router.post("/completions", response_model=None)
async def create_completion(body: CompletionRequest, project: ProjectDep, services: ServicesDep, engine: EngineDep):
    prepared = prepare_completion(services, engine, project, body)
    meta = {"id": new_id("cmpl-"), "created": int(time.time()), "model": body.model, "system_fingerprint": FINGERPRINT}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_completion_chunks(engine, prepared, meta, include_usage))
    texts, _, finish, usage = await _collect(engine, prepared)
    choices = [CompletionChoice(text=texts[i], index=i, finish_reason=finish[i]) for i in range(prepared.n)]
    return TextCompletion(**meta, choices=choices, usage=usage)


async def _collect(engine: Engine, prepared: Prepared):
    texts = [""] * prepared.n
    logprobs: list[list[TokenLogprob]] = [[] for _ in range(prepared.n)]
    finish: list[str] = ["stop"] * prepared.n
    finished: list[Finished] = []
    async for index, item in generate(engine, prepared, per_token=False):
        if isinstance(item, Finished):
            finish[index] = item.finish_reason
            finished.append(item)
            continue
        texts[index] += item.text
        if item.logprob is not None:
            logprobs[index].append(_token_logprob(prepared.tokenizer, item))
    return texts, logprobs, finish, _usage(prepared, finished)


def _token_logprob(tokenizer, item: TokenOutput) -> TokenLogprob:
    def piece(token_id: int) -> str:
        return tokenizer.decode([token_id])

    text = piece(item.token_id)
    return TokenLogprob(
        token=text, logprob=item.logprob, bytes=list(text.encode("utf-8")),
        top_logprobs=[TopLogprob(token=piece(t), logprob=lp, bytes=list(piece(t).encode("utf-8")))
                      for t, lp in item.top_logprobs or []],
    )


async def _chat_chunks(engine: Engine, prepared: Prepared, meta: dict, include_usage: bool) -> AsyncIterator[str]:
    for index in range(prepared.n):
        yield _data(ChatCompletionChunk(**meta, choices=[ChunkChoice(index=index, delta=ChunkDelta(role="assistant", content=""))]))
    finished: list[Finished] = []
    want_logprobs = prepared.params.top_logprobs is not None
    async for index, item in generate(engine, prepared):
        if isinstance(item, Finished):
            finished.append(item)
            choice = ChunkChoice(index=index, delta=ChunkDelta(), finish_reason=item.finish_reason)
        elif item.text or (want_logprobs and item.logprob is not None):
            logprobs = None
            if want_logprobs and item.logprob is not None:
                logprobs = ChoiceLogprobs(content=[_token_logprob(prepared.tokenizer, item)])
            choice = ChunkChoice(index=index, delta=ChunkDelta(content=item.text), logprobs=logprobs)
        else:
            continue
        yield _data(ChatCompletionChunk(**meta, choices=[choice]))
    if include_usage:
        yield _data(ChatCompletionChunk(**meta, choices=[], usage=_usage(prepared, finished)))


async def _completion_chunks(engine: Engine, prepared: Prepared, meta: dict, include_usage: bool) -> AsyncIterator[str]:
    finished: list[Finished] = []
    async for index, item in generate(engine, prepared):
        if isinstance(item, Finished):
            finished.append(item)
            choice = CompletionChoice(text="", index=index, finish_reason=item.finish_reason)
        elif item.text:
            choice = CompletionChoice(text=item.text, index=index, finish_reason=None)
        else:
            continue
        yield _data(TextCompletion(**meta, choices=[choice]))
    if include_usage:
        yield _data(TextCompletion(**meta, choices=[], usage=_usage(prepared, finished)))


def _usage(prepared: Prepared, finished: list[Finished]) -> Usage:
    """The prompt counts once, however many choices share it; its cached tokens are the fewest any choice
    copied: those of the choice that started first (the others copy the prompt from it)."""
    prompt = len(prepared.prompt_ids)
    completion = sum(item.completion_tokens for item in finished)
    cached = min((item.cached_tokens for item in finished), default=0)
    guesses = CompletionTokensDetails(accepted_prediction_tokens=sum(item.accepted_guesses for item in finished),
                                      rejected_prediction_tokens=sum(item.rejected_guesses for item in finished))
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=cached), completion_tokens_details=guesses)


def _data(chunk) -> str:
    return f"data: {chunk.model_dump_json()}\n\n"


def _sse(chunks: AsyncIterator[str]) -> StreamingResponse:
    async def stream() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield chunk
        except TunehouseError as exc:  # the 200 is already sent: report in-band, as OpenAI does
            yield f"data: {json.dumps({'error': exc.to_dict()})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
