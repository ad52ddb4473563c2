"""A pre-training run killed after a step resumes (same masked instances, optimizer and RNG state) to the
bit-identical final weights of an uninterrupted run; another run into the used output_dir stops with exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from structurallm_testing import synthetic_pages

from alicemind.core.cli import main
from alicemind.core.training import trainer as trainer_mod


class Crash(Exception):
    pass


def _argv(docs, tok, out, *extra):
    return ["structurallm", "pretrain", "--no-progress", "--recipe", "pretrain-demo", f"documents={docs}",
            f"tokenizer={tok}", f"output_dir={out}", "training.max_steps=8", "training.save_every=2",
            "training.precision=fp32", "training.log_every=1", "+training.device=cpu", "data.dupe_factor=1",
            "training.per_device_batch_size=4", *extra]  # fmt: skip


def test_killed_run_resumes_to_the_same_weights(tokenizer, tmp_path, monkeypatch, capsys):
    docs = tmp_path / "pages.jsonl"
    docs.write_text("".join(json.dumps(r) + "\n" for r in synthetic_pages(12)))
    tokenizer.save_pretrained(tmp_path / "tok")
    assert main(_argv(docs, tmp_path / "tok", tmp_path / "whole")) == 0
    real = trainer_mod.Trainer._optimizer_step

    def step_then_crash(self) -> None:
        real(self)
        if self.state.step == 5:
            raise Crash("simulated crash after step 5")

    monkeypatch.setattr(trainer_mod.Trainer, "_optimizer_step", step_then_crash)
    with pytest.raises(Crash):
        main(_argv(docs, tmp_path / "tok", tmp_path / "cut"))
    steps = []

    def counted(self) -> None:
        real(self)
        steps.append(self.state.step)

    monkeypatch.setattr(trainer_mod.Trainer, "_optimizer_step", counted)
    assert main(_argv(docs, tmp_path / "tok", tmp_path / "cut")) == 0
    assert steps == [5, 6, 7, 8]  # resumed from the step-4 checkpoint, not started again
    whole = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "model" / "model.safetensors")
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    capsys.readouterr()
    assert main(_argv(docs, tmp_path / "tok", tmp_path / "cut", "data.masked_lm_prob=0.3")) == 2
    assert "--overwrite" in capsys.readouterr().err
