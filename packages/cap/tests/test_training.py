"""CAP in core's Trainer (with exact resume of banks and masks), the CAP-f loop, and a Hugging Face Trainer."""

from __future__ import annotations

import pytest
import torch

from alicemind.cap import CapCallback, CapConfig, CapObjective, IndexedDataset, MovementPruner, prune_model
from alicemind.core.ops import build_optimizer
from alicemind.core.training import Trainer, TrainerCallback, TrainingConfig


class Crash(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer) -> None:
        if trainer.state.step == self.at:
            raise KeyboardInterrupt("simulated crash")


def _cap_m_run(tiny, collate, features, out, callbacks=()):
    student, teacher = tiny.core(seed=0), tiny.core(seed=1)
    cfg = CapConfig(method="cap-m", final_sparsity=0.75, warmup_steps=1, initial_warmup=1, final_warmup=1,
                    extra_examples=8, w_sup=1.0, kd_temperature=2.0, max_snapshots=2)  # fmt: skip
    loader = torch.utils.data.DataLoader(IndexedDataset(features), batch_size=4, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    sequential = list(torch.utils.data.DataLoader(IndexedDataset(features), batch_size=4, collate_fn=collate))
    total = 3 * len(loader)
    pruner = MovementPruner(student, final_sparsity=0.75, total_steps=total, warmup_steps=1, initial_warmup=1,
                            final_warmup=1)  # fmt: skip
    objective = CapObjective(student, cfg, num_examples=len(features), teacher=teacher, movement=pruner,
                             log=lambda s: None)  # fmt: skip
    training = TrainingConfig(output_dir=str(out), num_epochs=3, per_device_batch_size=4, lr=1e-3, save_every=2,
                              seed=0, progress_bar=False, device="cpu", precision="fp32", log_every=0)  # fmt: skip
    optimizer = build_optimizer(pruner.param_groups(1e-3, 1e-2), lr=1e-3)
    callback = CapCallback(objective, sequential, progress=False)
    trainer = Trainer(student, training, loader, callbacks=[callback, *callbacks], optimizer=optimizer)
    return trainer, objective, pruner


def test_cap_m_in_core_trainer_resumes_with_the_same_banks_and_masks(tiny, collate, tmp_path):
    features = tiny.features(24)
    trainer, objective, pruner = _cap_m_run(tiny, collate, features, tmp_path / "straight")
    trainer.train()
    bank = objective.bank
    assert bank.filled == {"teacher": True, "pretrained": True} and bank.snapshot_tags == [1, 2]
    assert pruner.sparsity_report()["overall"] == pytest.approx(0.75, abs=1e-3)
    assert set(objective.last_parts) == {"ce", "kd", "contrastive", "l1"} and objective.last_parts["contrastive"] != 0

    crashed, _, _ = _cap_m_run(tiny, collate, features, tmp_path / "resumed", callbacks=[Crash(9)])
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    resumed, objective2, pruner2 = _cap_m_run(tiny, collate, features, tmp_path / "resumed")
    resumed.train()
    assert resumed.state.step == trainer.state.step == 18
    bank2 = objective2.bank
    assert bank2.snapshot_tags == [1, 2]
    for name in ("teacher", "pretrained", "snapshots"):
        torch.testing.assert_close(bank2.rows(name, torch.arange(24)), bank.rows(name, torch.arange(24)))
    for name, mask in pruner.masks().items():
        assert torch.equal(pruner2.masks()[name], mask), name


def test_cap_f_loop_prunes_exports_and_resumes(tiny, collate, tmp_path):
    features = tiny.features(16)
    cfg = CapConfig(method="cap-f", sparsities=(0.25, 0.5), retrain_epochs=1, extra_examples=8, max_snapshots=2)
    training = TrainingConfig(num_epochs=1, per_device_batch_size=4, lr=1e-3, seed=0, progress_bar=False,
                              device="cpu", precision="fp32", log_every=0)  # fmt: skip
    seen = []

    def eval_fn(model):
        seen.append(model.training)
        return {"accuracy": 0.5}

    result = prune_model(tiny.core(seed=0), cfg, features, collate, training, teacher=tiny.core(seed=1),
                         eval_fn=eval_fn, output_dir=tmp_path / "run", progress=False, log=lambda s: None)  # fmt: skip
    steps = result["steps"]
    assert [s["heads"] for s in steps] == [0.25, 0.5] and [s["neurons"] for s in steps] == [0.25, 0.5]
    assert seen == [False, False]
    pruner = result["pruner"]
    assert int((pruner.head_mask == 0).sum()) == 4 and int((pruner.neuron_mask == 0).sum()) == 64
    for k in (1, 2):
        assert (tmp_path / "run" / f"step-{k}" / "model" / "model.safetensors").is_file()
    assert steps[1]["exported"] < steps[0]["exported"]
    # a restarted run finds both steps done and trains nothing: same masks, same records
    again = prune_model(tiny.core(seed=5), cfg, features, collate, training, teacher=tiny.core(seed=1),
                        output_dir=tmp_path / "run", progress=False, log=lambda s: None)  # fmt: skip
    assert again["steps"] == steps
    assert torch.equal(again["pruner"].head_mask, pruner.head_mask)
    assert torch.equal(again["pruner"].neuron_mask, pruner.neuron_mask)


def test_cap_loss_in_a_hugging_face_trainer(tiny, collate, tmp_path):
    import transformers

    from alicemind.cap import apply_cap_to_hf_trainer

    features = tiny.features(16)
    student, teacher = tiny.hf_bert(seed=0), tiny.hf_bert(seed=1)
    cfg = CapConfig(method="cap-m", final_sparsity=0.5, extra_examples=8, warmup_steps=1, initial_warmup=0,
                    final_warmup=1)  # fmt: skip
    pruner = MovementPruner(student, final_sparsity=0.5, total_steps=8, warmup_steps=1, initial_warmup=0,
                            final_warmup=1)  # fmt: skip
    objective = CapObjective(student, cfg, num_examples=16, teacher=teacher, movement=pruner, log=lambda s: None)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4, num_train_epochs=2, learning_rate=1e-3,
        report_to=[], remove_unused_columns=False, save_strategy="no", use_cpu=True, disable_tqdm=True,
        logging_strategy="no", seed=0,
    )  # fmt: skip
    trainer = transformers.Trainer(model=student, args=args, train_dataset=IndexedDataset(features),
                                   data_collator=collate)  # fmt: skip
    sequential = list(torch.utils.data.DataLoader(IndexedDataset(features), batch_size=4, collate_fn=collate))
    apply_cap_to_hf_trainer(trainer, objective, sequential, progress=False)
    trainer.train()
    assert objective.bank.filled == {"teacher": True, "pretrained": True} and objective.bank.snapshot_tags == [1]
    assert pruner.step == 8 and pruner.sparsity_report()["overall"] == pytest.approx(0.5, abs=1e-3)
    batch = sequential[0]
    student.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(student, dict(batch))
        plain = student(**{k: v for k, v in batch.items() if k != "idx"}).loss
    parts = objective.last_parts
    assert float(loss) != pytest.approx(float(plain))  # the CAP objective replaced the task loss
    assert parts["ce"] == pytest.approx(float(plain), rel=1e-5) and parts["contrastive"] != 0


def _hf_cap_run(tiny, collate, features, out, save_steps: int, crash_at: int | None = None):
    import transformers

    class CrashAfterSave(transformers.TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == crash_at:
                raise KeyboardInterrupt("simulated crash right after a checkpoint")

    from alicemind.cap import apply_cap_to_hf_trainer

    student, teacher = tiny.hf_bert(seed=0).double(), tiny.hf_bert(seed=1).double()  # float64: exact comparison
    cfg = CapConfig(method="cap-m", final_sparsity=0.5, extra_examples=8, warmup_steps=1, initial_warmup=1,
                    final_warmup=1, max_snapshots=3, bank_dtype="float32")  # fmt: skip
    pruner = MovementPruner(student, final_sparsity=0.5, total_steps=12, warmup_steps=1, initial_warmup=1,
                            final_warmup=1)  # fmt: skip
    objective = CapObjective(student, cfg, num_examples=len(features), teacher=teacher, movement=pruner,
                             log=lambda s: None)  # fmt: skip
    args = transformers.TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=4, num_train_epochs=3, learning_rate=1e-3, report_to=[],
        remove_unused_columns=False, save_strategy="steps", save_steps=save_steps, use_cpu=True, disable_tqdm=True,
        logging_strategy="no", seed=0, data_seed=0,
    )  # fmt: skip
    trainer = transformers.Trainer(model=student, args=args, train_dataset=IndexedDataset(features),
                                   data_collator=collate, callbacks=[CrashAfterSave()])  # fmt: skip
    sequential = list(torch.utils.data.DataLoader(IndexedDataset(features), batch_size=4, collate_fn=collate))
    sequential = [{k: v.double() if v.is_floating_point() else v for k, v in b.items()} for b in sequential]
    apply_cap_to_hf_trainer(trainer, objective, sequential, progress=False)
    return trainer, objective, pruner


@pytest.mark.parametrize("stop", [8, 5])  # at an epoch boundary (4 steps an epoch) and inside one
def test_hugging_face_trainer_resumes_with_the_same_banks_and_masks(tiny, collate, tmp_path, stop):
    features = tiny.features(16)
    straight, objective, pruner = _hf_cap_run(tiny, collate, features, tmp_path / "straight", save_steps=100)
    straight.train()
    assert objective.bank.snapshot_tags == [1, 2] and straight.state.global_step == 12
    cut, _, _ = _hf_cap_run(tiny, collate, features, tmp_path / "cut", save_steps=stop, crash_at=stop)
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    resumed, objective2, pruner2 = _hf_cap_run(tiny, collate, features, tmp_path / "cut", save_steps=stop)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / f"checkpoint-{stop}"))
    assert resumed.state.global_step == 12 and objective2.bank.snapshot_tags == [1, 2]
    for name in ("teacher", "pretrained", "snapshots"):
        torch.testing.assert_close(objective2.bank.rows(name, torch.arange(16)), objective.bank.rows(name,
                                   torch.arange(16)), rtol=1e-6, atol=1e-6)  # fmt: skip
    for name, mask in pruner.masks().items():
        assert torch.equal(pruner2.masks()[name], mask), name
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)
