"""ChildTuning-F statistics and the mask plumbing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions.bernoulli import Bernoulli

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


def _original_f_masking(params: list[nn.Parameter], p: float) -> None:
    """ChildTuning-F as the original ChildTuningAdamW.step re-states it (ChildTuning/ChildTuningOptimizer.py):
    per parameter with a gradient, in order, a Bernoulli distribution over a probability tensor shaped like the
    gradient, sampled from the global torch RNG, divided by p, multiplied into the gradient in place."""
    for param in params:
        if param.grad is None:
            continue
        grad = param.grad.data
        grad *= Bernoulli(grad.new_full(size=grad.size(), fill_value=p)).sample() / p


def _params_with_grads(seed: int) -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = [_param_with_grad(torch.randn(shape, generator=gen)) for shape in [(37, 11), (5,), (3, 4, 6)]]
    params.insert(1, nn.Parameter(torch.zeros(8)))  # no gradient: no draw, as in the original
    return params


@pytest.mark.parametrize("p", [0.2, 0.3, 1.0])
def test_f_default_sampler_draws_the_originals_masks_bitwise(p: float) -> None:
    ours, original = _params_with_grads(0), _params_with_grads(0)
    torch.manual_seed(11)
    for _ in range(3):  # several steps: the stream stays aligned step after step
        GradientMasker("F", p).apply_(ours)
    ours_next = torch.rand(4)  # same RNG consumption (also at p == 1, where the original still draws)
    torch.manual_seed(11)
    for _ in range(3):
        _original_f_masking(original, p)
    original_next = torch.rand(4)
    for a, b in zip(ours, original):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad)
    assert torch.equal(ours_next, original_next)
    if p < 1.0:
        assert int((ours[0].grad == 0).sum()) > 0
    # A seeded CPU generator gives the same masks as the seeded global stream.
    seeded = _params_with_grads(0)
    masker = GradientMasker("F", p, generator=torch.Generator().manual_seed(11))
    for _ in range(3):
        masker.apply_(seeded)
    for a, b in zip(seeded, original):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad)


def test_f_fast_sampler_is_another_stream_and_skips_p1() -> None:
    fast, original = _params_with_grads(0), _params_with_grads(0)
    torch.manual_seed(11)
    GradientMasker("F", 0.3, sampler="fast").apply_(fast)
    torch.manual_seed(11)
    _original_f_masking(original, 0.3)
    assert not torch.equal(fast[0].grad, original[0].grad)  # other masks for the same seed
    kept = fast[0].grad != 0
    assert 0 < int(kept.sum()) < kept.numel()
    full = _params_with_grads(0)[0].grad
    assert torch.equal(fast[0].grad[kept], (full * (torch.ones(()) / 0.3))[kept])  # kept entries rescaled by 1/p
    state = torch.get_rng_state()
    GradientMasker("F", 1.0, sampler="fast").apply_(fast)
    assert torch.equal(torch.get_rng_state(), state)  # no draw at p == 1
    with pytest.raises(ValueError, match="sampler must be one of"):
        GradientMasker("F", 0.3, sampler="bernoulli_")


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
