"""The CRF's Viterbi decode and log-likelihood against brute force over every tag path."""

from __future__ import annotations

import itertools

import pytest
import torch

from alicemind.latticebert.crf import CRF


def path_score(crf, emissions, path):
    score = sum(float(emissions[t, tag]) for t, tag in enumerate(path))
    return score + sum(crf.transitions[a, b].item() for a, b in zip(path, path[1:]))


@pytest.mark.parametrize("seed", range(5))
def test_viterbi_and_partition_equal_brute_force(seed):
    torch.manual_seed(seed)
    tags, length = 3, 5
    crf = CRF(tags)
    torch.nn.init.normal_(crf.transitions)
    emissions = torch.randn(3, length, tags)
    lengths = [5, 3, 1]
    mask = torch.tensor([[1] * n + [0] * (length - n) for n in lengths])
    decoded = crf.decode(emissions, mask)
    log_z = crf.log_partition(emissions, mask)
    for row, n in enumerate(lengths):
        paths = list(itertools.product(range(tags), repeat=n))
        scores = torch.tensor([path_score(crf, emissions[row], p) for p in paths], dtype=torch.float64)
        assert tuple(decoded[row]) == paths[int(scores.argmax())]
        assert abs(log_z[row].item() - torch.logsumexp(scores, 0).item()) < 1e-4
        gold = torch.tensor([list(paths[0]) + [0] * (length - n)])
        got = crf.sequence_score(emissions[row : row + 1], gold, mask[row : row + 1])
        assert abs(got.item() - path_score(crf, emissions[row], paths[0])) < 1e-5


def test_nll_is_positive_and_mask_must_be_a_prefix():
    crf = CRF(2)
    emissions = torch.randn(1, 3, 2)
    assert crf(emissions, torch.tensor([[0, 1, 0]]), torch.ones(1, 3)).item() > 0
    with pytest.raises(ValueError, match="prefix"):
        crf.decode(emissions, torch.tensor([[1, 0, 1]]))
