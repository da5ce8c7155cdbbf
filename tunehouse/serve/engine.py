"""The inference engine: one thread that owns the models and runs continuous batching.

Requests (`submit`) wait in a queue; between decoding steps the engine admits waiting requests into free
KV-cache slots (prefill), then advances every active sequence of a base model by one token in a single
batched step, whatever adapter each uses. A finished or abandoned sequence frees its slot at once. The API's
event loop never runs model code: results come back through a callback the caller makes thread-safe.

Each base model is loaded once; LoRA adapters load on first use into a bounded LRU cache keyed by folder.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import kernels
from .json_mode import COMPLETE, JsonPrefix, constrain
from .llama import Adapter, LlamaDecoder

log = logging.getLogger("tunehouse.engine")

PREFILL_TOKENS = 4096
"""Prompt tokens run together in one admission round at most (one long prompt may exceed it alone)."""

SHARED_PREFIX_TOKENS = 16
"""A request waits one round for another starting in the same round when their prompts share at least this
many tokens (more than any cache holds): it then copies them from the other's slot instead of running them."""

DRAFT_TOKENS = 2
"""Tokens a greedy sequence guesses ahead in a step at most (see `Engine._drafts`)."""

SPECULATION_ROWS = 4
"""Rows a step may grow to with guessed tokens. A step of a few rows reads each weight once for all of them, so
up to ~3 rows cost about what one does (measured on an AVX2 EPYC: 1 row ~10 ms, 2 ~10, 4 ~13, 6 ~19); a
larger batch is busy enough without guesses."""


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int | None = None
    """None: no logprobs; 0..20: the chosen token's logprob plus that many alternatives."""
    logit_bias: dict[int, float] = field(default_factory=dict)
    json_format: Callable[[], JsonPrefix] | None = None
    """Makes the scanner the answer is held to (json_mode.py): one JSON object, or one matching a schema."""
    prediction: list[int] = field(default_factory=list)
    """Tokens the answer is expected to repeat much of (OpenAI's Predicted Outputs), guessed from when greedy."""


@dataclass
class TokenOutput:
    text: str
    """Text that became final with this step (may be empty while a stop string could still match)."""
    token_id: int | None = None
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None


@dataclass
class Finished:
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Prompt tokens whose cache was copied from another sequence's rather than computed."""
    accepted_guesses: int = 0
    """Answer tokens guessed ahead that came true (see `Engine._drafts`); `rejected_guesses` ran for nothing."""
    rejected_guesses: int = 0


@dataclass
class GenerationRequest:
    base_dir: Path
    adapter_dir: Path | None
    prompt_ids: list[int]
    params: SamplingParams
    emit: Callable[[TokenOutput | Finished | Exception], None]
    """Called from the engine thread with each output, then a Finished (or the exception that stopped it)."""
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Sequence:
    request: GenerationRequest
    slot: int
    adapter: Adapter | None
    length: int  # tokens in the cache
    next_token: int
    generated: list[int] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)
    sent_chars: int = 0
    text: str = ""
    """The answer decoded up to `read_offset`, the tokens that make whole characters (see `_detokenize`)."""
    prefix_offset: int = 0
    read_offset: int = 0
    json_state: JsonPrefix | None = None
    """In JSON mode, the scan of `text` (see json_mode.py)."""
    sampled: int = 0
    """Tokens sampled, the end-of-turn token included: the completion's token count."""
    generator: torch.Generator | None = None
    cached: int = 0
    """Prompt tokens copied from another slot's cache (see `Engine._shared_prefix`)."""
    known: list[int] = field(default_factory=list)
    """What guesses are looked up in besides the answer so far (see `Engine._drafts`): the prompt, then the
    prediction (the latest occurrence of a pair is the one used: the answer's own, else the prediction's)."""
    seen: dict[tuple[int, int], int] = field(default_factory=dict)
    """Each pair of consecutive tokens of `known` followed by the answer (all but the last pair) -> the position
    after its latest occurrence. `indexed` is how many positions have been looked at."""
    indexed: int = 0
    guesses: int = 0
    accepted_guesses: int = 0

    def token(self, position: int) -> int:
        """The token at `position` of `known` followed by the answer."""
        known = self.known
        return known[position] if position < len(known) else self.generated[position - len(known)]


class Engine:
    def __init__(self, tokenizer_for: Callable[[Path], object], *, slots: int = 32, max_len: int = 2048,
                 adapter_cache: int = 16, precision: str = "auto", max_waiting: int = 256) -> None:
        self.tokenizer_for = tokenizer_for
        self.max_waiting = max_waiting
        self.precision = precision
        self.slots = slots
        self.max_len = max_len
        self.adapter_cache_size = adapter_cache
        self._waiting: queue.Queue[GenerationRequest] = queue.Queue()
        self._decoders: dict[Path, LlamaDecoder] = {}
        self._adapters: OrderedDict[Path, Adapter] = OrderedDict()
        self._active: dict[Path, list[_Sequence]] = {}
        self._free_slots: dict[Path, list[int]] = {}
        self._held: dict[Path, dict[int, tuple[Path | None, list[int]]]] = {}
        """Per base model, slot -> (adapter folder, prompt) of the last prompt run into that slot: its cache
        holds that prompt's keys and values until the slot's next prefill, finished or not (decoding
        writes only past the prompt)."""
        self._not_started = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tunehouse-engine", daemon=True)
        self._thread.start()

    # --- public -------------------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> None:
        with self._count_lock:
            self._not_started += 1
        self._waiting.put(request)

    @property
    def waiting(self) -> int:
        """Requests submitted but not yet decoding (no free slot yet)."""
        return self._not_started

    def context_length(self, base_dir: Path) -> int:
        return min(self.max_len, _config_context(base_dir))

    # --- the loop -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        """Forever (a daemon thread that ends with the server): admit what fits, then one step per model."""
        pending: deque[GenerationRequest] = deque()
        while True:
            if not pending and not any(self._active.values()):
                pending.append(self._waiting.get())  # idle: sleep until a request arrives
            while True:
                try:
                    pending.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            still_waiting = self._admit(pending)
            with self._count_lock:
                self._not_started -= len(pending) - len(still_waiting)
            pending = still_waiting
            for base_dir, sequences in list(self._active.items()):
                if sequences:
                    self._step(base_dir, sequences)

    def _admit(self, pending: deque[GenerationRequest]) -> deque[GenerationRequest]:
        """Start waiting requests in free slots, their prompts run together; returns those that must wait.

        A round's prompts are capped at PREFILL_TOKENS so that sequences already decoding are not held up
        for long; the rest start at the next round."""
        still_waiting: deque[GenerationRequest] = deque()
        starting: dict[Path, list[tuple[GenerationRequest, int, Adapter | None, tuple[int, int]]]] = {}
        prompt_tokens = 0
        for request in pending:
            if request.cancelled.is_set():
                continue
            try:
                decoder = self._decoder(request.base_dir)
                free = self._free_slots[request.base_dir]
                if not free or (prompt_tokens and prompt_tokens + len(request.prompt_ids) > PREFILL_TOKENS):
                    still_waiting.append(request)
                    continue
                adapter = self._adapter(decoder, request.adapter_dir) if request.adapter_dir else None
            except Exception as exc:  # a bad adapter or model fails its request, never the engine
                log.exception("could not start a generation")
                request.emit(exc)
                continue
            group = starting.setdefault(request.base_dir, [])
            prefix = self._shared_prefix(decoder, request, group)
            if prefix is None:
                still_waiting.append(request)
                continue
            source, length = prefix
            # a free slot that holds the prefix is taken as it is: nothing to copy
            slot = free.pop(free.index(source)) if length and source in free else free.pop()
            group.append((request, slot, adapter, prefix))
            prompt_tokens += len(request.prompt_ids) - length
        for base_dir, group in starting.items():
            self._start(self._decoders[base_dir], group)
        return still_waiting

    def _shared_prefix(self, decoder: LlamaDecoder, request: GenerationRequest,
                       starting: list[tuple[GenerationRequest, int, Adapter | None, tuple[int, int]]]
                       ) -> tuple[int, int] | None:
        """(slot, length): the slot whose cache holds the longest prefix of the request's prompt, for the same
        adapter, and that prefix's length (all of the prompt but its last token at most, which must run for
        its logits); (-1, 0) when none does or the decoder cannot start from a prefix. None when a request
        starting in this round shares a longer prefix of SHARED_PREFIX_TOKENS or more: this one then starts in
        the next round, from that request's cache.

        A chat's system prompt, a few-shot preamble, or `n` choices of one prompt are then run once. The slots
        of requests starting in this round are not copied from: their caches are about to be rewritten."""
        if not decoder.rows_independent:
            return -1, 0
        prompt, usable = request.prompt_ids, len(request.prompt_ids) - 1
        taken = {slot for _, slot, _, _ in starting}
        best = (-1, 0)
        for slot, (adapter_dir, held) in self._held[request.base_dir].items():
            if slot not in taken and adapter_dir == request.adapter_dir:
                length = min(_common_prefix(prompt, held), usable)
                if length > best[1]:
                    best = (slot, length)
        for other, _, _, _ in starting:
            if other.adapter_dir == request.adapter_dir:
                if min(_common_prefix(prompt, other.prompt_ids), usable) >= max(best[1] + 1, SHARED_PREFIX_TOKENS):
                    return None
        return best

    def _start(self, decoder: LlamaDecoder,
               group: list[tuple[GenerationRequest, int, Adapter | None, tuple[int, int]]]) -> None:
        requests, slots, adapters, prefixes = zip(*group)
        held = self._held[requests[0].base_dir]
        try:
            for slot, (source, length) in zip(slots, prefixes):  # in order: a source may be a later target
                if length and source != slot:
                    decoder.copy_cache(source, slot, length)
            logits = decoder.prefill(list(slots), [request.prompt_ids for request in requests], list(adapters),
                                     [length for _, length in prefixes])
        except Exception as exc:
            log.exception("could not start a generation")
            for request, slot, _, _ in group:
                request.emit(exc)
                held.pop(slot, None)
                self._free_slots[request.base_dir].append(slot)
            return
        sequences = []
        for request, slot, adapter, (_, cached) in group:
            held[slot] = (request.adapter_dir, request.prompt_ids)
            generator = None
            if request.params.seed is not None:
                generator = torch.Generator().manual_seed(request.params.seed)
            json_format = request.params.json_format
            sequences.append(_Sequence(request, slot, adapter, length=len(request.prompt_ids), next_token=-1,
                                       generator=generator, json_state=json_format() if json_format else None,
                                       cached=cached, known=request.prompt_ids + request.params.prediction))
        self._active[requests[0].base_dir].extend(sequences)
        for sequence, row, drawn in zip(sequences, logits, _draw_plainly(sequences, logits)):
            self._accept(decoder, sequence, row, drawn)

    def _step(self, base_dir: Path, sequences: list[_Sequence]) -> None:
        """One token for every sequence, and more for a greedy one whose guesses (`_drafts`) come true."""
        decoder = self._decoders[base_dir]
        sequences.sort(key=lambda s: s.slot)  # consecutive slots: the decoder reads their cache without copying
        drafts = self._drafts(decoder, sequences)
        rows = [(s, token) for s, draft in zip(sequences, drafts) for token in [s.next_token, *draft]]
        logits = decoder.decode([s.slot for s, _ in rows], [token for _, token in rows],
                                [s.length + i for s, draft in zip(sequences, drafts) for i in range(len(draft) + 1)],
                                [s.adapter for s, _ in rows])
        drawn = _draw_plainly([s for s, _ in rows], logits)
        first = 0
        for sequence, draft in zip(list(sequences), drafts):
            for i in range(len(draft) + 1):  # row i read draft[i - 1]: it counts once the answer took that
                sequence.length += 1
                if not self._accept(decoder, sequence, logits[first + i], drawn[first + i]) or i == len(draft) \
                        or sequence.next_token != draft[i]:
                    break
                sequence.accepted_guesses += 1
            first += len(draft) + 1

    def _drafts(self, decoder: LlamaDecoder, sequences: list[_Sequence]) -> list[list[int]]:
        """Tokens each sequence guesses it will produce next, to run as extra rows of this step.

        Prompt lookup: the last two tokens are looked up among the earlier ones (the request's prompt, its
        prediction, the answer so far) and the tokens that followed them there are the guess, as answers often
        repeat their prompt (extraction, rewriting, JSON keys), their prediction, or themselves. Only greedy
        sequences guess, where the decoder's rows are independent: the row after a guessed token is then the
        row decoding that token alone would run, and greedy sampling picks the same token from the same
        numbers, so the answer is the same (logprobs included), in fewer steps when guesses come true."""
        drafts: list[list[int]] = [[] for _ in sequences]
        budget = SPECULATION_ROWS - len(sequences)
        if budget <= 0 or not decoder.rows_independent:
            return drafts
        for sequence, draft in zip(sequences, drafts):
            params = sequence.request.params
            room = min(DRAFT_TOKENS, budget, params.max_tokens - len(sequence.generated) - 1,
                       decoder.max_len - sequence.length - 2)
            if params.temperature > 0 or room <= 0:
                continue
            end = len(sequence.known) + len(sequence.generated)
            for position in range(max(sequence.indexed, 2), end):  # pairs ending before the last token
                sequence.seen[(sequence.token(position - 2), sequence.token(position - 1))] = position
            sequence.indexed = max(sequence.indexed, end)
            after = sequence.seen.get((sequence.token(end - 2), sequence.token(end - 1))) if end >= 2 else None
            if after is not None:
                draft.extend(sequence.token(p) for p in range(after, min(after + room, end)))
                sequence.guesses += len(draft)
                budget -= len(draft)
        return drafts

    # --- one token for one sequence -----------------------------------------------------------------------

    def _accept(self, decoder: LlamaDecoder, sequence: _Sequence, logits: torch.Tensor, drawn: int | None) -> bool:
        """Sample the next token from `logits` (unless `_draw_plainly` drew it: `drawn`), emit what became final,
        and finish the sequence if done. Returns whether it goes on."""
        request = sequence.request
        if request.cancelled.is_set():
            self._release(sequence)
            return False
        params = request.params
        tokenizer = self.tokenizer_for(request.base_dir)
        stop_ids = _stop_token_ids(tokenizer)
        if sequence.json_state is not None:
            logits = constrain(logits, sequence.json_state, _continuations(tokenizer, sequence), stop_ids)
            if torch.isinf(logits).all():  # no candidate continues the object: give up where it stands
                self._finish(sequence, tokenizer, "length")
                return False
        if drawn is None:
            token, logprob, top = sample(logits, params, sequence.counts, sequence.generator)
        else:
            token, logprob, top = drawn, None, None
        sequence.sampled += 1
        if token in stop_ids:
            self._finish(sequence, tokenizer, "stop")
            return False
        sequence.generated.append(token)
        sequence.counts[token] = sequence.counts.get(token, 0) + 1
        sequence.next_token = token
        known = len(sequence.text)
        text = _detokenize(tokenizer, sequence)
        if sequence.json_state is not None:
            sequence.json_state.feed(text[known:])
        stop_at = _find_stop(text, params.stop)
        if stop_at is not None:
            request.emit(TokenOutput(text[sequence.sent_chars:stop_at], token, logprob, top))
            sequence.sent_chars = stop_at
            self._finish(sequence, tokenizer, "stop", text=text[:stop_at])
            return False
        if sequence.json_state is not None and sequence.json_state.result() == COMPLETE:
            self._finish(sequence, tokenizer, "stop", text=text)
            return False
        safe = _safe_prefix_length(text, params.stop)
        request.emit(TokenOutput(text[sequence.sent_chars:safe], token, logprob, top))
        sequence.sent_chars = max(sequence.sent_chars, safe)
        out_of_room = sequence.length + 1 >= decoder.max_len
        if len(sequence.generated) >= params.max_tokens or out_of_room:
            self._finish(sequence, tokenizer, "length")  # a full decode: a last partial character is kept too
            return False
        return True

    def _finish(self, sequence: _Sequence, tokenizer, reason: str, text: str | None = None) -> None:
        """Flush text held back for a possible stop string, then report the end."""
        request = sequence.request
        if text is None:
            text = tokenizer.decode(sequence.generated, skip_special_tokens=True)
        if sequence.sent_chars < len(text):
            request.emit(TokenOutput(text[sequence.sent_chars:]))
        request.emit(Finished(reason, len(request.prompt_ids), sequence.sampled, sequence.cached,
                              sequence.accepted_guesses, sequence.guesses - sequence.accepted_guesses))
        self._release(sequence)

    def _release(self, sequence: _Sequence) -> None:
        base_dir = sequence.request.base_dir
        self._active[base_dir].remove(sequence)
        self._free_slots[base_dir].append(sequence.slot)

    # --- models -------------------------------------------------------------------------------------------

    def _decoder(self, base_dir: Path) -> LlamaDecoder:
        if base_dir not in self._decoders:
            log.info("loading %s for serving", base_dir)
            self._decoders[base_dir] = LlamaDecoder(base_dir, slots=self.slots, max_len=self.max_len,
                                                    precision=self.precision)
            self._active[base_dir] = []
            self._free_slots[base_dir] = list(range(self.slots))[::-1]
            self._held[base_dir] = {}
        return self._decoders[base_dir]

    def _adapter(self, decoder: LlamaDecoder, folder: Path) -> Adapter:
        if folder in self._adapters:
            self._adapters.move_to_end(folder)
            return self._adapters[folder]
        adapter = decoder.load_adapter(str(folder), folder)
        self._adapters[folder] = adapter
        while len(self._adapters) > self.adapter_cache_size:
            self._adapters.popitem(last=False)  # sequences already using it keep their reference
        return adapter


def _draw_plainly(row_sequences: list[_Sequence], logits: torch.Tensor) -> list[int | None]:
    """The next token of each row (row i of `logits` is `row_sequences[i]`'s) whose request samples plainly
    (no JSON mode, penalties, logit bias, top_p or logprobs), all drawn in one call to decoding.c's
    `sample_rows` where the C kernels run (~0.5 ms for 32 rows against ~2.6 ms for `sample` row by row, a tenth
    of a 32-stream step); None for the other rows, which `sample` draws. Each sampled row takes one uniform
    draw from its sequence's generator, as `sample` does, and a request is always drawn the same way: the same
    tokens alone or in any batch."""
    drawn: list[int | None] = [None] * len(row_sequences)
    if kernels.library() is None:
        return drawn
    rows, temperatures, draws = [], [], []
    for row, sequence in enumerate(row_sequences):
        params = sequence.request.params
        if (sequence.json_state is not None or params.top_p < 1.0 or params.top_logprobs is not None
                or params.logit_bias or params.presence_penalty or params.frequency_penalty):
            continue
        rows.append(row)
        temperatures.append(max(params.temperature, 0.0))
        draws.append(float(torch.rand(1, generator=sequence.generator)) if params.temperature > 0 else 0.0)
    if rows:
        for row, token in zip(rows, kernels.sample_rows(logits, rows, temperatures, draws)):
            drawn[row] = token
    return drawn


def sample(logits: torch.Tensor, params: SamplingParams, counts: dict[int, int], generator: torch.Generator | None):
    """Next token, its logprob, and the top alternatives (token, logprob); both logprob fields are None unless
    the request asked for logprobs (a log-softmax over the vocabulary is a third of a row's sampling time)."""
    if counts and (params.presence_penalty or params.frequency_penalty):
        ids = torch.tensor(list(counts))
        seen = torch.tensor(list(counts.values()), dtype=logits.dtype)
        logits = logits.clone()
        logits[ids] -= params.presence_penalty + params.frequency_penalty * seen
    if params.logit_bias:
        logits = logits.clone()
        for token, bias in params.logit_bias.items():
            logits[token] += bias
    if params.temperature <= 0:
        token = int(logits.max(dim=-1).indices)  # the first maximum, as argmax, at a third of argmax's time
    else:
        # inverse-CDF draw: one uniform number per token, much cheaper than multinomial over the vocabulary;
        # the weights need no normalising, as the draw is scaled by their total
        weights = torch.exp((logits - logits.max()) / params.temperature)
        if params.top_p < 1.0:
            sorted_weights, order = torch.sort(weights, descending=True)
            kept = torch.cumsum(sorted_weights, dim=-1) - sorted_weights < params.top_p * sorted_weights.sum()
            filtered = torch.zeros_like(weights)
            filtered[order[kept]] = weights[order[kept]]
            weights = filtered
        cumulative = torch.cumsum(weights, dim=-1)
        draw = torch.rand(1, generator=generator) * cumulative[-1]
        token = min(int(torch.searchsorted(cumulative, draw)), len(weights) - 1)
    if params.top_logprobs is None:
        return token, None, None
    logprobs = torch.log_softmax(logits, dim=-1)
    values, ids = torch.topk(logprobs, max(params.top_logprobs, 1))
    top = [(int(i), float(v)) for i, v in zip(ids, values)][: params.top_logprobs]
    return token, float(logprobs[token]), top


def _detokenize(tokenizer, sequence: _Sequence) -> str:
    """The answer's text so far, decoding only the tokens since the last whole character and a few before.

    Decoding the whole answer at every step costs time in proportion to its length (~170 us a row at 1,000
    tokens, a tenth of a 32-row step). The tokens from `prefix_offset` are decoded with and without the new
    ones, and the difference is appended, once it no longer ends in a partial UTF-8 character; decoding from a
    few tokens back keeps whatever a tokenizer does at the start of a text (a dropped leading space) out of
    the difference.
    """
    window, before = _window(tokenizer, sequence)
    after = tokenizer.decode(window, skip_special_tokens=True)
    if len(after) > len(before) and not after.endswith("\ufffd"):
        sequence.text += after[len(before):]
        sequence.prefix_offset, sequence.read_offset = sequence.read_offset, len(sequence.generated)
    return sequence.text


def _continuations(tokenizer, sequence: _Sequence) -> Callable[[int], str]:
    """For JSON mode: the text a candidate token would add after `sequence.text` (with any partial character
    the tokens since it hold), decoding the same few tokens `_detokenize` does, not the whole answer."""
    window, before = _window(tokenizer, sequence)
    return lambda token: tokenizer.decode(window + [token], skip_special_tokens=True)[len(before):]


def _window(tokenizer, sequence: _Sequence) -> tuple[list[int], str]:
    """The tokens from `prefix_offset` on, and the text of those before `read_offset` (the end of
    `sequence.text`, decoded from the same first token)."""
    window = sequence.generated[sequence.prefix_offset:]
    settled = window[: sequence.read_offset - sequence.prefix_offset]
    return window, tokenizer.decode(settled, skip_special_tokens=True)


def _stop_token_ids(tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.add(end_of_turn)
    return {i for i in ids if i is not None}


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens a and b share."""
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def _find_stop(text: str, stops: list[str]) -> int | None:
    hits = [text.find(stop) for stop in stops if stop and stop in text]
    return min(hits) if hits else None


def _safe_prefix_length(text: str, stops: list[str]) -> int:
    """How much of `text` can be sent: not a trailing partial character, nor what may begin a stop string."""
    end = len(text)
    while end and text[end - 1] == "\ufffd":
        end -= 1
    for stop in stops:
        for keep in range(min(len(stop) - 1, end), 0, -1):
            if text[:end].endswith(stop[:keep]):
                end -= keep
                break
    return end


def _config_context(base_dir: Path) -> int:
    import json

    return int(json.loads((base_dir / "config.json").read_text()).get("max_position_embeddings", 2048))
