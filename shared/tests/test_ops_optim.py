"""LAMB against a per-parameter reference, AdamW construction, and parameter grouping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alicemind.core.ops import Lamb, build_optimizer, param_groups


def _reference_lamb_step(p, g, state, lr, beta1, beta2, eps, wd, always_adapt=True, max_trust=None):
    """Textbook LAMB, one tensor at a time (Algorithm 2 of You et al. with Adam bias correction)."""
    state["t"] = state.get("t", 0) + 1
    m = state.setdefault("m", torch.zeros_like(p))
    v = state.setdefault("v", torch.zeros_like(p))
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).add_(g * g, alpha=1 - beta2)
    m_hat = m / (1 - beta1 ** state["t"])
    v_hat = v / (1 - beta2 ** state["t"])
    update = m_hat / (v_hat.sqrt() + eps) + wd * p
    if always_adapt or wd != 0:
        w_norm, u_norm = p.norm(), update.norm()
        trust = (w_norm / u_norm).item() if w_norm > 0 and u_norm > 0 else 1.0
        if max_trust is not None:
            trust = min(trust, max_trust)
    else:
        trust = 1.0
    p.sub_(lr * trust * update)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3))


@pytest.mark.parametrize("always_adapt,max_trust", [(True, None), (False, None), (True, 0.5)])
def test_lamb_matches_per_parameter_reference(always_adapt: bool, max_trust: float | None) -> None:
    model = _model()
    ref_params = [p.detach().clone() for p in model.parameters()]
    # A zero tensor exercises the "norm is 0 -> trust 1" branch.
    with torch.no_grad():
        model[0].bias.zero_()
        ref_params[1].zero_()
    groups = param_groups(model, weight_decay=0.1)
    opt = Lamb(groups, lr=0.01, betas=(0.8, 0.95), eps=1e-6, always_adapt=always_adapt, max_trust_ratio=max_trust)
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    wds = [wd_of[id(p)] for p in model.parameters()]
    assert sorted(set(wds)) == [0.0, 0.1]
    states = [{} for _ in ref_params]
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(4, 6, generator=gen)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        for p, g, s, wd in zip(ref_params, grads, states, wds):
            _reference_lamb_step(p, g, s, 0.01, 0.8, 0.95, 1e-6, wd, always_adapt, max_trust)
        # Re-sync inputs of the next gradient: only the update rule is under test, not error accumulation.
        for p, r in zip(model.parameters(), ref_params):
            torch.testing.assert_close(p.detach(), r, rtol=1e-6, atol=1e-7)
            r.copy_(p.detach())


def test_lamb_state_dict_round_trip_and_errors() -> None:
    model = _model()
    opt = Lamb(model.parameters(), lr=0.01)
    model(torch.randn(2, 6)).sum().backward()
    opt.step()
    clone = _model()
    opt2 = Lamb(clone.parameters(), lr=0.01)
    opt2.load_state_dict(opt.state_dict())
    first = next(iter(opt2.state.values()))
    assert first["step"] == 1 and first["exp_avg"].abs().sum() > 0
    with pytest.raises(ValueError, match="betas"):
        Lamb(model.parameters(), betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="lr must be"):
        Lamb(model.parameters(), lr=-1.0)


def test_lamb_reduces_loss() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = x @ torch.randn(6, 3)
    model = nn.Linear(6, 3)
    opt = build_optimizer(param_groups(model, 0.0), name="lamb", lr=0.05)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.05 * first


def test_build_optimizer_adamw_matches_torch_and_applies_group_settings() -> None:
    model = _model()
    groups = param_groups(model, weight_decay=0.01)
    opt = build_optimizer(groups, name="adamw", lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["fused"] is True  # torch has a fused CPU kernel
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.01}
    assert all(g["lr"] == 1e-3 and g["betas"] == (0.9, 0.98) for g in opt.param_groups)

    # Plain single-tensor torch AdamW over an identical copy, grouped the same way by parameter position.
    reference = _model()
    index = {id(p): i for i, p in enumerate(model.parameters())}
    ref_list = list(reference.parameters())
    ref_opt = torch.optim.AdamW(
        [{"params": [ref_list[index[id(p)]] for p in g["params"]], "weight_decay": g["weight_decay"]} for g in groups],
        lr=1e-3,
        betas=(0.9, 0.98),
        eps=1e-6,
        foreach=False,
    )
    x = torch.randn(3, 6)
    for m, o in ((model, opt), (reference, ref_opt)):
        m(x).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # Devices without a fused kernel fall back to the multi-tensor (foreach) implementation.
    meta = build_optimizer([nn.Parameter(torch.zeros(2, device="meta"))], name="adamw")
    assert meta.defaults["foreach"] is True and not meta.defaults["fused"]
    with pytest.raises(ValueError, match="unknown optimizer 'sgdx'"):
        build_optimizer(model.parameters(), name="sgdx")


class _CustomNorm(nn.Module):
    """A norm that is no nn.LayerNorm subclass, as in TF-ported BERTs (named 'LayerNorm' by convention)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))


class _TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(10, 4)
        self.emb_norm = nn.LayerNorm(4)
        self.layer = nn.ModuleList(
            nn.ModuleDict({"dense": nn.Linear(4, 4), "LayerNorm": _CustomNorm(4)}) for _ in range(2)
        )
        self.head = nn.Linear(4, 10)
        self.head.weight = self.embeddings.weight  # tied
        self.normalizer = nn.Parameter(torch.ones(4))  # a weight whose name merely contains "norm"


def test_param_groups_decay_split_by_module_type_and_names() -> None:
    model = _TinyEncoder()
    groups = param_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    by_wd = {g["weight_decay"]: sorted(names[id(p)] for p in g["params"]) for g in groups}
    assert by_wd[0.0] == sorted(
        ["emb_norm.weight", "emb_norm.bias", "head.bias"]
        + [f"layer.{i}.{n}" for i in range(2) for n in ("dense.bias", "LayerNorm.gamma", "LayerNorm.beta")]
    )
    assert by_wd[0.1] == sorted(["embeddings.weight", "layer.0.dense.weight", "layer.1.dense.weight", "normalizer"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))  # tied weight counted once


def test_param_groups_layerwise_lr_decay() -> None:
    model = _TinyEncoder()
    groups = param_groups(model, weight_decay=0.1, layerwise_lr_decay=0.5)
    opt = build_optimizer(groups, lr=1.0)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    # depth: embeddings 0, layer.0 -> 1, layer.1 -> 2, top (head bias, normalizer) -> 3
    assert lr_of[id(named["embeddings.weight"])] == pytest.approx(0.5**3)
    assert lr_of[id(named["emb_norm.bias"])] == pytest.approx(1.0)  # "emb_norm" has no "embed" part -> top
    assert lr_of[id(named["layer.0.dense.weight"])] == pytest.approx(0.5**2)
    assert lr_of[id(named["layer.1.LayerNorm.gamma"])] == pytest.approx(0.5)
    assert lr_of[id(named["head.bias"])] == pytest.approx(1.0)
    custom = param_groups(model, 0.0, layerwise_lr_decay=0.5, layer_id_fn=lambda n: 0 if n.startswith("emb") else None)
    assert sorted({g["lr_scale"] for g in custom}) == [0.5, 1.0]
    with pytest.raises(ValueError, match="layerwise_lr_decay"):
        param_groups(model, 0.0, layerwise_lr_decay=1.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
