"""SparseLinear against a plain-autograd reference written from the formulas, the mask count and the cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alicemind.pst import PSTConfig, SparseLinear, topk_mask

BETA, ALPHA1, ALPHA2 = 0.7, 1.3, 0.6


def _layer(d_in=7, d_out=5, sparsity=0.4, dtype=torch.float64) -> SparseLinear:
    cfg = PSTConfig(weight_rank=2, mask_rank=3, weight_beta=BETA, mask_alpha1=ALPHA1, mask_alpha2=ALPHA2)
    layer = SparseLinear.from_module(nn.Linear(d_in, d_out).to(dtype), cfg)
    with torch.no_grad():  # V, B, R, C start at zero; random values exercise every term
        for p in (layer.weight_V, layer.mask_scores_B, layer.mask_scores_R, layer.mask_scores_C):
            p.copy_(0.3 * torch.randn_like(p))
    layer.sparsity = sparsity
    return layer


def _reference(x, layer: SparseLinear, sparsity: float):
    """The reference's formulas with ordinary autograd; the straight-through mask is M + S - stop_grad(S)."""
    w0, b = layer.weight.detach(), layer.bias.detach()
    u, v, a, bb, r, c = (getattr(layer, n).detach().clone().requires_grad_() for n in
                         ("weight_U", "weight_V", "mask_scores_A", "mask_scores_B", "mask_scores_R", "mask_scores_C"))  # fmt: skip
    w = w0 + BETA * u @ v
    s = w.abs() + ALPHA1 * a @ bb + ALPHA2 * (r.unsqueeze(1) + c.unsqueeze(0))
    prune = int(s.numel() * sparsity)
    m = torch.ones_like(s)
    m.view(-1)[torch.argsort(s.detach().reshape(-1))[:prune]] = 0.0  # the original's argsort
    m_ste = m + s - s.detach()
    y = x @ (m_ste * w).t() + b
    return y, (u, v, a, bb, r, c), m


def test_forward_and_every_gradient_match_autograd_reference():
    layer = _layer()
    x = torch.randn(3, 4, 7, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y = layer(x)
    y_ref, ref_params, m = _reference(x_ref, layer, 0.4)
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(layer.mask(), m)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    y_ref.backward(grad_out)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-6, rtol=0)
    names = ("weight_U", "weight_V", "mask_scores_A", "mask_scores_B", "mask_scores_R", "mask_scores_C")
    for name, ref in zip(names, ref_params):
        torch.testing.assert_close(getattr(layer, name).grad, ref.grad, atol=1e-6, rtol=0, msg=name)
    assert layer.weight.grad is None and layer.bias.grad is None  # W0 and b stay frozen


def test_uv_gradient_has_both_paths():
    # dU = beta (M*G + sign(W) * G * W) V^T: the masked-weight path plus the |W| path inside the score.
    layer = _layer(sparsity=0.5)
    x = torch.randn(6, 7, dtype=torch.float64)
    grad_out = torch.randn(6, 5, dtype=torch.float64)
    layer(x).backward(grad_out)
    with torch.no_grad():
        w = layer.effective_weight()
        m = layer.mask()
        g = grad_out.t() @ x
        d_w = m * g + torch.sign(w) * g * w
        masked_only = m * g
    torch.testing.assert_close(layer.weight_U.grad, BETA * d_w @ layer.weight_V.t(), atol=1e-6, rtol=0)
    torch.testing.assert_close(layer.weight_V.grad, BETA * layer.weight_U.t() @ d_w, atol=1e-6, rtol=0)
    assert not torch.allclose(layer.weight_V.grad, BETA * layer.weight_U.t() @ masked_only)


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_mask_keeps_exactly_the_stated_count(sparsity):
    layer = _layer(d_in=24, d_out=16, sparsity=sparsity)
    kept = int(layer.mask().sum())
    assert kept == 16 * 24 - int(16 * 24 * sparsity)


def test_mask_count_is_exact_with_ties():
    scores = torch.tensor([[1.0, 2.0, 2.0, 2.0], [2.0, 2.0, 3.0, 0.5]])
    mask = topk_mask(scores, 0.5)  # prune 4 of 8; five entries tie at 2.0
    assert int(mask.sum()) == 4
    assert mask[0, 0] == 0 and mask[1, 3] == 0 and mask[1, 2] == 1


def test_rank_larger_than_matrix_is_an_error():
    with pytest.raises(ValueError, match="weight_rank=8 exceeds the matrix"):
        SparseLinear(6, 4, config=PSTConfig(weight_rank=8, mask_rank=2))
    with pytest.raises(ValueError, match="mask_rank=5 exceeds"):
        SparseLinear(6, 4, config=PSTConfig(weight_rank=2, mask_rank=5))


@pytest.mark.parametrize("bad", [{"final_sparsity": 1.0}, {"initial_sparsity": -0.1}, {"weight_rank": 0},
                                 {"initial_warmup": 0.5, "final_warmup": 0.5}])  # fmt: skip
def test_bad_config(bad):
    with pytest.raises(ValueError, match="PSTConfig"):
        PSTConfig(**bad)


def test_mask_recomputed_only_when_sparsity_or_scores_change():
    layer = _layer(dtype=torch.float32)
    opt = torch.optim.AdamW([p for p in layer.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(4, 7)
    layer(x).sum().backward()
    layer(x).sum().backward()  # a second micro-batch: same scores, same mask
    assert layer.mask_updates == 1
    opt.step()
    layer(x)
    assert layer.mask_updates == 2  # the step changed U, V, A, B, R, C in place
    layer.sparsity = 0.4  # same value
    layer(x)
    assert layer.mask_updates == 2
    layer.sparsity = 0.6
    layer(x)
    assert layer.mask_updates == 3


def test_eval_output_equals_training_output_with_same_mask():
    layer = _layer(dtype=torch.float32)
    x = torch.randn(4, 7)
    layer.train()
    y_train = layer(x)
    mask = layer.mask().clone()
    layer.eval()
    with torch.no_grad():
        y_eval = layer(x)
        y_eval_again = layer(x)
    assert layer.mask_updates == 1
    torch.testing.assert_close(layer.mask(), mask)
    torch.testing.assert_close(y_eval, y_train.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(y_eval_again, y_eval)


def test_starts_as_the_wrapped_linear():
    linear = nn.Linear(7, 5)
    layer = SparseLinear.from_module(linear, PSTConfig(weight_rank=2, mask_rank=2))
    x = torch.randn(3, 7)
    torch.testing.assert_close(layer(x), linear(x), atol=1e-6, rtol=0)  # V = 0 and sparsity 0 at init
    assert layer.num_pst_parameters() == (2 + 2) * (5 + 7) + 5 + 7
