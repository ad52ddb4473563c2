"""prune_model: the whole CAP-f iterative loop, or one CAP-m / CAP-soft / magnitude run, over core's Trainer."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from alicemind.cap.adapters import EncoderAdapter
from alicemind.cap.callbacks import CapCallback
from alicemind.cap.config import CapConfig
from alicemind.cap.export import export_pruned
from alicemind.cap.movement import MovementPruner
from alicemind.cap.objective import CapObjective
from alicemind.cap.structured import StructuredPruner
from alicemind.core.checkpoint import load_safetensors, save_safetensors
from alicemind.core.io import atomic_write_text
from alicemind.core.ops import build_optimizer
from alicemind.core.training import Trainer, TrainerCallback, TrainingConfig, move_to_device

EvalFn = Callable[[nn.Module], dict[str, float]]


class IndexedDataset(torch.utils.data.Dataset):
    """Features (dicts) with their dataset index added as ``idx``: the row of the example in every bank."""

    def __init__(self, features: Sequence[Mapping[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.features[i], "idx": i}


class _CapLoss(TrainerCallback):
    """extra_loss only: the CAP objective during CAP-f's retraining (the banks are filled by the loop)."""

    def __init__(self, objective: CapObjective) -> None:
        self.objective = objective

    def extra_loss(self, trainer: Any, batch: Any, outputs: Any) -> torch.Tensor:
        task_loss = outputs.loss if hasattr(outputs, "loss") else outputs["loss"]
        return self.objective.loss(batch, outputs, task_loss) - task_loss


def _loader(features, collate, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(IndexedDataset(features), batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                      generator=gen)  # fmt: skip


def _training_config(training: TrainingConfig, **changes: Any) -> TrainingConfig:
    return dataclasses.replace(training, **changes)


def prune_model(
    student: nn.Module,
    config: CapConfig,
    train_features: Sequence[Mapping[str, Any]],
    collate: Callable,
    training: TrainingConfig,
    *,
    teacher: nn.Module | None = None,
    eval_fn: EvalFn | None = None,
    output_dir: str | Path | None = None,
    adapter: EncoderAdapter | None = None,
    representation: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Prune ``student`` as ``config.method`` says; returns per-step metrics and what was written.

    cap-f: for each cumulative sparsity (importance -> bank pass -> new masks -> retrain ``retrain_epochs`` with a
    fresh optimizer -> evaluate); each step's smaller model is exported to ``output_dir/step-K/model`` and its
    masks/weights kept, so a restarted run resumes after the last finished step with the same masks and banks.
    cap-m / cap-soft: one training run with the cubic schedule (``training`` gives epochs, lr, ...).
    """
    device = next(student.parameters()).device
    out = Path(output_dir) if output_dir is not None else None
    bank_dir = out / "cap_bank" if out is not None else None
    batch_size = training.per_device_batch_size or 16
    if config.method == "cap-f":
        return _structured(student, config, train_features, collate, training, teacher, eval_fn, out, bank_dir,
                           adapter, representation, batch_size, device, progress, log)  # fmt: skip
    return _movement(student, config, train_features, collate, training, teacher, eval_fn, out, bank_dir, adapter,
                     representation, batch_size, progress, log)  # fmt: skip


def _structured(student, config, features, collate, training, teacher, eval_fn, out, bank_dir, adapter,
                representation, batch_size, device, progress, log) -> dict[str, Any]:  # fmt: skip
    pruner = StructuredPruner(student, adapter)
    objective = CapObjective(student, config, num_examples=len(features), teacher=teacher, adapter=pruner.adapter,
                             representation=representation, bank_dir=bank_dir, log=log)  # fmt: skip
    sequential = list(_loader(features, collate, batch_size, False, training.seed))
    subset = sequential[: max(1, -(-int(config.importance_subset * len(features)) // batch_size))]
    results: list[dict[str, Any]] = []
    start = _resume_structured(out, student, pruner, objective, results, log)
    for step, sparsity in enumerate(config.sparsities):
        if step < start:
            continue
        log(f"CAP-f step {step + 1}/{len(config.sparsities)}: importance, banks, prune to {sparsity:.0%}, retrain")

        def loss_fn(model: nn.Module, batch: Any) -> torch.Tensor:
            batch = move_to_device(dict(batch), device)
            return objective.loss(batch, model(**batch))

        heads, neurons = pruner.compute_importance(
            subset, loss_fn, normalize_by_layer=config.normalize_by_layer, progress=progress
        )
        if config.uses_contrast:
            if step == 0:
                objective.fill_teacher_bank(sequential, progress=progress)
            objective.fill_student_bank(sequential, tag=step, progress=progress)
        pruner.prune_to(sparsity, heads, neurons, config.at_least_heads_per_layer)
        loader = _loader(features, collate, batch_size, True, training.seed + step)
        retrain = _training_config(training, num_epochs=config.retrain_epochs, max_steps=None, output_dir=None,
                                   resume=None, metric_for_best=None)  # fmt: skip
        trainer = Trainer(student, retrain, loader, callbacks=[_CapLoss(objective)])
        trainer.train()
        record = {"step": step + 1, "sparsity": sparsity, **pruner.sparsity()}
        if eval_fn is not None:
            student.eval()
            with torch.no_grad():
                record.update({k: float(v) for k, v in eval_fn(student).items()})
            student.train()
        if out is not None:
            _save_structured_step(out / f"step-{step + 1}", student, pruner, record)
        results.append(record)
        log(f"CAP-f step {step + 1}: " + ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "step"))
    objective.remove()
    return {"method": "cap-f", "steps": results, "pruner": pruner}


def _save_structured_step(folder: Path, student: nn.Module, pruner: StructuredPruner, record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(pruner.state_dict(), folder / "masks.safetensors")
    save_safetensors({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()},
                     folder / "masked_model.safetensors")  # fmt: skip
    if hasattr(getattr(student, "config", None), "save_pretrained"):
        record["exported"] = export_pruned(student, pruner, folder / "model", overwrite=True)["parameters"]
    atomic_write_text(folder / "metrics.json", json.dumps(record, indent=1))


def _resume_structured(out, student, pruner, objective, results, log) -> int:
    """Steps already finished in ``out`` (their weights, masks and banks are restored)."""
    if out is None:
        return 0
    done = sorted(
        (int(p.name.split("-")[1]) for p in out.glob("step-*") if (p / "metrics.json").is_file()), reverse=True
    )
    if not done:
        return 0
    last = out / f"step-{done[0]}"
    student.load_state_dict(load_safetensors(last / "masked_model.safetensors"), strict=True)
    pruner.load_state_dict(load_safetensors(last / "masks.safetensors"))
    for k in range(1, done[0] + 1):
        results.append(json.loads((out / f"step-{k}" / "metrics.json").read_text(encoding="utf-8")))
    bank_meta = out / "cap_bank" / "bank.json"
    if bank_meta.is_file():
        objective.open_bank(int(json.loads(bank_meta.read_text(encoding="utf-8"))["hidden"]))
        objective.bank.drop_snapshots_after(done[0] - 1)  # snapshots are tagged with the step that made them
    objective.student_passes = done[0]
    log(f"CAP-f: resuming after step {done[0]} in {out}")
    return done[0]


def _movement(student, config, features, collate, training, teacher, eval_fn, out, bank_dir, adapter,
              representation, batch_size, progress, log) -> dict[str, Any]:  # fmt: skip
    loader = _loader(features, collate, batch_size, True, training.seed)
    epochs = training.num_epochs or 1
    total = training.max_steps or epochs * len(loader)
    method = "sigmoied_threshold" if config.method == "cap-soft" else config.extra.get("pruning_method", "topk")
    pruner = MovementPruner(
        student, method=method, scope=config.scope, final_sparsity=config.final_sparsity,
        initial_sparsity=config.initial_sparsity, total_steps=total, warmup_steps=config.warmup_steps,
        initial_warmup=config.initial_warmup, final_warmup=config.final_warmup,
        soft_initial_threshold=config.soft_initial_threshold, soft_final_threshold=config.soft_final_threshold,
        final_lambda=config.final_lambda, mask_init=config.mask_init, adapter=adapter,
    )  # fmt: skip
    objective = CapObjective(student, config, num_examples=len(features), teacher=teacher, adapter=pruner.adapter,
                             representation=representation, bank_dir=bank_dir, movement=pruner, log=log)  # fmt: skip
    groups = pruner.param_groups(training.lr, config.mask_lr, training.weight_decay)
    optimizer = build_optimizer(groups, lr=training.lr, betas=training.adam_betas, eps=training.adam_eps,
                                weight_decay=training.weight_decay)  # fmt: skip
    sequential = list(_loader(features, collate, batch_size, False, training.seed))
    callback = CapCallback(objective, sequential, refresh_every_epoch=True, progress=progress)
    run_cfg = _training_config(training, warmup_steps=config.warmup_steps, warmup_ratio=None,
                               output_dir=str(out / "train") if out is not None else None)  # fmt: skip
    trainer = Trainer(student, run_cfg, loader, eval_fn=eval_fn, callbacks=[callback], optimizer=optimizer)
    trainer.train()
    record: dict[str, Any] = {"method": config.method, "threshold": pruner.threshold}
    if eval_fn is not None:
        student.eval()
        with torch.no_grad():
            record.update({k: float(v) for k, v in eval_fn(student).items()})
    report = pruner.sparsity_report()
    record["sparsity"] = report["overall"]
    if out is not None and hasattr(getattr(student, "config", None), "save_pretrained"):
        export_pruned(student, pruner, out / "model", overwrite=True)
        atomic_write_text(out / "metrics.json", json.dumps(record, indent=1))
    objective.remove()
    return {"method": config.method, "result": record, "report": report, "pruner": pruner}
