from __future__ import annotations

import json

import pytest
import torch

from tunehouse.serve.json_mode import COMPLETE, INVALID, PARTIAL, JsonPrefix, constrain


def scan(text: str) -> str:
    return JsonPrefix().feed(text)


VALID = ['{"a": 1}', ' {"name": "Ann", "tags": ["x", "y"], "n": -1.5e3, "ok": true, "z": null}',
         '{"nested": {"deep": [[], {}]}, "s": "quote \\" and \\u00e9"}', "{}"]


@pytest.mark.parametrize("text", VALID)
def test_objects_are_complete_and_every_prefix_partial(text):
    json.loads(text)
    assert scan(text) == COMPLETE
    for end in range(len(text)):
        assert scan(text[:end]) == PARTIAL, text[:end]


def test_a_literal_cut_short_is_partial():
    assert scan('{"a": tru') == PARTIAL and scan('{"a": -') == PARTIAL


NOT_OBJECTS = ['[1, 2]', '"a"', '{"a" 1}', '{"a": trux}', '{a: 1}', '{"a": 01}', '{"a": 1,}', '{"a": [1}',
               '{"a": 1}}', '{"a": 1} x', 'Sure! {"a": 1}', '{"a": "\\q"}']


@pytest.mark.parametrize("text", NOT_OBJECTS)
def test_anything_else_is_invalid(text):
    assert scan(text) == INVALID, text


@pytest.mark.parametrize("text", VALID + NOT_OBJECTS + ['{"a": tru', '{"n": 1.5e', '{"s": "\\u00'])
def test_a_scan_fed_in_two_pieces_ends_where_one_scan_does(text):
    for split in range(len(text) + 1):
        state = JsonPrefix()
        state.feed(text[:split])
        assert state.copy().feed(text[split:]) == scan(text), (text[:split], text[split:])
        assert state.result() == scan(text[:split])  # checking a continuation on a copy left it as it was


def test_constrain_keeps_only_the_candidates_that_continue_the_object():
    pieces = ['{', '"k"', ':', ' 1', '}', 'Sure', ' ', '{}']
    logits = torch.arange(len(pieces), dtype=torch.float32)
    state = JsonPrefix()
    allowed = constrain(logits, state, lambda token: pieces[token], stop_ids={5})
    assert torch.isfinite(allowed).nonzero().flatten().tolist() == [0, 6, 7]
    state.feed('{"k":')
    allowed = constrain(logits, state, lambda token: pieces[token], stop_ids=set())
    assert torch.isfinite(allowed).nonzero().flatten().tolist() == [0, 1, 3, 6, 7]  # a value of any kind


def test_constrain_looks_past_the_top_candidates_when_none_of_them_fits():
    pieces = ["Sure"] * 100 + ["{"]  # the model wants prose: the object's opening brace is its least likely token
    logits = torch.arange(len(pieces), 0, -1, dtype=torch.float32)
    allowed = constrain(logits, JsonPrefix(), lambda token: pieces[token], stop_ids=set())
    assert torch.isfinite(allowed).nonzero().flatten().tolist() == [100]
