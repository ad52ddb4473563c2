"""ANLS equals values computed by hand."""

from __future__ import annotations

import pytest

from alicemind.structurallm.metrics import anls, anls_score, levenshtein


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("same", "same") == 0


def test_anls_by_hand():
    assert anls_score("Total Amount", ["total amount"]) == 1.0  # case and spacing ignored
    assert anls_score("1990", ["1991"]) == pytest.approx(0.75)  # 1 edit in 4 chars: 1 - 1/4
    assert anls_score("abcdef", ["abcxyz"]) == 0.0  # NL = 3/6 = 0.5 reaches the threshold
    assert anls_score("acme inc", ["acme", "acme inc."]) == pytest.approx(1 - 1 / 9)  # best ground truth
    result = anls({"q1": "1990", "q2": "acme inc"}, {"q1": ["1991"], "q2": ["acme inc."], "q3": ["x"]})
    assert result["anls"] == pytest.approx((0.75 + (1 - 1 / 9) + 0.0) / 3)
