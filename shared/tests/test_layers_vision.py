"""core's CLIP VisionTransformer against transformers.CLIPVisionModel, both ways, native and interpolated size."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

from alicemind.core.checkpoint.clip import (
    clip_visual_to_core,
    core_to_clip_visual,
    core_to_hf_clip_vision,
    hf_clip_vision_to_core,
)
from alicemind.core.layers import VisionConfig, VisionTransformer
from alicemind.core.layers.vision import resize_position_embeddings

TINY = dict(image_size=32, patch_size=8, width=32, layers=2, heads=4, output_dim=16)


def hf_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=16, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )  # fmt: skip


def randomise(module: torch.nn.Module) -> None:
    # Initialisers leave LayerNorm at 1/0; random values make a swapped norm visible.
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


@pytest.mark.parametrize("size", [32, 48])
def test_hf_to_core_matches_clip_vision_model(size):
    hf = CLIPVisionModelWithProjection(hf_config()).eval()
    randomise(hf)
    ours = VisionTransformer(VisionConfig(**TINY)).eval()
    ours.load_state_dict(hf_clip_vision_to_core(hf.state_dict()), strict=True)
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = hf(pixel_values=pixels, interpolate_pos_encoding=size != 32, output_hidden_states=True)
        hidden = ours.forward_features(pixels)
        embeds = ours(pixels)
        tokens = ours(pixels, skip_last_layer=True)
    assert hidden.shape == (2, (size // 8) ** 2 + 1, 32)
    torch.testing.assert_close(hidden, ref.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embeds, ref.image_embeds, atol=1e-5, rtol=1e-5)
    # skip_last_layer: ln_post on every token, CLS row equal to HF's pooled output
    pooled = hf.vision_model.post_layernorm(ref.last_hidden_state)
    torch.testing.assert_close(tokens, pooled, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [32, 48])
def test_core_to_hf_matches(size):
    ours = VisionTransformer(VisionConfig(**TINY)).eval()
    randomise(ours)
    hf = CLIPVisionModel(hf_config()).eval()
    prefix = "vision_model." if next(iter(hf.state_dict())).startswith("vision_model.") else ""
    # strict=False only to tolerate HF's position_ids buffer; the next line asserts nothing else is missing.
    missing, unexpected = hf.load_state_dict(core_to_hf_clip_vision(ours.state_dict(), prefix), strict=False)
    assert unexpected == [] and all(k.endswith("position_ids") for k in missing)
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = hf(pixel_values=pixels, interpolate_pos_encoding=size != 32)
        hidden = ours.forward_features(pixels)
        pooled = ours.ln_post(hidden[:, 0])
    torch.testing.assert_close(hidden, ref.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, ref.pooler_output, atol=1e-5, rtol=1e-5)


def test_openai_names_round_trip_and_drop_text_tower():
    ours = VisionTransformer(VisionConfig(**TINY))
    clip = core_to_clip_visual(ours.state_dict())
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in clip
    assert "visual.transformer.resblocks.0.mlp.c_fc.bias" in clip
    clip["token_embedding.weight"] = torch.zeros(3, 4)  # the text tower is dropped
    back = clip_visual_to_core(clip)
    assert back.keys() == ours.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())


def test_presets_are_the_released_towers():
    b16, l14 = VisionConfig.preset("ViT-B/16"), VisionConfig.preset("ViT-L/14", image_size=336)
    assert (b16.width, b16.layers, b16.heads, b16.patch_size, b16.grid) == (768, 12, 12, 16, 14)
    assert (l14.width, l14.layers, l14.heads, l14.patch_size, l14.grid) == (1024, 24, 16, 14, 24)
    with pytest.raises(ValueError, match="unknown CLIP vision preset"):
        VisionConfig.preset("ViT-H/14")


def test_resize_keeps_cls_and_identity_at_same_grid():
    table = torch.randn(1 + 16, 8)
    assert resize_position_embeddings(table, 4) is table
    resized = resize_position_embeddings(table, (6, 6), mode="bilinear")
    assert resized.shape == (37, 8)
    assert torch.equal(resized[0], table[0])
    # a constant grid stays constant under bilinear resizing
    flat = torch.cat([table[:1], torch.ones(16, 8)])
    torch.testing.assert_close(resize_position_embeddings(flat, 3, mode="bilinear")[1:], torch.ones(9, 8))


def test_bad_pixels_are_refused():
    vit = VisionTransformer(VisionConfig(**TINY))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        vit(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\[batch, 3, height, width\]"):
        vit(torch.randn(3, 32, 32))
