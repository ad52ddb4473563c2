"""The contrastive loss against a plain-loop reference written from techniques.md §3.1, and module switching."""

from __future__ import annotations

import math

import pytest
import torch

from alicemind.cap import CapConfig, ContrastiveLoss, RepresentationBank, bank_contrastive_loss, distillation_loss


def reference_loss(query, idx, labels, bank_rows, extra_rows, extra_idx, extra_labels, tau, w_u, w_s):
    """Loops over the formulas: keys [stopgrad q_i, B[idx_i, 1..R]] per item, then the extra rows; self masked."""
    b, r, _ = bank_rows.shape
    norm = lambda v: [x / math.sqrt(sum(y * y for y in v)) for x in v]  # noqa: E731
    q = [norm(query[i].tolist()) for i in range(b)]
    keys, key_idx, key_lab, self_col = [], [], [], []
    for i in range(b):
        self_col.append(len(keys))
        keys.append(q[i])
        key_idx.append(int(idx[i]))
        key_lab.append(int(labels[i]))
        for j in range(r):
            keys.append(bank_rows[i, j].tolist())
            key_idx.append(int(idx[i]))
            key_lab.append(int(labels[i]))
    for e in range(extra_rows.shape[0]):
        for j in range(r):
            keys.append(extra_rows[e, j].tolist())
            key_idx.append(int(extra_idx[e]))
            key_lab.append(int(extra_labels[e]))
    total = 0.0
    for own, weight in ((key_idx, w_u), (key_lab, w_s)):
        numerator, count = 0.0, 0
        for i in range(b):
            logits = [sum(a * c for a, c in zip(q[i], k)) / tau for k in keys]
            logits[self_col[i]] = -1e6
            m = max(logits)
            lse = m + math.log(sum(math.exp(x - m) for x in logits))
            target = int(idx[i]) if own is key_idx else int(labels[i])
            positives = [j for j in range(len(keys)) if own[j] == target and j != self_col[i]]
            for j in positives:
                numerator += (logits[j] - lse) / len(positives)
            count += len(positives)
        total += -weight * numerator / count
    return total


@pytest.mark.parametrize("r", [1, 3])
def test_bank_loss_equals_plain_loop_reference(r):
    gen = torch.Generator().manual_seed(r)
    b, h, n_extra = 4, 6, 5
    query = torch.randn(b, h, generator=gen, dtype=torch.float64)
    idx = torch.tensor([3, 0, 7, 5])
    labels = torch.tensor([1, 0, 1, 2])
    unit = lambda t: torch.nn.functional.normalize(t, dim=-1)  # noqa: E731
    bank_rows = unit(torch.randn(b, r, h, generator=gen, dtype=torch.float64))
    extra_idx = torch.tensor([7, 1, 2, 9, 4])  # index 7 is also a batch item: its extra copies are positives
    extra_rows = unit(torch.randn(n_extra, r, h, generator=gen, dtype=torch.float64))
    extra_labels = torch.tensor([1, 0, 2, 2, 1])
    ours = bank_contrastive_loss(query, idx, labels, bank_rows, extra_rows, extra_idx, extra_labels,
                                 tau=0.1, w_unsup=0.3, w_sup=3.0)  # fmt: skip
    ref = reference_loss(query, idx, labels, bank_rows, extra_rows, extra_idx, extra_labels, 0.1, 0.3, 3.0)
    assert abs(float(ours) - ref) < 1e-6
    unsup_only = bank_contrastive_loss(query, idx, None, bank_rows, extra_rows, extra_idx, None,
                                       tau=0.1, w_unsup=0.3, w_sup=3.0)  # fmt: skip
    ref_unsup = reference_loss(query, idx, labels, bank_rows, extra_rows, extra_idx, extra_labels, 0.1, 0.3, 0.0)
    assert abs(float(unsup_only) - ref_unsup) < 1e-6


def test_r1_is_infonce_of_the_single_positive():
    """With R = 1, no repeated index and no labels the loss is -w * mean log-prob of the one positive."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    rows = torch.nn.functional.normalize(torch.randn(3, 1, 5, generator=gen, dtype=torch.float64), dim=-1)
    extra = torch.nn.functional.normalize(torch.randn(4, 1, 5, generator=gen, dtype=torch.float64), dim=-1)
    loss = bank_contrastive_loss(q, torch.arange(3), None, rows, extra, torch.arange(10, 14), None,
                                 tau=0.5, w_unsup=1.0, w_sup=0.0)  # fmt: skip
    qn = torch.nn.functional.normalize(q, dim=-1)
    keys = torch.cat([torch.stack([qn, rows[:, 0]], 1).reshape(6, 5), extra[:, 0]])
    logits = qn @ keys.t() / 0.5
    logits[torch.arange(3), torch.arange(3) * 2] = -1e6
    logp = logits.log_softmax(-1)
    expected = -logp[torch.arange(3), torch.arange(3) * 2 + 1].mean()
    assert abs(float(loss) - float(expected)) < 1e-9


def test_gradient_flows_only_through_the_query():
    q = torch.randn(2, 4, requires_grad=True)
    rows = torch.randn(2, 1, 4)
    loss = bank_contrastive_loss(q, torch.tensor([0, 1]), torch.tensor([0, 1]), rows, torch.randn(3, 1, 4),
                                 torch.tensor([2, 3, 4]), torch.tensor([0, 0, 1]), tau=0.1, w_unsup=1, w_sup=1)  # fmt: skip
    loss.backward()
    assert q.grad is not None and float(q.grad.abs().sum()) > 0


def _filled_bank(n=10, h=6):
    gen = torch.Generator().manual_seed(1)
    bank = RepresentationBank(n, h, max_snapshots=3, log=lambda s: None)
    labels = torch.randint(0, 3, (n,), generator=gen)
    bank.write("teacher", torch.arange(n), torch.randn(n, h, generator=gen), labels)
    bank.mark_filled("teacher")
    bank.write("pretrained", torch.arange(n), torch.randn(n, h, generator=gen))
    bank.mark_filled("pretrained")
    for tag in range(2):
        bank.begin_snapshot(tag)
        bank.write("snapshots", torch.arange(n), torch.randn(n, h, generator=gen))
    return bank, labels


@pytest.mark.parametrize("off", ["use_prc", "use_snc", "use_fic"])
def test_switching_a_module_off_removes_exactly_its_term(off):
    bank, labels = _filled_bank()
    query = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    idx = torch.tensor([0, 4, 5, 9])
    settings = dict(tau=0.1, w_unsup=0.3, w_sup=3.0, extra_examples=8, seed=3)
    full = ContrastiveLoss(**settings)
    terms = full.terms(query, idx, labels[idx], bank)
    total = full(query, idx, labels[idx], bank)
    assert set(terms) == {"pretrained", "snapshots", "teacher"}
    assert abs(float(total) - sum(float(t) for t in terms.values())) < 1e-6
    name = {"use_prc": "pretrained", "use_snc": "snapshots", "use_fic": "teacher"}[off]
    partial = ContrastiveLoss(**settings, **{off: False})(query, idx, labels[idx], bank)
    assert abs(float(total - partial) - float(terms[name])) < 1e-6
    assert float(terms[name]) != 0.0


def test_extra_sample_size_follows_bank_width():
    loss = ContrastiveLoss(extra_examples=4096)
    assert len(loss.sample_extra(10000, 1, "teacher", 0)) == 4096
    assert len(loss.sample_extra(10000, 3, "snapshots", 0)) == 4096 // 3
    drawn = loss.sample_extra(10000, 1, "teacher", 0)
    assert len(set(drawn)) == len(drawn)  # without replacement
    assert len(loss.sample_extra(50, 1, "teacher", 0)) == 50  # a small dataset gives all it has


def test_distillation_matches_formula_and_rejects_other_label_counts():
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    T = 2.0
    manual = (torch.softmax(t / T, -1) * (torch.log_softmax(t / T, -1) - torch.log_softmax(s / T, -1))).sum() / 5
    assert abs(float(distillation_loss(s, t, T)) - float(manual * T * T)) < 1e-6
    with pytest.raises(ValueError, match="teacher gives 2 labels and the student 3"):
        distillation_loss(s, torch.randn(5, 2), 1.0)


def test_config_defaults_are_the_glue_structured_script():
    cfg = CapConfig()
    assert (cfg.tau, cfg.extra_examples, cfg.w_unsup, cfg.w_sup, cfg.ce_weight, cfg.kd_weight) == (
        0.1, 4096, 0.3, 3.0, 0.1, 0.9,
    )  # fmt: skip
    assert cfg.sparsities == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
