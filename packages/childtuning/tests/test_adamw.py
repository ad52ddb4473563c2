"""ChildTuningAdamW: parity with the original's per-parameter algorithm, defaults versus original quirks."""

from __future__ import annotations

import math

import pytest
import torch

from alicemind.childtuning import ORIGINAL_QUIRKS, ChildTuningAdamW, compute_fisher_mask


def _groups(model) -> list[dict]:
    decay = [p for n, p in model.named_parameters() if "bias" not in n and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    return [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]


class ReferenceChildTuningAdamW:
    """The algorithm as the original ChildTuningAdamW runs it: one parameter at a time, HF-AdamW update."""

    def __init__(self, groups, lr, mode, reserve_p, masks, generator, decay_masked: bool, decay_after: bool):
        self.groups, self.lr, self.mode, self.p, self.masks, self.gen = groups, lr, mode, reserve_p, masks, generator
        self.decay_masked, self.decay_after = decay_masked, decay_after
        self.state: dict[torch.Tensor, dict] = {}

    @torch.no_grad()
    def step(self) -> None:
        b1, b2, eps = 0.9, 0.999, 1e-6
        for group in self.groups:
            rate = self.lr * group["weight_decay"]
            for p in group["params"]:
                g = p.grad
                mask = self.masks.get(p) if self.mode == "D" else None
                if self.mode == "F":
                    # Bernoulli(g.new_full(g.size(), p)).sample() is torch.bernoulli over the probabilities.
                    g = g * (torch.bernoulli(g.new_full(g.size(), self.p), generator=self.gen) / self.p)
                elif mask is not None:
                    g = g * mask
                st = self.state.setdefault(p, {"t": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
                st["t"] += 1
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = st["v"].sqrt().add_(eps)
                step_size = self.lr * math.sqrt(1 - b2 ** st["t"]) / (1 - b1 ** st["t"])
                spare = mask is not None and not self.decay_masked
                if rate and not self.decay_after:
                    p.addcmul_(p, mask, value=-rate) if spare else p.mul_(1 - rate)
                p.addcdiv_(st["m"], denom, value=-step_size)
                if rate and self.decay_after:
                    p.addcmul_(p, mask, value=-rate) if spare else p.add_(p, alpha=-rate)


def _run_pair(model_cls, batches, mode: str, quirks: bool):
    torch.manual_seed(0)
    a = model_cls(dropout=0.0)
    b = model_cls(dropout=0.0)
    b.load_state_dict(a.state_dict())
    init = {n: t.clone() for n, t in a.state_dict().items()}
    masks = compute_fisher_mask(a, batches, reserve_p=0.3, progress=False) if mode == "D" else None
    flags = ORIGINAL_QUIRKS if quirks else {}
    opt = ChildTuningAdamW(
        _groups(a), lr=1e-2, mode=mode, reserve_p=0.3, masks=masks, model=a,
        generator=torch.Generator().manual_seed(4), **flags,
    )  # fmt: skip
    named_b = dict(b.named_parameters())
    ref = ReferenceChildTuningAdamW(
        _groups(b), 1e-2, mode, 0.3, {named_b[n]: m for n, m in (masks or {}).items()},
        torch.Generator().manual_seed(4), decay_masked=quirks, decay_after=quirks,
    )  # fmt: skip
    for batch in batches:
        for model, o in ((a, opt), (b, ref)):
            model(**batch)["loss"].backward()
            o.step()
            model.zero_grad()
    return a, b, init


@pytest.mark.parametrize("mode", ["F", "D", None])
@pytest.mark.parametrize("quirks", [True, False])
def test_matches_reference_algorithm(model_cls, batches, mode: str | None, quirks: bool) -> None:
    a, b, init = _run_pair(model_cls, batches, mode, quirks)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-7, msg=name)
        assert not torch.equal(pa, init[name]), f"{name} did not train"


def test_default_leaves_d_masked_entries_untouched_even_with_weight_decay(model_cls, batches) -> None:
    torch.manual_seed(0)
    model = model_cls(dropout=0.0)
    masks = compute_fisher_mask(model, batches, reserve_p=0.3, progress=False)
    weight = model.encoder.layer[0].weight
    before = weight.detach().clone()
    opt = ChildTuningAdamW(
        model.parameters(), lr=1e-2, weight_decay=0.1, mode="D", reserve_p=0.3, masks=masks, model=model
    )
    for batch in batches:
        model(**batch)["loss"].backward()
        opt.step()
        opt.zero_grad()
    mask = masks["encoder.layer.0.weight"]
    assert torch.equal(weight.detach()[~mask], before[~mask])
    assert (weight.detach()[mask] != before[mask]).all()


def test_original_quirk_decays_d_masked_entries_after_the_update(model_cls, batches) -> None:
    torch.manual_seed(0)
    model = model_cls(dropout=0.0)
    masks = compute_fisher_mask(model, batches, reserve_p=0.3, progress=False)
    weight = model.encoder.layer[0].weight
    expected = weight.detach().clone()
    lr, wd = 1e-2, 0.1
    opt = ChildTuningAdamW(
        model.parameters(), lr=lr, weight_decay=wd, mode="D", reserve_p=0.3, masks=masks, model=model, **ORIGINAL_QUIRKS
    )
    for batch in batches:
        model(**batch)["loss"].backward()
        opt.step()
        opt.zero_grad()
        expected.add_(expected, alpha=-lr * wd)  # zero gradient and moments: only the decay moves them
    mask = masks["encoder.layer.0.weight"]
    assert torch.equal(weight.detach()[~mask], expected[~mask])
    assert (weight.detach()[~mask] != 0).all()


def test_f_masked_entries_unchanged_in_first_step_and_loss_falls(model_cls, batch_factory) -> None:
    torch.manual_seed(0)
    model = model_cls(dropout=0.0)
    data = batch_factory(n_batches=2, batch=16, seed=1)
    opt = ChildTuningAdamW(
        model.parameters(), lr=5e-2, mode="F", reserve_p=0.4, generator=torch.Generator().manual_seed(0)
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(**data[0])["loss"].backward()
    opt.step()
    dropped_total = 0
    for name, p in model.named_parameters():
        dropped = p.grad == 0
        dropped_total += int(dropped.sum())
        assert torch.equal(p.detach()[dropped], before[name][dropped]), name
    assert dropped_total > 0
    opt.zero_grad()

    def total_loss() -> float:
        with torch.no_grad():
            return sum(float(model(**b)["loss"]) for b in data)

    start = total_loss()
    for _ in range(60):
        for batch in data:
            model(**batch)["loss"].backward()
            opt.step()
            opt.zero_grad()
    assert total_loss() < 0.5 * start


def test_default_is_plain_adamw_like_the_original(model_cls, batches) -> None:
    # The original ChildTuningAdamW defaults to mode=None, reserve_p=1.0 (ChildTuning/ChildTuningOptimizer.py):
    # no masking at all, and no random draw.
    torch.manual_seed(0)
    a, b = model_cls(dropout=0.0), model_cls(dropout=0.0)
    b.load_state_dict(a.state_dict())
    opt = ChildTuningAdamW(a.parameters(), lr=1e-2)
    assert opt.mode is None and opt.masker is None
    ref = ReferenceChildTuningAdamW(
        [{"params": list(b.parameters()), "weight_decay": 0.0}], 1e-2, None, 1.0, {}, None,
        decay_masked=False, decay_after=False,
    )  # fmt: skip
    for batch in batches:
        for model in (a, b):
            model(**batch)["loss"].backward()
        grads = [p.grad.clone() for p in a.parameters()]
        state = torch.get_rng_state()
        opt.step()
        ref.step()
        assert torch.equal(torch.get_rng_state(), state)  # nothing drawn
        assert all(torch.equal(g, p.grad) for g, p in zip(grads, a.parameters()))  # gradients not masked
        a.zero_grad()
        b.zero_grad()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    with pytest.raises(ValueError, match="only used by ChildTuning-D"):
        ChildTuningAdamW(a.parameters(), masks={})
    with pytest.raises(ValueError, match="only valid in mode 'D'"):
        opt.set_masks({})
