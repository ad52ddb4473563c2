"""sofa's embedding-space adversarial fine-tuning as a Trainer callback."""

from __future__ import annotations

import json

import pytest
import torch
from structbert_tasks import tiny_checkpoint, write_task

from alicemind.core.cli import main
from alicemind.structbert import StructBertConfig, StructBertForSequenceClassification
from alicemind.structbert.adversarial import AdversarialCallback, adversarial_divergence, symmetric_kl


def test_symmetric_kl_matches_the_definition():
    torch.manual_seed(0)
    p, q = torch.randn(5, 3), torch.randn(5, 3)
    pp, qq = p.softmax(-1), q.softmax(-1)
    expected = ((pp * (pp / qq).log()).sum(-1) + (qq * (qq / pp).log()).sum(-1)).mean() / 3
    torch.testing.assert_close(symmetric_kl(p, q), expected)
    torch.testing.assert_close(symmetric_kl(p, q), symmetric_kl(q, p))
    assert symmetric_kl(p, p) == pytest.approx(0.0, abs=1e-7)


def test_divergence_uses_each_rows_own_head_and_skips_regression():
    torch.manual_seed(1)
    clean = [torch.randn(4, 3), torch.randn(4, 1)]
    other = [torch.randn(4, 3), torch.randn(4, 1)]
    task_ids = torch.tensor([0, 1, 0, 1])
    rows = task_ids == 0
    torch.testing.assert_close(
        adversarial_divergence(clean, other, task_ids), symmetric_kl(clean[0][rows], other[0][rows])
    )


def _tiny_model() -> StructBertForSequenceClassification:
    torch.manual_seed(0)
    config = StructBertConfig.from_preset("structbert.tiny", vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, intermediate_size=64, num_labels=3,
                                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    return StructBertForSequenceClassification(config)


def test_perturbation_is_on_word_embeddings_only_and_bounded():
    model = _tiny_model()
    batch = {"input_ids": torch.randint(5, 50, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long),
             "token_type_ids": torch.zeros(4, 7, dtype=torch.long), "labels": torch.tensor([0.0, 1.0, 2.0, 1.0])}  # fmt: skip
    seen = []
    hook = model.bert.embeddings.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs.get("inputs_embeds")), with_kwargs=True
    )
    callback = AdversarialCallback(sigma=1e-3, adv_grad_factor=5e-3, adv_bound=2e-3)
    clean = model(**batch)
    term = callback.compute(model, batch, clean.logits)
    hook.remove()
    word = model.bert.embeddings.word_embeddings(batch["input_ids"]).detach()
    noisy, adversarial = seen[1], seen[2]  # the clean pass embeds ids itself (seen[0] is None)
    assert seen[0] is None
    noise = noisy.detach() - word
    assert 0 < noise.std() < 2e-3  # N(0, sigma) noise
    step = adversarial.detach() - noisy.detach()
    # The gradient step: at most adv_bound per entry, and each example reaches the bound somewhere.
    assert step.abs().max() <= 2e-3 * (1 + 1e-3)  # float32 rounding of embeds + step
    assert torch.allclose(step.abs().amax(dim=(1, 2)), torch.full((4,), 2e-3), rtol=1e-4)
    assert torch.isfinite(term) and term > 0
    term.backward()
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_gradient_step_raises_divergence_above_random_noise():
    model = _tiny_model().eval()
    ids = torch.randint(5, 50, (8, 9))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    with torch.no_grad():
        clean = model(**batch).logits
    callback = AdversarialCallback(sigma=1e-2, adv_grad_factor=1e-1, adv_bound=1e-1)
    torch.manual_seed(3)
    adversarial = callback.compute(model, batch, clean)
    torch.manual_seed(3)
    random_only = AdversarialCallback(sigma=1e-2, adv_grad_factor=1e-12, adv_bound=1e-12).compute(model, batch, clean)
    assert adversarial > 2 * random_only


def test_finetune_with_adversarial_recipe_flag(tmp_path, capsys):
    data = tmp_path / "data"
    write_task(data, "rte")
    ckpt = tiny_checkpoint(tmp_path / "m")
    runs = {}
    for flag in ("false", "true"):
        out = tmp_path / flag
        argv = ["structbert", "finetune", "--no-progress", "--recipe", "glue-rte", f"data_dir={data}",
                f"model={ckpt}", f"output_dir={out}", "training.max_steps=3", "training.num_epochs=null",
                "training.per_device_batch_size=4", "training.log_every=1", f"adversarial.enabled={flag}",
                "adversarial.sigma=1e-2", "adversarial.adv_grad_factor=1e-1", "adversarial.adv_bound=1e-1"]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        runs[flag] = [r["loss"] for r in log if "loss" in r]
    # Same data and init: at the first step the adversarial run's loss is the plain loss plus a positive term.
    assert len(runs["true"]) == 3
    assert runs["false"][0] < runs["true"][0] < runs["false"][0] + 1.0
