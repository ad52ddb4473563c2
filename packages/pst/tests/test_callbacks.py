"""The cubic schedule, the core Trainer callback (mask recomputations counted) and the Hugging Face callback."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from alicemind.core.training import Trainer, TrainingConfig
from alicemind.pst import PSTCallback, PSTConfig, convert_to_pst, sparse_layers, sparsity_schedule


def test_schedule_matches_the_formula():
    assert sparsity_schedule(0, 100) == 0.0
    assert sparsity_schedule(10, 100) == 0.0  # t <= i*T
    # t = 40: 1 - (40 - 10) / (100 - 40) = 0.5, so 0.9 - 0.9 * 0.5**3
    assert sparsity_schedule(40, 100) == pytest.approx(0.7875)
    assert sparsity_schedule(70, 100) == pytest.approx(0.9)  # end of the ramp
    assert sparsity_schedule(71, 100) == 0.9  # t > T - f*T
    values = [sparsity_schedule(t, 100) for t in range(101)]
    assert values == sorted(values)
    cfg = PSTConfig(initial_sparsity=0.2, final_sparsity=0.5, initial_warmup=0.0, final_warmup=0.5)
    assert cfg.sparsity_at(0, 10) == 0.2 and cfg.sparsity_at(6, 10) == 0.5


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.body = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 16))
        self.head = nn.Linear(16, 2)

    def forward(self, input_ids, labels=None):
        logits = self.head(self.body(self.embed(input_ids)).mean(1))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def _data(n=32):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30, (n, 6), generator=gen)
    labels = (ids[:, 0] < 15).long()  # learnable from the first token
    return [{"input_ids": i, "labels": y} for i, y in zip(ids, labels)]


def test_core_trainer_callback_recomputes_masks_only_on_change(tmp_path):
    model = convert_to_pst(Toy(), "body", PSTConfig(weight_rank=4, mask_rank=4, initial_warmup=0.0,
                                                     final_warmup=0.5), trainable_modules="head")  # fmt: skip
    callback = PSTCallback(PSTConfig(weight_rank=4, mask_rank=4, initial_warmup=0.0, final_warmup=0.5))
    cfg = TrainingConfig(max_steps=6, per_device_batch_size=4, gradient_accumulation_steps=2, lr=1e-2,
                         progress_bar=False, log_every=1, device="cpu", resume=None)  # fmt: skip
    loader = DataLoader(_data(), batch_size=4, shuffle=True)
    Trainer(model, cfg, loader, callbacks=[callback]).train()
    layers = [layer for _, layer in sparse_layers(model)]
    assert callback.sparsity == pytest.approx(0.9) and all(layer.sparsity == pytest.approx(0.9) for layer in layers)
    # 12 forward passes (6 steps x 2 micro-batches): a mask per optimizer step, none for the second micro-batch.
    assert [layer.mask_updates for layer in layers] == [6, 6]
    for layer in layers:
        assert int(layer.mask().sum()) == layer.weight.numel() - int(layer.weight.numel() * 0.9)
    model.eval()
    x = torch.randint(0, 30, (5, 6))
    with torch.no_grad():
        eval_out = model(x)["logits"]
        eval_again = model(x)["logits"]
    assert [layer.mask_updates for layer in layers] == [7, 7]  # the last step changed the scores; then cached
    model.train()
    train_out = model(x)["logits"]  # no dropout in Toy: same mask, same output
    assert [layer.mask_updates for layer in layers] == [7, 7]
    torch.testing.assert_close(train_out.detach(), eval_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(eval_again, eval_out)


def test_core_trainer_updates_only_pst_tensors_and_head():
    model = convert_to_pst(Toy(), "body", PSTConfig(weight_rank=4, mask_rank=4), trainable_modules="head")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = TrainingConfig(max_steps=5, per_device_batch_size=8, lr=1e-2, progress_bar=False, device="cpu", resume=None)
    Trainer(model, cfg, DataLoader(_data(), batch_size=8), callbacks=[PSTCallback()]).train()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())  # W0, biases, embeddings
    assert all(not torch.equal(params[n], v) for n, v in trained.items() if not n.endswith("mask_scores_A"))


def test_hugging_face_trainer_callback(tmp_path, tiny_bert_config):
    from transformers import BertForSequenceClassification, TrainingArguments
    from transformers import Trainer as HFTrainer

    from alicemind.pst import apply_pst_to_hf_trainer

    model = BertForSequenceClassification(tiny_bert_config(num_labels=2))
    convert_to_pst(model, "bert.encoder", PSTConfig(weight_rank=4, mask_rank=4), trainable_modules="classifier")
    w0 = model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    data = [{"input_ids": row["input_ids"].tolist() + [1], "labels": int(row["labels"])} for row in _data(16)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=10, per_device_train_batch_size=4,
                             learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True,
                             logging_strategy="no", disable_tqdm=True)  # fmt: skip
    trainer = HFTrainer(model=model, args=args, train_dataset=data)
    callback = apply_pst_to_hf_trainer(trainer, PSTConfig(weight_rank=4, mask_rank=4))
    trainer.train()
    assert callback.schedule.total_steps == 10
    assert callback.schedule.sparsity == pytest.approx(0.9)
    query = model.bert.encoder.layer[0].attention.self.query
    assert query.sparsity == pytest.approx(0.9)
    assert torch.equal(query.weight, w0)
    assert int(query.mask().sum()) == query.weight.numel() - int(0.9 * query.weight.numel())
    assert 1 < query.mask_updates <= 11  # at most once per step (plus the first forward)
