"""CAP-m / CAP-soft / magnitude: the cubic schedule, exact final sparsity per scope, binary masks, export."""

from __future__ import annotations

import json

import pytest
import torch

from alicemind.cap import MaskedLinear, MovementPruner, cubic_threshold, export_pruned, load_pruned
from alicemind.cap.movement import topk_mask


def test_cubic_schedule_at_every_step():
    # w = 2, a = 1, c = 2, T = 12: flat until t = 2, cubic over (2, 8], flat after 8
    values = [cubic_threshold(t, initial=1.0, final=0.1, warmup_steps=2, total_steps=12, initial_warmup=1,
                              final_warmup=2) for t in range(13)]  # fmt: skip
    expected = [1.0, 1.0, 1.0] + [0.1 + 0.9 * (1 - (t - 2) / 6) ** 3 for t in range(3, 9)] + [0.1] * 4
    assert values == pytest.approx(expected, abs=1e-12)
    # the QQP script: flat until step 22,000, cubic until 80,710, then flat (techniques.md §3.4)
    qqp = dict(initial=1.0, final=0.03, warmup_steps=11000, total_steps=113710, initial_warmup=2, final_warmup=3)
    assert cubic_threshold(22000, **qqp) == 1.0 and cubic_threshold(22001, **qqp) < 1.0
    assert cubic_threshold(80710, **qqp) == pytest.approx(0.03) and cubic_threshold(80711, **qqp) == 0.03


def _train(model, pruner, batches, steps, lr=1e-2):
    opt = torch.optim.AdamW(pruner.param_groups(lr, 0.1), lr=lr)
    for step in range(steps):
        pruner.set_step(step)
        out = model(**batches[step % len(batches)])
        loss = out["loss"] if isinstance(out, dict) else out.loss
        (loss + pruner.regularization()).backward()
        opt.step()
        opt.zero_grad()
    pruner.set_step(steps)


def _batches(tiny, collate):
    feats = tiny.features(16)
    return [collate(feats[i : i + 4]) for i in range(0, 16, 4)]


@pytest.mark.parametrize("kind", ["core", "hf_bert"])
def test_local_topk_reaches_exact_sparsity_per_matrix(kind, tiny, collate):
    model = getattr(tiny, kind)()
    pruner = MovementPruner(model, final_sparsity=0.9, total_steps=6, warmup_steps=1, initial_warmup=1,
                            final_warmup=1)  # fmt: skip
    assert len(pruner.masked) == 12  # Q K V O, FFN in/out in each of 2 layers
    sparsities = []
    for step in range(7):
        pruner.set_step(step)
        sparsities.append(pruner.sparsity_report()["overall"])
    keep = [pruner.threshold_at(s) for s in range(7)]
    sizes = [m.weight.numel() for m in pruner.masked.values()]
    expected = [1 - sum(int(k * n) for n in sizes) / sum(sizes) for k in keep]
    assert sparsities == pytest.approx(expected, abs=1e-12)
    _train(model, pruner, _batches(tiny, collate), 6)
    for name, mask in pruner.masks().items():
        assert set(mask.unique().tolist()) <= {0.0, 1.0}, name
        assert int(mask.sum()) == int(0.1 * mask.numel()), name


def test_global_topk_reaches_exact_total_sparsity(tiny, collate):
    model = tiny.core()
    pruner = MovementPruner(model, scope="global", final_sparsity=0.8, total_steps=4, warmup_steps=1,
                            initial_warmup=0, final_warmup=1)  # fmt: skip
    _train(model, pruner, _batches(tiny, collate), 4)
    masks = pruner.masks()
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == int(0.2 * total)
    assert len({round(float(m.mean()), 3) for m in masks.values()}) > 1  # per-matrix densities differ
    assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in masks.values())


def test_straight_through_gradient_to_scores():
    torch.manual_seed(0)
    layer = MaskedLinear(torch.nn.Linear(5, 4), "topk")
    layer.threshold = 0.5
    x = torch.randn(3, 5)
    layer(x).pow(2).sum().backward()
    mask = layer.compute_mask().detach()
    w_eff = (layer.weight * mask).detach().requires_grad_(True)
    torch.nn.functional.linear(x, w_eff, layer.bias.detach()).pow(2).sum().backward()
    torch.testing.assert_close(layer.mask_scores.grad, w_eff.grad * layer.weight.detach())


def test_soft_movement_threshold_floor_and_l1(tiny):
    model = tiny.core()
    pruner = MovementPruner(model, method="sigmoied_threshold", total_steps=10, soft_final_threshold=0.1,
                            final_lambda=5.0, initial_warmup=0, final_warmup=0, warmup_steps=0)  # fmt: skip
    layer = next(iter(pruner.masked.values()))
    floor = int(0.005 * layer.weight.numel()) + 1
    with torch.no_grad():
        layer.mask_scores.fill_(-10.0)
        layer.mask_scores.view(-1)[:10] = torch.linspace(-9, -8, 10)  # all sigmoids < 0.1: nothing passes
    pruner.set_step(10)
    mask = layer.compute_mask().detach()
    assert int(mask.sum()) == floor and bool(mask.view(-1)[10 - floor : 10].all())  # the floor: top scores kept
    with torch.no_grad():
        layer.mask_scores.view(-1)[:20] = 1.0  # sigmoid 0.73 > 0.1: exactly these 20 pass
    assert int(layer.compute_mask().detach().sum()) == 20
    pruner.set_step(5)
    lam = 5.0 * pruner.threshold / 0.1
    terms = [torch.sigmoid(m.mask_scores).mean() for m in pruner.masked.values()]
    assert float(pruner.regularization().detach()) == pytest.approx(
        float(lam * torch.stack(terms).mean().detach()), rel=1e-6
    )


def test_magnitude_pruning_keeps_largest_weights(tiny):
    model = tiny.core()
    pruner = MovementPruner(model, method="magnitude", final_sparsity=0.5, total_steps=1, initial_warmup=0,
                            final_warmup=0)  # fmt: skip
    pruner.set_step(1)
    layer = next(iter(pruner.masked.values()))
    mask = layer.compute_mask().detach()
    kept, dropped = layer.weight.detach().abs()[mask == 1], layer.weight.detach().abs()[mask == 0]
    assert float(kept.min()) >= float(dropped.max()) and int(mask.sum()) == layer.weight.numel() // 2
    assert not pruner.score_parameters()


def test_unstructured_export_saves_masked_weights_and_report(tiny, collate, tmp_path):
    model = tiny.core().eval()
    pruner = MovementPruner(model, final_sparsity=0.75, total_steps=1, initial_warmup=0, final_warmup=0)
    pruner.set_step(1)
    batch = _batches(tiny, collate)[0]
    with torch.no_grad():
        masked = model(**batch)["logits"]
    report = export_pruned(model, pruner, tmp_path / "sparse")
    on_disk = json.loads((tmp_path / "sparse" / "sparsity_report.json").read_text())
    assert on_disk["overall"] == pytest.approx(0.75) and len(on_disk["per_matrix"]) == 12
    assert all(v == pytest.approx(0.75) for v in report["per_matrix"].values())
    assert not any(isinstance(m, MaskedLinear) for m in model.modules())
    loaded = load_pruned(tiny.core_cls, tmp_path / "sparse")
    w = loaded.encoder.layers[0].self_attn.q_proj.weight
    assert float((w == 0).float().mean()) == pytest.approx(0.75)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch)["logits"], masked)
    reloaded = tiny.core_cls.from_pretrained(tmp_path / "sparse")  # the class's own strict loader reads it too
    torch.testing.assert_close(reloaded.encoder.layers[0].self_attn.q_proj.weight, w)


def test_mask_follows_the_scores_under_fused_adamw_at_a_constant_threshold(tiny):
    # Fused AdamW updates parameters without bumping their version counter; after the schedule reaches its final
    # sparsity the threshold no longer changes either, so only set_step can tell the mask that the scores moved.
    from alicemind.core.ops import build_optimizer

    model = tiny.core()
    pruner = MovementPruner(model, final_sparsity=0.5, total_steps=4, warmup_steps=0, initial_warmup=0,
                            final_warmup=0)  # fmt: skip
    pruner.set_step(4)
    layer = next(iter(pruner.masked.values()))
    before = layer.compute_mask().detach().clone()
    scores = layer.mask_scores
    optimizer = build_optimizer([{"params": [scores], "weight_decay": 0.0}], lr=1.0)
    assert optimizer.defaults.get("fused")
    version = scores._version
    scores.grad = -torch.randn_like(scores)  # a step that moves every score by about lr, in random directions
    optimizer.step()
    assert scores._version == version  # what made the cached mask stale
    pruner.set_step(4)
    after = layer.compute_mask().detach()
    assert torch.equal(after, topk_mask(scores.detach(), 0.5)) and not torch.equal(after, before)
