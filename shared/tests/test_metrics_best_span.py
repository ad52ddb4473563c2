"""core.metrics.best_span: the one answer-span rule that structbert's predict, cap's SQuAD eval and the
question-answering pipeline share."""

from __future__ import annotations

import numpy as np
import torch

from alicemind.core.metrics import best_span


def test_the_best_allowed_pair_within_the_length_bound():
    start = np.array([9.0, 1.0, 0.5, 0.0, 0.0, 0.0])
    end = np.array([9.0, 0.0, 0.2, 0.0, 3.0, 0.0])
    allowed = [False, True, True, True, True, True]  # position 0 is the question's [CLS]
    assert best_span(start, end, allowed) == (1, 4, 4.0)
    # A bound of 3 pieces rules out 1..4; the best left is 1..2 (1.0 + 0.2) against 2..4 (0.5 + 3.0).
    assert best_span(start, end, allowed, max_answer_length=3) == (2, 4, 3.5)
    assert best_span(start, end, allowed, max_answer_length=1) == (4, 4, 3.0)


def test_an_end_before_its_start_is_never_chosen():
    start = np.array([0.0, 0.0, 5.0])
    end = np.array([5.0, 0.0, 1.0])  # start 2 with end 0 would score 10
    assert best_span(start, end, [True, True, True]) == (2, 2, 6.0)


def test_ties_give_the_first_pair_and_tensors_are_accepted():
    flat = torch.zeros(4)
    assert best_span(flat, flat, torch.tensor([False, True, True, True])) == (1, 1, 0.0)


def test_nothing_allowed_gives_none():
    assert best_span(np.ones(3), np.ones(3), [0, 0, 0]) is None
