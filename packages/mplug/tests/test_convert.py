"""Released-layout files load under each task's rules with every key accounted for; ours round-trips."""

from __future__ import annotations

import re

import pytest
import torch
from mplug_testing import release_overrides, release_state_dict, tiny_config

from alicemind.core.checkpoint import CheckpointMismatchError
from alicemind.mplug import (
    MPlugForCaption,
    MPlugForGrounding,
    MPlugForPreTraining,
    MPlugForRetrieval,
    MPlugForVQA,
)
from alicemind.mplug.convert import release_to_ours

TASKS = [MPlugForCaption, MPlugForVQA, MPlugForRetrieval, MPlugForGrounding, MPlugForPreTraining]


@pytest.fixture(scope="module")
def pretrained_file(tmp_path_factory):
    """A synthetic 'mplug_base.pth': a pre-training model (every part, momentum copies, heads, queues)."""
    torch.manual_seed(0)
    source = MPlugForPreTraining(tiny_config()).eval()
    path = tmp_path_factory.mktemp("release") / "mplug_tiny.pth"
    torch.save(release_state_dict(source), path)
    return path, source


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.__name__)
def test_pretrained_file_loads_for_every_task(cls, pretrained_file):
    path, source = pretrained_file
    model = cls.from_pretrained(path, **release_overrides()).eval()
    assert model.source_format == f"mplug-release-{cls.release_task}"
    mine, theirs = model.state_dict(), source.state_dict()
    for key, value in mine.items():
        # the file has no fusion/decoder momentum copies: they start as copies of the online modules
        online = key if key in theirs else re.sub(r"^(fusion_encoder|text_decoder)_m\.", r"\1.", key)
        assert torch.equal(value, theirs[online]), key
    assert model.config.num_hidden_layers == 3 and model.config.fusion_layers == 2
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(pixels)[0], source.encode_image(pixels)[0], rtol=0, atol=0)
    if cls is MPlugForCaption:
        assert not hasattr(model, "text_encoder") and not hasattr(model, "visual_encoder_m")
    if cls is MPlugForVQA:
        assert hasattr(model, "fusion_encoder_m") and hasattr(model, "text_decoder_m")


def test_deepspeed_module_key_and_position_resize(tmp_path):
    torch.manual_seed(1)
    source = MPlugForCaption(tiny_config())
    path = tmp_path / "ds.pt"
    torch.save(release_state_dict(source, grid_from=2, wrap="module"), path)
    model = MPlugForCaption.from_pretrained(path, **release_overrides(), image_size=32)
    table = model.visual_encoder.positional_embedding
    assert table.shape == (17, 48)  # 2x2 grid + CLS resized to the 4x4 grid of a 32px image
    raw = torch.load(path, weights_only=True)["module"]["visual_encoder.visual.positional_embedding"]
    assert torch.equal(table[0], raw[0])
    corner = torch.nn.functional.interpolate(raw[1:].reshape(1, 2, 2, 48).permute(0, 3, 1, 2), size=(4, 4),
                                             mode="bilinear", align_corners=False)  # fmt: skip
    torch.testing.assert_close(table[1:], corner.permute(0, 2, 3, 1).reshape(16, 48))


def test_foreign_or_missing_keys_are_errors(tmp_path, pretrained_file):
    path, _ = pretrained_file
    state = torch.load(path, weights_only=True)
    state["model"]["text_encoder.bert.encoder.layer.0.attention.self.extra"] = torch.zeros(1)
    bad = tmp_path / "extra.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointMismatchError, match="attention.self.extra|self_attn.extra"):
        MPlugForVQA.from_pretrained(bad, **release_overrides())
    state = torch.load(path, weights_only=True)
    del state["model"]["fusion_encoder.fusion.encoder.layer.2.crossattention.self.key.weight"]
    torch.save(state, bad)
    with pytest.raises(CheckpointMismatchError, match="fusion_encoder.layers.1.cross_attn.k_proj.weight"):
        MPlugForVQA.from_pretrained(bad, **release_overrides())


def test_dead_fusion_layers_and_text_tower_are_named_unused(pretrained_file):
    path, source = pretrained_file
    raw = torch.load(path, weights_only=True)["model"]
    ours = release_to_ours(raw, source.config)
    assert "fusion_encoder.dead_layer.0.attention.self.query.weight" not in raw
    assert any(k.startswith("fusion_encoder.dead_layer.0.") for k in ours)
    assert ours["visual_encoder.clip_text.positional_embedding"].shape == (7, 16)
    assert ours["visual_encoder.positional_embedding"].shape == (17, 48)


def test_ours_round_trips(tmp_path):
    torch.manual_seed(2)
    model = MPlugForVQA(tiny_config())
    model.save_pretrained(tmp_path / "vqa")
    again = MPlugForVQA.from_pretrained(tmp_path / "vqa")
    assert again.source_format == "alicemind"
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert again.text_decoder.cls.decoder.weight is again.text_decoder.bert.embeddings.word_embeddings.weight


def test_finetuned_task_file_layout_loads(tmp_path):
    """A fine-tuned caption file: keys already remapped by the script, in {'model', 'optimizer', 'lr_scheduler',
    'config', 'epoch'} (caption_mplug.py), with the caption model's parts only and no momentum copies."""
    torch.manual_seed(3)
    source = MPlugForCaption(tiny_config())
    state = release_state_dict(source)["model"]
    remapped = {re.sub(r"^(text_encoder|fusion_encoder)\.(bert|fusion)\.", r"\1.", k): v for k, v in state.items()}
    checkpoint = {"model": remapped, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5}]},
                  "lr_scheduler": {"last_epoch": 3}, "config": {"image_res": 32}, "epoch": 3}  # fmt: skip
    torch.save(checkpoint, tmp_path / "checkpoint_03.pth")
    model = MPlugForCaption.from_pretrained(tmp_path / "checkpoint_03.pth", **release_overrides())
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())
