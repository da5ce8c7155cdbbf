from __future__ import annotations

import json

import pytest

from tunehouse.serve.json_mode import COMPLETE, INVALID, PARTIAL, scan

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


@pytest.mark.parametrize("text", ['[1, 2]', '"a"', '{"a" 1}', '{"a": trux}', '{a: 1}', '{"a": 01}',
                                  '{"a": 1,}', '{"a": [1}', '{"a": 1}}', '{"a": 1} x', 'Sure! {"a": 1}',
                                  '{"a": "\\q"}'])
def test_anything_else_is_invalid(text):
    assert scan(text) == INVALID, text
