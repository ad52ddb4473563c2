"""safetensors save/load: tied tensors, views, metadata, atomic writes, corrupt files."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from torch import nn

from alicemind.core.checkpoint import (
    CorruptCheckpointError,
    load_into_model,
    load_safetensors,
    read_safetensors_metadata,
    save_safetensors,
)


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(7, 3)
        self.decoder = nn.Linear(3, 7, bias=False)
        self.decoder.weight = self.embed.weight  # tied, as in BERT's MLM head / PALM's generator


def test_tied_weights_are_stored_once_and_restored_tied(tmp_path):
    model = TiedLM()
    path = tmp_path / "tied.safetensors"
    save_safetensors(model.state_dict(), path, metadata={"source": "test"})
    assert read_safetensors_metadata(path) == {"format": "pt", "source": "test"}
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    assert set(header) == {"__metadata__", "embed.weight"}  # one copy on disk
    assert json.loads(header["__metadata__"]["alicemind.aliases"]) == {"decoder.weight": "embed.weight"}

    loaded = load_safetensors(path)
    assert torch.equal(loaded["decoder.weight"], model.embed.weight)
    assert loaded["decoder.weight"].data_ptr() == loaded["embed.weight"].data_ptr()
    fresh = TiedLM()
    load_into_model(fresh, loaded)
    assert torch.equal(fresh.decoder.weight, model.decoder.weight)


def test_views_and_non_contiguous_tensors_are_stored_as_copies(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = {
        "base": base,
        "rows": base[1:3],  # overlaps base, not the same view: stored separately
        "transposed": base.t(),  # non-contiguous
        "empty_a": torch.empty(0),
        "empty_b": torch.empty(0, 3),
        "half": torch.randn(5).half(),
        "bf16": torch.randn(5).bfloat16(),
        "ints": torch.arange(3, dtype=torch.int64),
    }
    path = tmp_path / "views.safetensors"
    save_safetensors(sd, path)
    loaded = load_safetensors(path)
    assert sorted(loaded) == sorted(sd)
    for key, value in sd.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key
    assert loaded["rows"].data_ptr() != loaded["base"].data_ptr()


def test_reserved_metadata_and_non_tensor_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_safetensors({"a": torch.ones(1)}, tmp_path / "x.safetensors", metadata={"alicemind.aliases": "{}"})
    with pytest.raises(TypeError, match=r"state_dict\['a'\] is a int"):
        save_safetensors({"a": 3}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="str to str"):
        save_safetensors({"a": torch.ones(1)}, tmp_path / "x.safetensors", metadata={"step": 3})


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_safetensors({"a": torch.ones(2)}, path)
    original = path.read_bytes()

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("alicemind.core.checkpoint.safetensors_io.save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_safetensors({"a": torch.zeros(2)}, path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary file left behind


def test_truncated_and_garbled_files_raise_corrupt_error(tmp_path):
    path = tmp_path / "good.safetensors"
    save_safetensors({"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 100])
    garbled = tmp_path / "garbled.safetensors"
    garbled.write_bytes(data[:8] + b"#" * 40 + data[48:])
    for bad in (truncated, garbled):
        with pytest.raises(CorruptCheckpointError) as info:
            load_safetensors(bad)
        assert str(bad) in str(info.value)
