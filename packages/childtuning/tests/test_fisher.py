"""ChildTuning-D: the Fisher pass and mask against a brute-force numpy reference of the original algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alicemind.childtuning import compute_fisher_mask, fisher_information, global_percentile_threshold, select_top_p


def _reference_fisher(model, batches, max_grad_norm: float) -> dict[str, np.ndarray]:
    """The original, spelled out: per batch, per-tensor clip, F += g^2 / N, in float64 numpy."""
    names = [n for n, _ in model.named_parameters() if "layer" in n]
    params = dict(model.named_parameters())
    fisher = {n: np.zeros(tuple(params[n].shape)) for n in names}
    model.train()
    for batch in batches:
        model.zero_grad()
        model(**batch)["loss"].backward()
        for n in names:
            g = params[n].grad.double().numpy()
            coef = min(1.0, max_grad_norm / (np.sqrt((g**2).sum()) + 1e-6))
            fisher[n] += (g * coef) ** 2 / len(batches)
    model.zero_grad()
    return fisher


@pytest.mark.parametrize("reserve_p", [0.1, 0.3, 0.5])
def test_d_mask_equals_bruteforce_numpy_reference(tiny_model, batches, reserve_p: float) -> None:
    torch.manual_seed(123)  # same dropout draws in both passes
    masks = compute_fisher_mask(tiny_model, batches, reserve_p=reserve_p, progress=False)
    torch.manual_seed(123)
    ref = _reference_fisher(tiny_model, batches, max_grad_norm=1.0)

    # Selection: 'layer' in name, case-sensitive (embeddings.LayerNorm is out, encoder.layer.N is in).
    assert sorted(masks) == [
        "encoder.layer.0.bias",
        "encoder.layer.0.weight",
        "encoder.layer.1.bias",
        "encoder.layer.1.weight",
    ]
    threshold = np.percentile(np.concatenate([f.ravel() for f in ref.values()]), (1 - reserve_p) * 100)
    for name, f in ref.items():
        np.testing.assert_array_equal(masks[name].numpy(), f >= threshold, err_msg=name)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert abs(kept - reserve_p * total) <= 1


def test_fisher_values_match_reference_and_clip_is_per_tensor(tiny_model, batches) -> None:
    torch.manual_seed(7)
    fisher = fisher_information(tiny_model, batches, progress=False)
    torch.manual_seed(7)
    ref = _reference_fisher(tiny_model, batches, max_grad_norm=1.0)
    for name, f in ref.items():
        np.testing.assert_allclose(fisher[name].numpy(), f, rtol=1e-5, atol=1e-12)
    # Every batch gradient is clipped per tensor to norm 1, so each tensor's F sums to at most 1.
    assert all(float(f.sum()) <= 1.0 + 1e-5 for f in fisher.values())
    torch.manual_seed(7)
    unclipped = fisher_information(tiny_model, batches, max_grad_norm=None, progress=False)
    assert any(float(f.sum()) > 1.5 for f in unclipped.values())


def test_selection_is_exactly_numpy_percentile_with_ties() -> None:
    gen = torch.Generator().manual_seed(3)
    for trial in range(40):
        fisher = {
            f"t{i}": torch.rand(int(torch.randint(1, 40, (), generator=gen)), generator=gen) ** 4 for i in range(3)
        }
        if trial % 2:
            fisher = {k: (v * 8).round() / 8 for k, v in fisher.items()}  # many ties
        p = float(torch.rand((), generator=gen)) * 0.9 + 0.05
        flat = np.concatenate([v.numpy() for v in fisher.values()])
        ref = np.percentile(flat, (1 - p) * 100)
        assert global_percentile_threshold(fisher.values(), (1 - p) * 100) == float(ref)
        masks = select_top_p(fisher, p)
        for k, v in fisher.items():
            np.testing.assert_array_equal(masks[k].numpy(), v.numpy() >= ref)
    with pytest.raises(ValueError, match="finite and non-negative"):
        global_percentile_threshold([torch.tensor([1.0, float("nan")])], 50.0)


def test_fisher_pass_restores_mode_zeroes_grads_and_accepts_custom_filter_and_loss(tiny_model, batches) -> None:
    tiny_model.eval()
    calls = []

    def loss_fn(model, batch):
        calls.append(model.training)
        return model(**batch)["loss"]

    masks = compute_fisher_mask(
        tiny_model,
        iter(batches),
        loss_fn,
        reserve_p=0.25,
        param_filter=lambda n, p: n.startswith("classifier"),
        progress=False,
    )
    assert calls == [True] * len(batches)  # train mode (dropout on) during the pass
    assert not tiny_model.training  # previous mode restored
    assert all(p.grad is None for p in tiny_model.parameters())
    assert sorted(masks) == ["classifier.bias", "classifier.weight"]
    with pytest.raises(ValueError, match="no trainable parameter matches"):
        compute_fisher_mask(tiny_model, batches, reserve_p=0.3, param_filter=lambda n, p: False, progress=False)
    with pytest.raises(ValueError, match="yielded no batch"):
        compute_fisher_mask(tiny_model, [], reserve_p=0.3, progress=False)
    with pytest.raises(TypeError, match="needs dict batches"):
        compute_fisher_mask(tiny_model, [(1, 2)], reserve_p=0.3, progress=False)


@pytest.mark.parametrize("n_batches", [3, 7])
def test_fisher_accumulates_with_the_originals_division_bitwise(n_batches: int) -> None:
    # The original accumulates ``F += grad ** 2 / N`` (ChildTuning/ChildTuningD.py, calculate_fisher); in float32
    # that rounds differently from ``grad ** 2 * (1 / N)``, so the bits must come from the same expression.
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(64, 33, generator=gen) for _ in range(n_batches)]
    model = torch.nn.Module()
    model.layer = torch.nn.Parameter(torch.zeros(64, 33))

    def loss_fn(m, g):
        return (m.layer * g).sum()  # d loss / d layer = g

    fisher = fisher_information(model, grads, loss_fn, max_grad_norm=None, progress=False)["layer"]
    original = torch.zeros(64, 33)
    times_reciprocal = torch.zeros(64, 33)
    for g in grads:
        original += (g**2) / n_batches
        times_reciprocal += (g**2) * (1.0 / n_batches)
    assert torch.equal(fisher, original)
    assert not torch.equal(original, times_reciprocal)  # the test can tell the two formulas apart
