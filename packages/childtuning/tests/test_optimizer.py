"""ChildTuningOptimizer: wraps any torch optimizer; works with LR schedulers, checkpoints and a plain loop."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from alicemind.childtuning import ChildTuningOptimizer, compute_fisher_mask


def _loss(model, batch) -> torch.Tensor:
    return model(**batch)["loss"]


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("key_by", ["name", "param"])
def test_wrapper_d_masked_entries_unchanged_with_adamw(tiny_model, batches, key_by: str) -> None:
    masks = compute_fisher_mask(tiny_model, batches, reserve_p=0.3, progress=False)
    if key_by == "param":
        named = dict(tiny_model.named_parameters())
        masks = {named[n]: m for n, m in masks.items()}
    inner = torch.optim.AdamW(tiny_model.parameters(), lr=1e-2, weight_decay=0.0)
    opt = ChildTuningOptimizer(inner, mode="D", reserve_p=0.3, masks=masks, model=tiny_model)
    before = _snapshot(tiny_model)
    for batch in batches * 2:
        _loss(tiny_model, batch).backward()
        opt.step()
        opt.zero_grad()
    after = _snapshot(tiny_model)
    named = dict(tiny_model.named_parameters())
    mask_by_name = masks if key_by == "name" else {n: masks[p] for n, p in named.items() if p in masks}
    assert len(mask_by_name) == 4
    for name in named:
        moved = after[name] != before[name]
        mask = mask_by_name.get(name)
        if mask is None:
            assert moved.all(), f"{name} (not masked) should be fully trained"
        else:
            assert not moved[~mask].any(), f"{name}: a masked entry moved"
            assert moved[mask].float().mean() > 0.9, f"{name}: the child did not train"


@pytest.mark.parametrize(
    "make_inner", [lambda ps: torch.optim.SGD(ps, lr=0.1), lambda ps: torch.optim.AdamW(ps, 0.01, weight_decay=0)]
)
def test_wrapper_f_masked_entries_unchanged_in_their_step(tiny_model, batches, make_inner) -> None:
    opt = ChildTuningOptimizer(
        make_inner(tiny_model.parameters()), mode="F", reserve_p=0.4, generator=torch.Generator().manual_seed(0)
    )
    steps = 3 if isinstance(opt.optimizer, torch.optim.SGD) else 1  # Adam's momentum moves masked entries later
    for batch in batches[:steps]:
        before = _snapshot(tiny_model)
        _loss(tiny_model, batch).backward()
        full = {n: p.grad.clone() for n, p in tiny_model.named_parameters()}
        opt.step()
        masked_total = 0
        for name, p in tiny_model.named_parameters():
            dropped = (p.grad == 0) & (full[name] != 0)  # grads are masked in place
            masked_total += int(dropped.sum())
            assert torch.equal(p.detach()[dropped], before[name][dropped]), name
            kept = p.grad != 0
            torch.testing.assert_close(p.grad[kept], full[name][kept] / 0.4)
        assert masked_total > 0
        opt.zero_grad()


def test_wrapper_p1_is_the_plain_optimizer_bitwise(model_cls, batches) -> None:
    torch.manual_seed(0)
    a = model_cls(dropout=0.0)
    b = model_cls(dropout=0.0)
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-2)
    opt_b = ChildTuningOptimizer(torch.optim.AdamW(b.parameters(), lr=1e-2), mode="F", reserve_p=1.0)
    for batch in batches:
        for m, o in ((a, opt_a), (b, opt_b)):
            _loss(m, batch).backward()
            o.step()
            o.zero_grad()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_lambda_lr_and_state_dict_round_trip(model_cls, batches) -> None:
    torch.manual_seed(0)
    model = model_cls(dropout=0.0)
    opt = ChildTuningOptimizer(torch.optim.AdamW(model.parameters(), lr=0.1), mode="F", reserve_p=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
        for batch in batches[:2]:
            _loss(model, batch).backward()
            opt.step()
            sched.step()
            opt.zero_grad()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 3)
    assert sched.get_last_lr() == [pytest.approx(0.1 / 3)]

    clone = model_cls(dropout=0.0)
    clone.load_state_dict(model.state_dict())
    opt2 = ChildTuningOptimizer(torch.optim.AdamW(clone.parameters(), lr=0.1), mode="F", reserve_p=0.5)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # state_dict() shares tensors with the live state
    assert opt2.optimizer.state_dict()["state"][0]["step"] == 2
    opt.masker.generator, opt2.masker.generator = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for m, o in ((model, opt), (clone, opt2)):
        _loss(m, batches[2]).backward()
        o.step()
    for pa, pb in zip(model.parameters(), clone.parameters()):
        assert torch.equal(pa, pb)


def test_plain_loop_loss_falls_and_closure_is_supported(model_cls, batch_factory) -> None:
    torch.manual_seed(0)
    model = model_cls(dropout=0.0)
    data = batch_factory(n_batches=2, batch=16, seed=1)
    masks = compute_fisher_mask(model, data, reserve_p=0.3, progress=False)
    opt = ChildTuningOptimizer(
        torch.optim.AdamW(model.parameters(), lr=5e-2), mode="D", reserve_p=0.3, masks=masks, model=model
    )

    def epoch_loss() -> float:
        with torch.no_grad():
            return sum(float(_loss(model, b)) for b in data)

    start = epoch_loss()
    for _ in range(60):
        for batch in data:

            def closure(batch=batch):
                opt.zero_grad()
                loss = _loss(model, batch)
                loss.backward()
                return loss

            assert isinstance(opt.step(closure), torch.Tensor)
    assert epoch_loss() < 0.5 * start


def test_wrapper_errors_are_clear(tiny_model) -> None:
    with pytest.raises(TypeError, match="wraps a torch.optim.Optimizer"):
        ChildTuningOptimizer(object(), mode="F", reserve_p=0.3)  # type: ignore[arg-type]
    inner = torch.optim.SGD(tiny_model.classifier.parameters(), lr=0.1)
    mask = torch.ones_like(tiny_model.encoder.layer[0].weight, dtype=torch.bool)
    with pytest.raises(ValueError, match="not optimized by the wrapped optimizer"):
        ChildTuningOptimizer(inner, mode="D", reserve_p=0.3, masks={"encoder.layer.0.weight": mask}, model=tiny_model)
    opt = ChildTuningOptimizer(inner, mode="D", reserve_p=0.3)
    tiny_model.classifier.weight.grad = torch.ones_like(tiny_model.classifier.weight)
    with pytest.raises(RuntimeError, match="no mask yet"):
        opt.step()
    with pytest.raises(ValueError, match="only valid in mode 'D'"):
        ChildTuningOptimizer(inner, mode="F", reserve_p=0.3).set_masks({}, model=tiny_model)
