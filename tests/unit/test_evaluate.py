"""Eval's numbers (bot/evaluate.py): exact match, field by field for JSON answers, and precision, checked
against values worked out by hand."""

from __future__ import annotations

import json

import pytest

from bot.evaluate import Example, agreement, answers_csv, chart_png, read_examples, score, table


def test_exact_match_fields_and_precision():
    examples = [
        Example([{"role": "user", "content": "a"}], '{"city": "Paris", "n": 1}'),
        Example([{"role": "user", "content": "b"}], '{"city": "Rome", "n": 2}'),
    ]
    answers = [
        ['{"city": "Paris", "n": 1}', ' {"city": "Paris", "n": 1}\n', '{"city": "Paris", "n": 3}'],
        ['{"city": "Rome"}', "not json", None],
    ]
    scores = score("ft:x", examples, answers)
    assert scores.exact == pytest.approx(2 / 6)
    assert scores.fields == {"city": pytest.approx(4 / 6), "n": pytest.approx(2 / 6)}
    assert scores.precision == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_agreement():
    assert agreement(["x", "x ", "x"]) == 1
    assert agreement(["x", "y", "z"]) == pytest.approx(1 / 3)
    assert agreement([None, None, None]) == 0


def test_report_pieces(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}) for i in range(3)))
    examples = read_examples(path, limit=2)
    assert [e.expected for e in examples] == ["a0", "a1"] and examples[0].messages[0]["role"] == "system"
    base = score("base", examples, [["a0", "b", "c"], ["x", "x", "x"]])
    tuned = score("ft:x", examples, [["a0", "a0", "a0"], ["a1", "a1", "y"]])
    text = table([base, tuned], ["base", "tuned"], 6)
    assert text.splitlines()[1].split() == ["exact", "match", "17%", "83%"]
    assert text.splitlines()[2].split()[-2:] == ["0.67", "0.83"], "precision: (1/3 + 1) / 2 and (1 + 2/3) / 2"
    rows = answers_csv(examples, [base, tuned]).decode().splitlines()
    assert len(rows) == 1 + 12 and rows[0].startswith("example,model,sample")
    assert chart_png([base, tuned], ["base", "tuned"]).startswith(b"\x89PNG")
