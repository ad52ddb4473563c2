"""CAP-f: importance and selection against brute force; the exported smaller model against the masked one."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from alicemind.cap import StructuredPruner, count_parameters, export_pruned, load_pruned, pruning_counts
from alicemind.cap.structured import select_heads, select_neurons


def _batches(tiny, collate, n=12, seed=0):
    feats = tiny.features(n, seed=seed)
    return [collate(feats[i : i + 4]) for i in range(0, n, 4)]


def _loss(model, batch):
    out = model(**batch)
    return out["loss"] if isinstance(out, dict) else out.loss


@pytest.mark.parametrize("kind", ["core", "hf_bert"])
def test_importance_equals_finite_differences(kind, tiny, collate):
    model = getattr(tiny, kind)().double()
    batches = _batches(tiny, collate)
    pruner = StructuredPruner(model)
    heads, neurons = pruner.compute_importance(batches, _loss, normalize_by_layer=False, progress=False)
    model.eval()
    eps = 1e-6

    def total_abs_derivative(mask, li, j):
        acc = 0.0
        for batch in batches:
            values = []
            for sign in (1, -1):
                mask[li, j] += sign * eps
                with torch.no_grad():
                    values.append(float(_loss(model, batch)))
                mask[li, j] -= sign * eps
            acc += abs((values[0] - values[1]) / (2 * eps))
        return acc

    for li, h in itertools.product(range(2), range(4)):
        assert abs(float(heads[li, h]) - total_abs_derivative(pruner.head_mask, li, h)) < 1e-5
    for li, j in [(0, 0), (0, 17), (1, 5), (1, 63)]:
        assert abs(float(neurons[li, j]) - total_abs_derivative(pruner.neuron_mask, li, j)) < 1e-5
    normed, _ = pruner.compute_importance(batches, _loss, normalize_by_layer=True, progress=False)
    expected = heads / (heads.pow(2).sum(-1, keepdim=True).sqrt() + 1e-20)
    torch.testing.assert_close(normed, expected)
    assert model.training is False  # restored to the mode it had (eval, set above)


def brute_force_heads(scores, n, old, at_least=1):
    """Enumerate: protect each layer's top-`at_least` (over all heads), prune the n lowest remaining active."""
    L, H = scores.shape
    protected = set()
    for li in range(L):
        ranked = sorted(range(H), key=lambda h: -float(scores[li, h]))
        protected |= {(li, h) for h in ranked[:at_least]}
    pool = [
        (float(scores[li, h]), li, h) for li in range(L) for h in range(H) if (li, h) not in protected and old[li, h]
    ]
    new = old.clone()
    for _, li, h in sorted(pool)[:n]:
        new[li, h] = 0
    return new


def test_head_and_neuron_selection_equal_brute_force():
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        scores = torch.rand(3, 5, generator=gen)
        old = (torch.rand(3, 5, generator=gen) > 0.3).float()
        n = trial % 6
        torch.testing.assert_close(select_heads(scores, n, old), brute_force_heads(scores, n, old))
        nscores, nold = torch.rand(3, 8, generator=gen), (torch.rand(3, 8, generator=gen) > 0.3).float()
        active = sorted((float(nscores[li, j]), li, j) for li in range(3) for j in range(8) if nold[li, j])
        expected = nold.clone()
        for _, li, j in active[: n * 2]:
            expected[li, j] = 0
        torch.testing.assert_close(select_neurons(nscores, n * 2, nold), expected)


def test_protection_is_chosen_among_pruned_heads_too():
    """The original's edge case: a layer whose best head was already pruned can lose all its active heads."""
    scores = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.6, 0.7]])
    old = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    new = select_heads(scores, 3, old)
    assert new[0].sum() == 0  # head 0 (protected) was already pruned; heads 1 and 2 go
    assert new[1].tolist() == [0.0, 1.0, 1.0]


def test_cumulative_counts_for_bert_base():
    seq = [i / 10 for i in range(1, 10)]
    assert pruning_counts(seq, 144) == [14, 28, 43, 57, 72, 86, 100, 115, 129]
    assert pruning_counts(seq, 12 * 3072) == [3686, 7372, 11059, 14745, 18432, 22118, 25804, 29491, 33177]


@pytest.mark.parametrize("kind", ["core", "hf_bert"])
def test_export_smaller_model_matches_masked_model(kind, tiny, collate, tmp_path):
    model = getattr(tiny, kind)().eval()
    pruner = StructuredPruner(model)
    gen = torch.Generator().manual_seed(1)
    heads, neurons = torch.rand(2, 4, generator=gen), torch.rand(2, 64, generator=gen)
    pruner.prune_to(0.5, heads, neurons)
    assert int((pruner.head_mask == 0).sum()) == 4 and int((pruner.neuron_mask == 0).sum()) == 64
    batch = _batches(tiny, collate)[0]
    batch.pop("labels")
    with torch.no_grad():
        masked = model(**batch)
    before = count_parameters(model)
    report = export_pruned(model, pruner, tmp_path / "small")
    hd, hidden = 8, 32
    removed_heads, removed_neurons = 4, 64
    per_head = 3 * (hd * hidden + hd) + hd * hidden  # Q, K, V rows with biases + attention-output columns
    per_neuron = hidden + 1 + hidden  # FFN-in row with bias + FFN-out column
    expected = before - removed_heads * per_head - removed_neurons * per_neuron
    assert report["parameters"] == expected and report["parameters_before"] == before
    assert sum(report["heads_per_layer"]) == 4 and sum(report["intermediate_per_layer"]) == 64
    cls = type(model)
    small = load_pruned(cls, tmp_path / "small")
    assert count_parameters(small) == expected
    with torch.no_grad():
        out = small(**batch)
    get = (lambda o: o["logits"]) if isinstance(masked, dict) else (lambda o: o.logits)
    torch.testing.assert_close(get(out), get(masked), atol=1e-5, rtol=1e-5)
    # the masked model still works after export (the pruner's hooks were not copied into the small model)
    with torch.no_grad():
        torch.testing.assert_close(get(model(**batch)), get(masked))


def test_fused_qkv_core_block_exports(tiny, collate, tmp_path):
    from alicemind.core.layers import BlockSpec, TransformerStack

    model = tiny.core().eval()
    spec = BlockSpec(32, 4, 64, dropout=0.0, attention_dropout=0.0, fused_qkv=True)
    model.encoder = TransformerStack(spec, 2)
    pruner = StructuredPruner(model)
    pruner.prune_to(0.25, torch.rand(2, 4), torch.rand(2, 64))
    batch = _batches(tiny, collate)[0]
    batch.pop("labels")
    with torch.no_grad():
        masked = model(**batch)["logits"]
    small = export_pruned(model, pruner, tmp_path / "fused")
    assert small["heads_per_layer"] == [3, 3] or sum(small["heads_per_layer"]) == 6
    from alicemind.cap.export import pruned_copy

    with torch.no_grad():
        torch.testing.assert_close(pruned_copy(model, pruner)(**batch)["logits"], masked, atol=1e-5, rtol=1e-5)
    assert isinstance(model, tiny.core_cls)


def test_exported_core_model_loads_with_plain_from_pretrained(tiny, collate, tmp_path):
    """The config gains per-block sizes that core's from_pretrained honours: no CAP code needed to load it."""
    model = tiny.core().eval()
    pruner = StructuredPruner(model)
    gen = torch.Generator().manual_seed(3)
    pruner.prune_to(0.5, torch.rand(2, 4, generator=gen), torch.rand(2, 64, generator=gen))
    batch = _batches(tiny, collate)[0]
    batch.pop("labels")
    with torch.no_grad():
        masked = model(**batch)["logits"]
    report = export_pruned(model, pruner, tmp_path / "small")
    config = json.loads((tmp_path / "small" / "config.json").read_text())
    assert config["layer_sizes"] == [
        {"module": f"encoder.layers.{i}", "num_attention_heads": h, "intermediate_size": n}
        for i, (h, n) in enumerate(zip(report["heads_per_layer"], report["intermediate_per_layer"]))
    ]
    assert "layer_sizes" not in model.config.extra  # the student's own config is untouched
    small = tiny.core_cls.from_pretrained(tmp_path / "small")
    assert small.source_format == "alicemind" and count_parameters(small) == report["parameters"]
    assert [b.self_attn.num_heads for b in small.encoder.layers] == report["heads_per_layer"]
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(**batch)["logits"], masked, atol=1e-5, rtol=1e-5)
    small.save_pretrained(tmp_path / "again")  # saves and loads again, still smaller
    assert count_parameters(tiny.core_cls.from_pretrained(tmp_path / "again")) == report["parameters"]
