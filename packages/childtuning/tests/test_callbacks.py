"""ChildTuningCallback against the core callbacks contract (a minimal loop honouring it), and core's Trainer."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from alicemind.childtuning import ChildTuningCallback, compute_fisher_mask
from alicemind.core.training.callbacks import TrainerCallback


class ContractLoop:
    """The hook order of core's Trainer: on_train_begin, backward, clip, before_optimizer_step, step, ..."""

    def __init__(self, model, loader, callbacks, optimizer=None, max_grad_norm: float = 1.0):
        self.model, self.train_dataloader, self.callbacks = model, loader, list(callbacks)
        self.config = SimpleNamespace(max_grad_norm=max_grad_norm)
        self.optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)

    def train(self, epochs: int = 1) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(self)
        for _ in range(epochs):
            for batch in self.train_dataloader:
                self.model(**batch)["loss"].backward()
                for cb in self.callbacks:
                    cb.after_backward(self)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
                for cb in self.callbacks:
                    cb.before_optimizer_step(self)
                self.optimizer.step()
                self.optimizer.zero_grad()
                for cb in self.callbacks:
                    cb.on_step_end(self)
        for cb in self.callbacks:
            cb.on_train_end(self)


class _NoIteration:
    def __iter__(self):
        raise AssertionError("the Fisher pass should not run when masks are given or restored")


def test_callback_is_a_core_trainer_callback() -> None:
    assert isinstance(ChildTuningCallback("F", 0.3), TrainerCallback)


def test_d_callback_computes_mask_at_train_begin_and_freezes_non_child(model_cls, batches) -> None:
    torch.manual_seed(0)
    model = model_cls()
    reference_model = model_cls()
    reference_model.load_state_dict(model.state_dict())
    torch.manual_seed(11)
    expected = compute_fisher_mask(reference_model, batches, reserve_p=0.3, progress=False)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    callback = ChildTuningCallback("D", 0.3, progress=False)
    torch.manual_seed(11)
    ContractLoop(model, batches, [callback]).train(epochs=2)

    assert callback.masks_by_name is not None and sorted(callback.masks_by_name) == sorted(expected)
    for name, mask in expected.items():
        assert torch.equal(callback.masks_by_name[name], mask), name
        moved = model.get_parameter(name).detach() != before[name]
        assert not moved[~mask].any(), f"{name}: masked entry moved"
        assert moved[mask].any(), f"{name}: child did not train"
    assert (model.classifier.weight.detach() != before["classifier.weight"]).all()


def test_f_callback_drops_about_1_minus_p_of_entries(model_cls, batches) -> None:
    torch.manual_seed(0)
    model = model_cls(dropout=0.0)
    model(**batches[0])["loss"].backward()
    had_grad = {n: t.grad != 0 for n, t in model.named_parameters()}  # unused embedding rows have none
    model.zero_grad()
    p = 0.3
    before = {n: t.detach().clone() for n, t in model.named_parameters()}
    callback = ChildTuningCallback("F", p, generator=torch.Generator().manual_seed(1))
    ContractLoop(model, batches[:1], [callback], torch.optim.SGD(model.parameters(), lr=0.1)).train()
    moved = {n: t.detach() != before[n] for n, t in model.named_parameters()}
    assert all(not (moved[n] & ~had_grad[n]).any() for n in moved)
    n_moved = sum(int(m.sum()) for m in moved.values())
    n = sum(int(m.sum()) for m in had_grad.values())
    assert abs(n_moved - p * n) <= 5 * math.sqrt(n * p * (1 - p)), (n_moved, n)


def test_masks_given_or_restored_skip_the_fisher_pass(model_cls, batches) -> None:
    torch.manual_seed(0)
    model = model_cls()
    first = ChildTuningCallback("D", 0.2, progress=False)
    ContractLoop(model, batches, [first]).train()
    saved = first.state_dict()
    assert saved["mode"] == "D" and sorted(saved["masks"]) == sorted(first.masks_by_name)

    restored = ChildTuningCallback("D", 0.2)
    restored.load_state_dict(saved)
    ContractLoop(model, _NoIteration(), [restored]).train(epochs=0)
    for name, mask in saved["masks"].items():
        assert torch.equal(restored.masker.masks[model.get_parameter(name)], mask)

    given = ChildTuningCallback("D", 0.2, masks=saved["masks"])
    ContractLoop(model, _NoIteration(), [given]).train(epochs=0)
    assert given.masker.masks is not None and len(given.masker.masks) == len(saved["masks"])
    with pytest.raises(ValueError, match="is for mode 'D'"):
        ChildTuningCallback("F", 0.2).load_state_dict(saved)


def _core_loader(batches):
    examples = [
        {"input_ids": b["input_ids"][i], "labels": b["labels"][i]} for b in batches for i in range(len(b["labels"]))
    ]
    return torch.utils.data.DataLoader(examples, batch_size=6, shuffle=True)


def test_with_core_trainer_and_resume(model_cls, batches, tmp_path) -> None:
    from alicemind.core import training

    torch.manual_seed(0)
    model = model_cls(dropout=0.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def config(max_steps: int):
        return training.TrainingConfig(
            output_dir=str(tmp_path), max_steps=max_steps, lr=1e-2, weight_decay=0.0, progress_bar=False, device="cpu"
        )

    callback = ChildTuningCallback("D", 0.3, progress=False)
    training.Trainer(model, config(4), _core_loader(batches), callbacks=[callback]).train()
    assert callback.masks_by_name and (tmp_path / "childtuning_masks.safetensors").exists()
    for name, mask in callback.masks_by_name.items():
        moved = model.get_parameter(name).detach() != before[name]
        assert not moved[~mask].any() and moved[mask].any(), name
    assert (model.classifier.weight.detach() != before["classifier.weight"]).all()

    # Resume: the saved mask is reused (no Fisher pass on the already fine-tuned weights) and still holds.
    fisher_calls = []
    resumed = ChildTuningCallback("D", 0.3, loss_fn=lambda m, b: fisher_calls.append(1) or m(**b)["loss"])
    trainer = training.Trainer(model, config(8), _core_loader(batches), callbacks=[resumed])
    trainer.train()
    assert trainer.state.step == 8 and fisher_calls == []
    for name, mask in callback.masks_by_name.items():
        assert torch.equal(resumed.masks_by_name[name], mask)
        moved = model.get_parameter(name).detach() != before[name]
        assert not moved[~mask].any(), name
