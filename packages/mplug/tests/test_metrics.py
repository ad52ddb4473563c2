"""CIDEr-D, BLEU-4, VQA accuracy and R@k on cases computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from alicemind.mplug.evaluation import bleu4, cider_d, grounding_accuracy, recall_at_k, vqa_accuracy


def test_cider_d_identical_disjoint_and_a_hand_computed_case():
    refs = [["a red circle"], ["a blue square"]]
    # identical 3-word captions: cos 1 for n = 1..3, no 4-grams (0), so 10 * 3/4
    assert cider_d(["a red circle", "a blue square"], refs) == pytest.approx(7.5)
    assert cider_d(["green green", "yellow yellow"], refs) == 0.0
    # Candidate "red circle" against "a red circle" (two images: "a" occurs in both refs, so its idf is 0).
    # n=1: ref {a:0, red:l, circle:l}, cand {red:l, circle:l}, l = log 2: cos = 1.
    # n=2: ref {a red:l, red circle:l}, cand {red circle:l}: cos = l^2 / (l * sqrt(2) l) = 1/sqrt(2).
    # n=3: ref {a red circle}, cand {}: 0.  n=4: 0.   Length penalty exp(-1/72) for 2 vs 3 words.
    expected_first = 10 * (1 + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    got = cider_d(["red circle", "a blue square"], refs)
    assert got == pytest.approx((expected_first + 7.5) / 2)


def test_bleu4_perfect_and_brevity():
    assert bleu4(["a red circle on grey"], [["a red circle on grey"]]) == pytest.approx(1.0)
    # the same 5-gram text inside a 10-word reference: precisions 1, brevity exp(1 - 10/5)
    short = bleu4(["a red circle on grey"], [["a red circle on grey and a blue square too"]])
    assert short == pytest.approx(math.exp(1 - 10 / 5))


def test_vqa_accuracy_recall_and_iou():
    assert vqa_accuracy(["red", "blue"], [["red"] * 3 + ["pink"] * 7, ["blue"] + ["x"] * 9]) == pytest.approx(
        (1 + 1 / 3) / 2
    )
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.1, 0.7]])
    assert recall_at_k(scores, [{0}, {1}], ks=(1, 2)) == {1: 0.5, 2: 0.5}
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    assert grounding_accuracy(boxes, torch.tensor([[0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 4.0]])) == 0.5
