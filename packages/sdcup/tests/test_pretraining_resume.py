"""A crashed pre-training run resumed from its last checkpoint ends with the weights of an uninterrupted one: the
curriculum sampler replays the same batches and core's Trainer restores the optimizer and RNG states."""

from __future__ import annotations

import pytest
from sdcup_testing import write_dataset

from alicemind.core.checkpoint import load_safetensors
from alicemind.core.training import Trainer
from alicemind.sdcup.training import run_pretraining


def _recipe(paths, vocab_file, out):
    return {"train_file": str(paths["train_file"]), "tables": str(paths["tables"]), "tokenizer": str(vocab_file),
            "scratch_config": "sdcup.test", "output_dir": str(out),
            "data": {"max_seq_length": 128, "mlm_probability": 0.15},
            "curriculum": {"pacing": "step", "start": 0.25, "duration": 0.5},
            "training": {"max_steps": 6, "per_device_batch_size": 4, "lr": 1e-3, "scheduler": "constant",
                         "precision": "fp32", "log_every": 2, "seed": 3, "save_every": 3}}  # fmt: skip


def test_resumed_pretraining_equals_uninterrupted(tmp_path, vocab_file, monkeypatch):
    paths = write_dataset(tmp_path, train=24, dev=2)
    whole = run_pretraining(_recipe(paths, vocab_file, tmp_path / "whole"), progress_bar=False)
    step = Trainer._forward_backward

    def crash_at_step_4(self, batch, *, sync):
        if self.state.step == 4:
            raise RuntimeError("simulated crash")
        return step(self, batch, sync=sync)

    monkeypatch.setattr(Trainer, "_forward_backward", crash_at_step_4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_pretraining(_recipe(paths, vocab_file, tmp_path / "split"), progress_bar=False)
    monkeypatch.setattr(Trainer, "_forward_backward", step)
    assert (tmp_path / "split" / "checkpoint-3").is_dir() and not (tmp_path / "split" / "model").exists()
    resumed = run_pretraining(_recipe(paths, vocab_file, tmp_path / "split"), progress_bar=False)
    a = load_safetensors(whole.model_dir / "model.safetensors")
    b = load_safetensors(resumed.model_dir / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) == 0.0
    assert resumed.final == whole.final
