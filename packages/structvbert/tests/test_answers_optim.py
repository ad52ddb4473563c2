"""VQA scores against hand-computed values, answer normalisation, and BertAdam against a hand-written step."""

from __future__ import annotations

import pytest
import torch

from alicemind.structvbert import BertAdam
from alicemind.structvbert.answers import normalize_answer, soft_accuracy, soft_scores, vqa_score


def test_vqa_soft_accuracy_equals_hand_computed_values():
    humans = ["2"] * 2 + ["3"] * 8  # two annotators said "2"
    # Leave-one-out over 10: the 2 subsets without a "2"-sayer see 1 match (1/3); the other 8 see 2 (2/3).
    assert vqa_score(humans, "2") == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
    assert vqa_score(humans, "3") == 1.0 and vqa_score(humans, "4") == 0.0
    three = ["yes"] * 3 + ["no"] * 7
    assert vqa_score(three, "yes") == pytest.approx((3 * (2 / 3) + 7 * 1.0) / 10)  # = 0.9
    assert soft_scores(three) == {"yes": pytest.approx(0.9), "no": 1.0}
    labels = {1: {"cat": 1.0, "dog": 0.3}, 2: {"red": 0.6}, 3: {"yes": 1.0}}
    assert soft_accuracy({1: "dog", 2: "red", 3: "no"}, labels) == pytest.approx((0.3 + 0.6 + 0.0) / 3)


def test_answer_normalisation_follows_the_answer_table():
    cases = {"The Man": "man", "a dog.": "dog", "an apple": "apple", "Two": "2", "grey": "gray", "": "", "ten.": "10"}
    assert {k: normalize_answer(k) for k in cases} == cases


def _reference_step(p, g, m, v, lr, b1, b2, eps, wd):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p - lr * (m / (v.sqrt() + eps) + wd * p), m, v


def test_bertadam_matches_a_hand_written_step_without_bias_correction():
    torch.manual_seed(0)
    p0 = torch.randn(5, 3, dtype=torch.float64)
    grads = [torch.randn(5, 3, dtype=torch.float64) for _ in range(3)]
    param = torch.nn.Parameter(p0.clone())
    opt = BertAdam([param], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    ref, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for g in grads:
        param.grad = g.clone()
        opt.step()
        ref, m, v = _reference_step(ref, g, m, v, 0.1, 0.9, 0.999, 1e-6, 0.01)
        assert (param.detach() - ref).abs().max() < 1e-12
    # The first step of BertAdam moves by lr * 0.1 g / (sqrt(0.001) |g|): about 3.16 lr, not AdamW's lr.
    first = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    first.grad = torch.ones(1, dtype=torch.float64)
    BertAdam([first], lr=1.0, eps=0.0, weight_decay=0.0).step()
    assert float(first.detach()) == pytest.approx(-0.1 / 0.001**0.5)
    with pytest.raises(ValueError, match="invalid"):
        BertAdam([first], lr=-1.0)


def test_core_linear_schedule_gives_the_original_warmup_linear_learning_rates():
    """The original evaluates ``lr * warmup_linear(step / t_total, 0.1)`` with the step count before the update."""
    from alicemind.core.ops import build_scheduler

    def warmup_linear(x, warmup):
        return x / warmup if x < warmup else max((x - 1.0) / (warmup - 1.0), 0.0)

    param = torch.nn.Parameter(torch.zeros(1))
    opt = BertAdam([param], lr=5e-5)
    sched = build_scheduler(opt, "linear", num_training_steps=30, warmup_ratio=0.1)
    seen = []
    for _ in range(30):
        seen.append(opt.param_groups[0]["lr"])
        param.grad = torch.ones(1)
        opt.step()
        sched.step()
    expected = [5e-5 * warmup_linear(step / 30, 0.1) for step in range(30)]
    assert seen == pytest.approx(expected, rel=1e-12, abs=1e-18)
