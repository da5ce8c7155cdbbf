from __future__ import annotations

import json

import pytest
import torch

from tunehouse.serve.json_mode import (
    COMPLETE, INVALID, PARTIAL, JsonPrefix, SchemaPrefix, UnsupportedSchema, check_schema, constrain,
)


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


PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"anyOf": [{"type": "integer"},
                                                                                          {"type": "null"}]}},
          "required": ["name", "age"], "additionalProperties": False}
CITY = {  # what the SDK's `to_strict_json_schema` makes of a pydantic model with a nested one, as `parse` sends
    "type": "object", "additionalProperties": False, "required": ["name", "country", "capital", "tags", "mayor"],
    "properties": {
        "name": {"type": "string", "title": "Name"},
        "country": {"enum": ["France", "Norway"], "type": "string"},
        "capital": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "mayor": {"anyOf": [{"$ref": "#/$defs/Person"}, {"type": "null"}]},
    },
    "$defs": {"Person": PERSON},
}
CITY_JSON = ('{"name": "Paris", "country": "France", "capital": true, "tags": ["a", "b"], '
             '"mayor": {"name": "Anne", "age": 52}}')


def test_a_schema_scan_completes_a_matching_object_and_finds_every_prefix_partial():
    check_schema(CITY)
    assert SchemaPrefix(CITY).feed(CITY_JSON) == COMPLETE
    assert SchemaPrefix(CITY).feed(CITY_JSON.replace('{"name": "Anne", "age": 52}', "null")) == COMPLETE
    for end in range(len(CITY_JSON)):
        assert SchemaPrefix(CITY).feed(CITY_JSON[:end]) == PARTIAL, CITY_JSON[:end]


@pytest.mark.parametrize("text", [
    '{"nam": ',  # no such property
    '{"naMe',  # refused as soon as no property starts with it
    '{"name": 5',  # a number where a string goes
    '{"name": "P", "name"',  # a property twice
    '{"country": "Ger',  # not a prefix of an enum value
    '{"country": "Fra"}',  # an enum value cut short
    '{"mayor": {"name": "A", "age": 5.5',  # an integer with a fraction
    '{"capital": "yes"',
    '{"tags": [1',
    '{"name": "P"}',  # closed before the required properties
    '{"name": "P", "country": "France", "capital": true, "tags": [], "mayor": null,',  # a comma with nothing left
    '{"na\\u006de": ',  # keys are written plainly
])
def test_a_schema_scan_refuses_what_breaks_the_schema(text):
    assert SchemaPrefix(CITY).feed(text) == INVALID


@pytest.mark.parametrize(("schema", "words"), [
    ({"type": "array", "items": {"type": "string"}}, "root"),
    ({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}}, "`pattern`"),
    ({"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}, "enum values must be strings"),
    ({"type": "object", "properties": {"x": {"anyOf": [{"type": "integer"}, {"type": "number"}]}}}, "differ in type"),
    ({"type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}}, "points nowhere"),
])
def test_schemas_decoding_cannot_enforce_are_refused_by_name(schema, words):
    with pytest.raises(UnsupportedSchema, match=words):
        check_schema(schema)


def test_a_recursive_schema_is_followed_through_its_references():
    tree = {"type": "object", "required": ["value", "children"], "additionalProperties": False,
            "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}}}
    check_schema(tree)
    assert SchemaPrefix(tree).feed('{"value": 1, "children": [{"value": 2, "children": []}]}') == COMPLETE
    assert SchemaPrefix(tree).feed('{"value": 1, "children": [{"value": "two"') == INVALID


def test_whitespace_runs_are_capped_so_an_answer_cannot_pad_itself_out():
    assert JsonPrefix().feed('{\n' + " " * 15 + '"a": 1}') == COMPLETE
    assert JsonPrefix().feed('{"a":' + "\n" * 17) == INVALID
    assert SchemaPrefix(PERSON).feed(" " * 17) == INVALID
