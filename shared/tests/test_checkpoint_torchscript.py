"""The TorchScript archive reader: tensors of a torch.jit.save'd CLIP-like module, without running its code."""

from __future__ import annotations

import pickle
import zipfile

import pytest
import torch
from torch import nn

from alicemind.core.checkpoint import CorruptCheckpointError, UnsafeCheckpointError
from alicemind.core.checkpoint.clip import (
    clip_visual_to_core,
    core_to_clip_visual,
    is_torchscript_archive,
    load_torchscript_state_dict,
)
from alicemind.core.layers import VisionConfig, VisionTransformer


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, 4)
        self.ln_1 = nn.LayerNorm(width)

    def forward(self, x):
        return self.attn(self.ln_1(x), self.ln_1(x), self.ln_1(x), need_weights=False)[0]


class Visual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 8, 8, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(32))
        self.block = Block(32)

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(2, 0, 1)
        return self.block(x + self.class_embedding)


class TinyClip(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = Visual()
        self.logit_scale = nn.Parameter(torch.ones([]) * 2.5)
        self.register_buffer("attn_mask", torch.full((3, 3), float("-inf")).triu(1))

    def forward(self, x):
        return self.visual(x) * self.logit_scale


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyClip().eval()
    path = tmp_path_factory.mktemp("ts") / "ViT-tiny.tar"
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 16, 16)), str(path))
    return path, model.state_dict()


def test_reads_every_tensor_equal_to_the_module(archive):
    path, expected = archive
    assert is_torchscript_archive(path)
    state = load_torchscript_state_dict(path)
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    assert state["visual.block.attn.in_proj_weight"].shape == (96, 32)


def test_code_is_never_run(archive, tmp_path, monkeypatch):
    path, expected = archive
    called = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: called.append(a))
    # A torch.jit archive whose TorchScript source is garbage still reads: code/ is never compiled.
    broken = tmp_path / "broken.tar"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if "/code/" in item.filename and item.filename.endswith(".py"):
                data = b"import os; os.system('echo pwned')\n"
            dst.writestr(item, data)
    state = load_torchscript_state_dict(broken)
    assert torch.equal(state["logit_scale"], expected["logit_scale"])
    assert called == []


class Hostile:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_hostile_data_pkl_is_refused(tmp_path):
    path = tmp_path / "hostile.tar"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps({"weight": Hostile()}, protocol=2))
        z.writestr("m/code/__torch__.py", "")
        z.writestr("m/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system|nt.system"):
        load_torchscript_state_dict(path)


def test_not_an_archive_and_missing_storage(tmp_path, archive):
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"not a zip at all")
    assert not is_torchscript_archive(plain)
    with pytest.raises(CorruptCheckpointError, match="not a TorchScript archive"):
        load_torchscript_state_dict(plain)
    path, _ = archive
    cut = tmp_path / "cut.tar"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(cut, "w") as dst:
        for item in src.infolist():
            if "/data/" not in item.filename:
                dst.writestr(item, src.read(item))
    with pytest.raises(CorruptCheckpointError, match="lacks"):
        load_torchscript_state_dict(cut)


def test_clip_vit_archive_loads_into_core_vit(tmp_path):
    """A core ViT saved under OpenAI names in a TorchScript archive comes back equal through the reader."""
    torch.manual_seed(1)
    vit = VisionTransformer(VisionConfig(image_size=16, patch_size=8, width=32, layers=1, heads=4, output_dim=8))

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = nn.Module()
            for key, value in core_to_clip_visual(vit.state_dict(), prefix="").items():
                *path, leaf = key.split(".")
                mod = self.visual
                for part in path:
                    if not hasattr(mod, part):
                        mod.add_module(part, nn.Module())
                    mod = getattr(mod, part)
                mod.register_parameter(leaf, nn.Parameter(value.clone()))

        def forward(self, x):
            return x * self.visual.proj.sum()

    path = tmp_path / "ViT-mini.tar"
    torch.jit.save(torch.jit.trace(Holder(), torch.randn(2)), str(path))
    loaded = VisionTransformer(vit.config)
    loaded.load_state_dict(clip_visual_to_core(load_torchscript_state_dict(path)), strict=True)
    pixels = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels), vit(pixels), rtol=0, atol=0)
