"""Resuming ``alicemind structbert pretrain``: the vocabulary and shards are built once and reused (checked by
hash), a different run into a used output_dir stops with exit 2, and a run killed anywhere (while building the
vocabulary or the shards, mid-step, mid-checkpoint-write, before the model folder) resumes to the bit-identical
final state of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alicemind.core.cli import main
from alicemind.core.training import checkpoint as ckpt
from alicemind.core.training import trainer as trainer_mod
from alicemind.structbert import pretraining

WORDS = ("the cat dog bird sees runs eats small big red blue green tree house river stone light dark quick slow "
         "gardener waters tomatoes computers compute numbers while under over").split()  # fmt: skip
TINY = ["tokenizer.train_vocab_size=120", "model.config.hidden_size=32", "model.config.num_hidden_layers=1",
        "model.config.num_attention_heads=2", "model.config.intermediate_size=64",
        "model.config.max_position_embeddings=64", "data.max_seq_length=32", "data.max_predictions_per_seq=5",
        "data.dupe_factor=2", "data.eval_fraction=0.1", "data.eval_max_instances=16", "training.max_steps=8",
        "training.per_device_batch_size=8", "training.save_every=2", "training.keep_last_n=null",
        "training.log_every=1", "training.eval_every=0", "training.precision=fp32", "+training.device=cpu",
        "training.warmup_ratio=0.25"]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = random.Random(0)
    docs = [
        "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + "." for _ in range(5))
        for _ in range(30)
    ]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path


def _argv(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["structbert", "pretrain", "--no-progress", "--recipe", "pretrain-demo", f"corpus={corpus}",
            f"output_dir={out}", *TINY, *extra]  # fmt: skip


class Crash(Exception):
    pass


def _crash_after_step(monkeypatch, step: int) -> None:
    real = trainer_mod.Trainer._optimizer_step

    def step_then_crash(self) -> None:
        real(self)
        if self.state.step == step:
            raise Crash(f"simulated crash after step {step}")

    monkeypatch.setattr(trainer_mod.Trainer, "_optimizer_step", step_then_crash)


def test_resume_reuses_the_vocabulary_and_shards(tmp_path: Path, corpus: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "pt"
    _crash_after_step(monkeypatch, 3)
    with pytest.raises(Crash):
        main(_argv(corpus, out))
    monkeypatch.undo()
    vocab, data_json = (out / "data" / "vocab.txt").read_bytes(), (out / "data" / "data.json").read_text()
    shard_bytes = {p: p.read_bytes() for p in (out / "data" / "train").rglob("*") if p.is_file()}

    # The tokenizers trainer is not deterministic across processes: stand in for a run that learns another
    # vocabulary (same tokens, other ids). A resume must not learn one at all.
    calls = []
    real_train = pretraining.train_wordpiece_vocab

    def other_vocab(documents, vocab_size, out_file, *, lowercase=True):
        calls.append(out_file)
        path = real_train(documents, vocab_size, out_file, lowercase=lowercase)
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:5] + lines[5:][::-1]) + "\n")
        return path

    monkeypatch.setattr(pretraining, "train_wordpiece_vocab", other_vocab)
    capsys.readouterr()
    assert main(_argv(corpus, out)) == 0
    err = capsys.readouterr().err
    assert calls == []  # before: a new vocabulary was learnt and the shards rewritten under the old weights
    assert "resuming run from checkpoint-2 (step 2 of 8)" in err
    assert (out / "data" / "vocab.txt").read_bytes() == vocab and (out / "data" / "data.json").read_text() == data_json
    assert {p: p.read_bytes() for p in (out / "data" / "train").rglob("*") if p.is_file()} == shard_bytes
    assert (out / "model" / "vocab.txt").read_bytes() == vocab
    run = json.loads((out / "run.json").read_text())["identity"]
    assert set(run["fingerprints"]) == {"corpus", "tokenizer", "shards"}
    assert run["values"]["training.lr"] == 1e-3 and "alicemind-structbert" in run["code"]
    assert "output_dir" not in json.dumps(run["values"])

    # A vocabulary edited after the run built it is refused, not trained on.
    (out / "data" / "vocab.txt").write_bytes(vocab.replace(b"\n", b"\n", 1) + b"extra\n")
    assert main(_argv(corpus, out)) == 2
    err = capsys.readouterr().err
    assert "the tokenizer in" in err and "changed after this run built them" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1

    # --overwrite rebuilds the data (a new vocabulary is learnt) and trains from step 0, saying so.
    assert main([*_argv(corpus, out), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert len(calls) == 1 and f"--overwrite: starting a new run in {out}; deleted checkpoint-" in err
    assert "resuming" not in err


def test_a_different_run_into_a_used_output_dir_exits_2(tmp_path: Path, corpus: Path, capsys) -> None:
    out = tmp_path / "pt"
    assert main(_argv(corpus, out, "training.max_steps=2")) == 0
    other = corpus.with_name("other.txt")
    other.write_text(corpus.read_text().replace("cat", "cow"))
    capsys.readouterr()
    # Before: exit 0, zero steps trained, the old run's weights written as the new model.
    argv = _argv(other, out, "training.max_steps=3", "training.lr=1e-4", "training.seed=7")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("alicemind: error: ")
    assert "training.lr: 0.001 -> 0.0001" in err and "training.seed: 42 -> 7" in err
    assert "corpus fingerprint differs" in err and "--overwrite" in err and "--resume" in err
    # --resume continues the old checkpoints anyway (same vocabulary), saying what differs.
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming run from checkpoint-2 (step 2 of 3) despite: " in err and "training.lr: 0.001 -> 0.0001" in err
    assert "keeping" in err and "vocab.txt" in err
    assert main([*argv, "--resume", "--overwrite"]) == 2


def test_save_every_0_and_keep_final_checkpoint_false_leave_only_the_model(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "none"
    assert main(_argv(corpus, out, "training.save_every=0", "training.max_steps=2")) == 0
    assert not list(out.glob("checkpoint-*")) and (out / "model" / "model.safetensors").is_file()
    out = tmp_path / "dropped"
    assert main(_argv(corpus, out, "training.max_steps=2", "+training.keep_final_checkpoint=false")) == 0
    assert not list(out.glob("checkpoint-*")) and (out / "model" / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------------------ fault injection
# A subprocess runs the pretrain verb and os._exit()s (no cleanup, like SIGKILL) at one injected point.
KILL_SCRIPT = textwrap.dedent(
    """
    import os, shutil, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from alicemind.core.cli import main
    from alicemind.core.data import shards
    from alicemind.core.training import checkpoint as ckpt, trainer
    from alicemind.structbert import StructBertForPreTraining, pretraining

    vocab_src, kill, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    what, _, n = kill.partition(":")
    n = int(n or 0)

    def fixed_vocab(documents, vocab_size, out_file, *, lowercase=True):
        shutil.copyfile(vocab_src, out_file)
        if what == "vocab":
            os._exit(9)
        return Path(out_file)

    pretraining.train_wordpiece_vocab = fixed_vocab
    real_add, added = shards.ShardWriter.add, [0]

    def add(self, instance):
        real_add(self, instance)
        added[0] += 1
        if what == "shard" and added[0] == n:
            os._exit(9)

    shards.ShardWriter.add = add
    real_save = ckpt._save_torch

    def save(obj, path):
        if what == "ckpt" and path.name == "optimizer.pt" and path.parent.name.endswith(f"checkpoint-{n}"):
            real_save(obj, path)
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # half of it reached the disk
            os._exit(9)
        real_save(obj, path)

    ckpt._save_torch = save
    real_step = trainer.Trainer._optimizer_step

    def step(self):
        real_step(self)
        if what == "step" and self.state.step == n:
            os._exit(9)

    trainer.Trainer._optimizer_step = step
    real_model_save = StructBertForPreTraining.save_pretrained

    def save_model(self, *args, **kwargs):
        if what == "model":
            os._exit(9)
        return real_model_save(self, *args, **kwargs)

    StructBertForPreTraining.save_pretrained = save_model
    sys.exit(main(argv))
    """
)


def _final_state(out: Path) -> dict:
    optimizer = ckpt.load_torch(out / "checkpoint-8" / "optimizer.pt", "cpu")
    return {
        "model": load_file(str(out / "model" / "model.safetensors")),
        "checkpoint": load_file(str(out / "checkpoint-8" / "model.safetensors")),
        "optimizer": optimizer["state"],
        "param_groups": optimizer["param_groups"],
        "scheduler": ckpt.load_torch(out / "checkpoint-8" / "scheduler.pt", "cpu"),
        "trainer_state": json.loads((out / "checkpoint-8" / "trainer_state.json").read_text()),
        "metrics": (out / "metrics.jsonl").read_text(),
        "held_out": (out / "held_out.json").read_text(),
        "data": json.loads((out / "data" / "data.json").read_text()),
        "vocab": (out / "data" / "vocab.txt").read_bytes(),
    }


def _assert_equal(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
def test_killed_anywhere_resumes_to_the_uninterrupted_final_state(tmp_path: Path, corpus: Path, monkeypatch) -> None:
    # The vocabulary is learnt once and handed to every run: the tokenizers trainer is not deterministic across
    # processes, and what is under test here is everything after it (persisting it is tested above).
    vocab = pretraining.train_wordpiece_vocab(pretraining.read_documents(corpus), 120, tmp_path / "vocab.txt")

    def fixed_vocab(documents, vocab_size, out_file, *, lowercase=True):
        shutil.copyfile(vocab, out_file)
        return Path(out_file)

    monkeypatch.setattr(pretraining, "train_wordpiece_vocab", fixed_vocab)
    straight = tmp_path / "straight"
    assert main(_argv(corpus, straight)) == 0
    expected = _final_state(straight)
    num_instances = json.loads((straight / "data" / "data.json").read_text())["num_instances"]

    rng = random.Random(921)
    kills = ["vocab", f"shard:{rng.randint(1, num_instances - 1)}", f"ckpt:{rng.choice([2, 4, 6, 8])}",
             *(f"step:{s}" for s in sorted(rng.sample(range(1, 8), 2))), "model"]  # fmt: skip
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = {}
    for kill in kills:
        out = tmp_path / kill.replace(":", "-")
        cmd = [sys.executable, str(script), str(vocab), kill, *_argv(corpus, out)]
        procs[kill] = (out, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for kill, (out, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 9, f"{kill}: {err.decode()[-2000:]}"
        assert not (out / "model").exists(), kill
    for kill, (out, _) in procs.items():
        assert main(_argv(corpus, out)) == 0, kill
        _assert_equal(_final_state(out), expected, kill)
