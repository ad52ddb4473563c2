"""ChildTuning-F statistics and the mask plumbing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from alicemind.childtuning.masking import GradientMasker, normalize_mode, resolve_masks


def _param_with_grad(grad: torch.Tensor) -> nn.Parameter:
    p = nn.Parameter(torch.zeros_like(grad))
    p.grad = grad.clone()
    return p


@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_f_keeps_about_p_of_entries_and_rescales_by_1_over_p(p: float) -> None:
    n = 200_000
    param = _param_with_grad(torch.ones(400, 500))
    GradientMasker("F", p, generator=torch.Generator().manual_seed(1)).apply_([param])
    kept = int((param.grad != 0).sum())
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(kept - n * p) <= 5 * sigma, (kept, n * p, sigma)
    kept_values = param.grad[param.grad != 0]
    torch.testing.assert_close(kept_values, torch.full_like(kept_values, 1.0 / p))


def test_f_masked_gradient_is_unbiased() -> None:
    p, draws = 0.3, 4000
    grad = torch.randn(64, generator=torch.Generator().manual_seed(0))
    masker = GradientMasker("F", p, generator=torch.Generator().manual_seed(2))
    param = _param_with_grad(grad)
    total = torch.zeros_like(grad, dtype=torch.float64)
    for _ in range(draws):
        param.grad.copy_(grad)
        masker.apply_([param])
        total += param.grad.double()
    mean = total / draws
    # Each entry: mean of `draws` i.i.d. g * Bernoulli(p) / p, std |g| sqrt((1 - p) / p) / sqrt(draws).
    std = grad.double().abs() * math.sqrt((1 - p) / p) / math.sqrt(draws)
    assert torch.all((mean - grad.double()).abs() <= 5 * std + 1e-12)
    # Not trivially unbiased: a single draw is far from the gradient.
    param.grad.copy_(grad)
    masker.apply_([param])
    assert not torch.allclose(param.grad, grad)


def test_f_generator_makes_masks_reproducible_and_p1_is_identity() -> None:
    grad = torch.randn(30, 7)
    a, b = _param_with_grad(grad), _param_with_grad(grad)
    GradientMasker("F", 0.4, generator=torch.Generator().manual_seed(5)).apply_([a])
    GradientMasker("F", 0.4, generator=torch.Generator().manual_seed(5)).apply_([b])
    assert torch.equal(a.grad, b.grad)
    c = _param_with_grad(grad)
    GradientMasker("F", 1.0).apply_([c])
    assert torch.equal(c.grad, grad)


def test_d_applies_fixed_mask_without_rescale_and_leaves_others() -> None:
    grad = torch.randn(4, 5)
    masked, free = _param_with_grad(grad), _param_with_grad(grad)
    mask = torch.rand(4, 5) > 0.5
    GradientMasker("D", 0.5, {masked: mask}).apply_([masked, free])
    assert torch.equal(masked.grad, grad * mask)
    assert torch.equal(free.grad, grad)


def test_name_keyed_masks_resolve_to_parameters_once() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    mask = torch.tensor([[True, False, True], [False, False, True]])
    resolved = resolve_masks({"0.weight": mask}, model)
    assert list(resolved) == [model[0].weight] and torch.equal(resolved[model[0].weight], mask)
    with pytest.raises(ValueError, match="needs the model"):
        resolve_masks({"0.weight": mask})
    with pytest.raises(KeyError, match="not a parameter"):
        resolve_masks({"1.weight": mask}, model)
    with pytest.raises(ValueError, match="shape"):
        resolve_masks({"0.bias": mask}, model)


def test_invalid_settings_raise_clear_errors() -> None:
    assert normalize_mode("ChildTuning-D") == "D" and normalize_mode("f") == "F"
    with pytest.raises(ValueError, match="mode must be 'F' or 'D'"):
        normalize_mode("E")
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="reserve_p must be in"):
            GradientMasker("F", bad)
    with pytest.raises(ValueError, match="only used by ChildTuning-D"):
        GradientMasker("F", 0.3, {})
    with pytest.raises(RuntimeError, match="no mask yet"):
        GradientMasker("D", 0.3).apply_([])
    emb = nn.Embedding(5, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        GradientMasker("F", 0.5).apply_(emb.parameters())
