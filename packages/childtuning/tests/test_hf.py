"""ChildTuning on a Hugging Face transformers.Trainer: tiny BERT, CPU, a few steps."""

from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the [transformers] extra is not installed")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")

from alicemind.childtuning import apply_child_tuning_to_hf_trainer  # noqa: E402
from alicemind.childtuning.hf import innermost_torch_optimizer  # noqa: E402


def _tiny_bert() -> transformers.BertForSequenceClassification:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def _dataset(n: int = 24) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (n, 8), generator=gen)
    labels = (ids[:, 0] > 25).long()
    return [
        {"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": labels[i]} for i in range(n)
    ]


def _trainer(tmp_path, model, max_steps: int, **kwargs) -> transformers.Trainer:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=max_steps, learning_rate=1e-2,
        weight_decay=0.0, report_to="none", use_cpu=True, save_strategy="no", logging_strategy="no",
        disable_tqdm=True, seed=0, **kwargs,
    )  # fmt: skip
    return transformers.Trainer(model=model, args=args, train_dataset=_dataset())


def test_hf_trainer_d_mode_freezes_non_child_entries(tmp_path) -> None:
    model = _tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = _trainer(tmp_path, model, max_steps=4)
    callback = apply_child_tuning_to_hf_trainer(trainer, "D", 0.3, progress=False)
    trainer.train()

    masks = callback.masks_by_name
    assert masks and all("layer" in n for n in masks)
    assert "bert.encoder.layer.0.attention.self.query.weight" in masks
    total = sum(m.numel() for m in masks.values())
    assert abs(sum(int(m.sum()) for m in masks.values()) - 0.3 * total) <= 0.01 * total
    child_moved, child_total = 0, 0
    for name, mask in masks.items():
        moved = model.get_parameter(name).detach() != before[name]
        assert not moved[~mask].any(), f"{name}: a masked entry moved"
        child_moved += int(moved[mask].sum())
        child_total += int(mask.sum())
    assert child_moved > 0.5 * child_total, "the child network did not train"
    assert (model.classifier.weight.detach() != before["classifier.weight"]).all()  # not masked
    # The trainer's optimizer is accelerate's wrapper around torch AdamW; the pre-hook sat on the inner one and is
    # removed at train end.
    inner = innermost_torch_optimizer(trainer.optimizer)
    assert type(trainer.optimizer).__name__ == "AcceleratedOptimizer" and isinstance(inner, torch.optim.AdamW)
    assert not inner._optimizer_step_pre_hooks


def test_hf_trainer_f_mode_masks_each_step(tmp_path) -> None:
    model = _tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = _trainer(tmp_path, model, max_steps=1)
    p = 0.3
    apply_child_tuning_to_hf_trainer(trainer, "F", p, generator=torch.Generator().manual_seed(0))
    trainer.train()
    # One AdamW step from zero moments: an entry moves iff its gradient was kept.
    name = "bert.encoder.layer.1.intermediate.dense.weight"
    moved = int((model.get_parameter(name).detach() != before[name]).sum())
    n = before[name].numel()
    assert abs(moved - p * n) <= 5 * math.sqrt(n * p * (1 - p)), (moved, n)


def test_innermost_optimizer_rejects_non_torch_optimizers() -> None:
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        innermost_torch_optimizer(object())
