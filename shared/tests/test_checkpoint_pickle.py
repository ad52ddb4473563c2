"""Legacy torch / pickle checkpoints: format detection, the releases' pickled extras, hostile and corrupt files."""

from __future__ import annotations

import argparse
import builtins
import os
import pickle
import sys
import types

import pytest
import torch

from alicemind.core.checkpoint import (
    CheckpointError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    detect_format,
    load_checkpoint_object,
    load_fairseq_checkpoint,
    load_state_dict_file,
    read_fairseq_dictionary,
    save_safetensors,
)


def tiny_state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "bert.model.embeddings.word_embeddings.weight": torch.randn(11, 4, generator=g),
        "decoder.transformer_layers.0.self_attn.linear_query.weight": torch.randn(4, 4, generator=g),
        "decoder.transformer_layers.0.mask": torch.ones(1, 3, 3, dtype=torch.uint8),
        "generator.0.bias": torch.randn(11, generator=g).half(),
    }


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_plain_state_dict_round_trip(tmp_path, zipped):
    sd = tiny_state_dict()
    path = tmp_path / "model.bin"
    torch.save(sd, path, _use_new_zipfile_serialization=zipped)
    assert detect_format(path) == ("torch-zip" if zipped else "torch-legacy")
    assert_same(load_state_dict_file(path), sd)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4:UserWarning")
def test_legacy_file_with_newer_pickle_protocol_is_detected(tmp_path):
    sd = tiny_state_dict()
    path = tmp_path / "p4.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False, pickle_protocol=4)
    assert detect_format(path) == "torch-legacy"
    assert_same(load_state_dict_file(path), sd)


def test_plain_pickle_and_safetensors_are_detected(tmp_path):
    sd = tiny_state_dict()
    pickled = tmp_path / "plain.pkl"
    pickled.write_bytes(pickle.dumps(sd, protocol=2))
    assert detect_format(pickled) == "pickle"
    assert_same(load_state_dict_file(pickled), sd)
    st = tmp_path / "weights"  # no extension: detection is by content
    save_safetensors(sd, st)
    assert detect_format(st) == "safetensors"
    assert_same(load_state_dict_file(st), sd)


@pytest.fixture
def presumm_optimizer_module(monkeypatch):
    """A stand-in for PreSumm's `models.optimizers` so that a checkpoint can be written with that global name."""
    pkg = types.ModuleType("models")
    mod = types.ModuleType("models.optimizers")

    class Optimizer:
        def __init__(self, method, lr):
            self.method, self.learning_rate, self._step = method, lr, 7
            self.params = []

    Optimizer.__module__, Optimizer.__qualname__ = "models.optimizers", "Optimizer"
    mod.Optimizer = Optimizer
    pkg.optimizers = mod
    monkeypatch.setitem(sys.modules, "models", pkg)
    monkeypatch.setitem(sys.modules, "models.optimizers", mod)
    return Optimizer


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_palm_en_checkpoint_loads_with_placeholders(tmp_path, monkeypatch, presumm_optimizer_module, zipped):
    sd = tiny_state_dict()
    param = torch.nn.Parameter(sd["bert.model.embeddings.word_embeddings.weight"].clone())
    adam = torch.optim.Adam([param], lr=2e-3)
    param.grad = torch.ones_like(param)
    adam.step()
    optim = presumm_optimizer_module("adam", 2e-3)
    optim.optimizer = adam
    opt = argparse.Namespace(task="abs", dec_layers=12, dec_hidden_size=768, dec_ff_size=3072, enc_hidden_size=768)
    path = tmp_path / "model_palm_en_base.pt"
    torch.save({"model": sd, "opt": opt, "optims": [optim]}, path, _use_new_zipfile_serialization=zipped)
    # The reader must not need the original module to be importable.
    monkeypatch.delitem(sys.modules, "models.optimizers")
    monkeypatch.delitem(sys.modules, "models")

    obj = load_checkpoint_object(path)
    assert obj["opt"] == {"task": "abs", "dec_layers": 12, "dec_hidden_size": 768, "dec_ff_size": 3072,
                          "enc_hidden_size": 768}  # fmt: skip
    (optim_dict,) = obj["optims"]
    assert optim_dict["__class__"] == "models.optimizers.Optimizer"
    assert optim_dict["method"] == "adam" and optim_dict["_step"] == 7
    adam_dict = optim_dict["optimizer"]
    assert adam_dict["__class__"] == "torch.optim.adam.Adam"
    assert adam_dict["param_groups"][0]["lr"] == 2e-3
    (adam_state,) = adam_dict["state"].values()
    assert adam_state["exp_avg"].shape == (11, 4)
    assert_same(obj["model"], sd)
    assert_same(load_state_dict_file(path), sd)


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _RunsPython:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("payload", [_RunsShell, _RunsPython])
@pytest.mark.parametrize("writer", ["zip", "legacy", "pickle"])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, payload, writer):
    marker = tmp_path / "pwned"
    obj = {"model": tiny_state_dict(), "opt": argparse.Namespace(evil=payload(marker))}
    path = tmp_path / "evil.pt"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=writer == "zip")
    for reader in (load_checkpoint_object, load_state_dict_file, load_fairseq_checkpoint):
        with pytest.raises(UnsafeCheckpointError) as info:
            reader(path)
        message = str(info.value)
        expected = "posix.system" if payload is _RunsShell else "builtins.exec"
        assert f"refusing to unpickle {expected} from {path}" in message
    assert not marker.exists()


def test_unknown_class_can_be_allowed_as_placeholder(tmp_path, monkeypatch):
    mod = types.ModuleType("apex_like")

    class LossScaler:
        def __init__(self):
            self.scale = 4096.0

    LossScaler.__module__, LossScaler.__qualname__ = "apex_like", "LossScaler"
    mod.LossScaler = LossScaler
    monkeypatch.setitem(sys.modules, "apex_like", mod)
    path = tmp_path / "ds.pt"
    torch.save({"module": tiny_state_dict(), "scaler": LossScaler()}, path)
    monkeypatch.delitem(sys.modules, "apex_like")
    with pytest.raises(UnsafeCheckpointError, match="apex_like.LossScaler"):
        load_checkpoint_object(path)
    obj = load_checkpoint_object(path, allow_placeholders=["apex_like.*"])
    assert obj["scaler"] == {"__class__": "apex_like.LossScaler", "scale": 4096.0}


def test_corrupt_files_raise_corrupt_error_naming_the_file(tmp_path):
    sd = tiny_state_dict()
    good_zip, good_legacy = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(sd, good_zip)
    torch.save(sd, good_legacy, _use_new_zipfile_serialization=False)
    cases = {
        "empty.pt": b"",
        "garbage.pt": b"this is not a checkpoint at all",
        "trunc_zip.pt": good_zip.read_bytes()[: good_zip.stat().st_size // 2],
        "trunc_legacy.pt": good_legacy.read_bytes()[:200],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CorruptCheckpointError) as info:
            load_state_dict_file(path)
        assert str(path) in str(info.value)
    with pytest.raises(CorruptCheckpointError, match="missing.pt"):
        load_state_dict_file(tmp_path / "missing.pt")


def test_file_without_state_dict_is_reported(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"step": 3, "note": "no weights"}, path)
    with pytest.raises(CheckpointError, match=r"no state dict found .*\"step\", \"note\""):
        load_state_dict_file(path)


def test_fairseq_checkpoint_with_args_namespace(tmp_path):
    sd = {"encoder.embed_tokens.weight": torch.randn(9, 4), "encoder.version": torch.tensor([3.0])}
    args = argparse.Namespace(arch="veco_large", encoder_layers=24, share_all_embeddings=True)
    path = tmp_path / "model.pt"
    torch.save({"model": sd, "args": args, "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropy"}],
                "extra_state": {"val_loss": 2.5}, "last_optimizer_state": {"state": {}}}, path,
               _use_new_zipfile_serialization=False)  # fmt: skip
    state_dict, got_args = load_fairseq_checkpoint(path)
    assert_same(state_dict, sd)
    assert got_args == {"arch": "veco_large", "encoder_layers": 24, "share_all_embeddings": True}


def test_fairseq_checkpoint_with_cfg_is_flattened(tmp_path):
    sd = {"decoder.output_projection.weight": torch.randn(9, 4)}
    cfg = {"common": {"fp16": True, "seed": 1}, "model": {"arch": "transformer", "seed": 2}, "task": {"_name": "mt"}}
    path = tmp_path / "model.pt"
    torch.save({"model": sd, "args": None, "cfg": cfg}, path)
    state_dict, got_args = load_fairseq_checkpoint(path)
    assert_same(state_dict, sd)
    assert got_args == {"fp16": True, "seed": 2, "arch": "transformer", "_name": "mt"}


def test_fairseq_dictionary(tmp_path):
    path = tmp_path / "dict.txt"
    path.write_text("▁the 100\n, 50\n[en] 1 #fairseq:overwrite\n▁the 3 #fairseq:overwrite\n", encoding="utf-8")
    symbols = read_fairseq_dictionary(path)
    assert symbols == ["<s>", "<pad>", "</s>", "<unk>", "▁the", ",", "[en]", "▁the"]
    path.write_text("a 1\nb x\n", encoding="utf-8")
    with pytest.raises(CorruptCheckpointError, match=r"dict.txt:2: count 'x' is not an integer"):
        read_fairseq_dictionary(path)
    path.write_text("a 1\na 2\n", encoding="utf-8")
    with pytest.raises(CorruptCheckpointError, match=r"dict.txt:2: duplicate symbol 'a'"):
        read_fairseq_dictionary(path)
