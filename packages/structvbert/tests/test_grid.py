"""Grid features from core's ViT: cells as boxes, patch tokens as features, run through the model."""

from __future__ import annotations

import pytest
import torch
from structvbert_testing import tiny_config

from alicemind.core.layers import VisionTransformer
from alicemind.core.layers.vision import VisionConfig
from alicemind.structvbert import StructVBertForVQA
from alicemind.structvbert.grid import grid_boxes, grid_features


def test_grid_features_from_core_vit_feed_the_model():
    assert grid_boxes(2, 3).tolist()[4] == pytest.approx([1 / 3, 0.5, 2 / 3, 1.0])  # row 1, column 1
    torch.manual_seed(0)
    vit = VisionTransformer(VisionConfig(image_size=32, patch_size=8, width=24, layers=1, heads=2, output_dim=0)).eval()
    pixels = torch.randn(2, 3, 32, 48)  # 4 x 6 patches (another size than the config's: positions interpolated)
    feats, boxes = grid_features(vit, pixels)
    assert feats.shape == (2, 24, 24) and boxes.shape == (2, 24, 4)
    assert torch.equal(feats, vit(pixels, skip_last_layer=True)[:, 1:])
    assert boxes[0, -1].tolist() == pytest.approx([5 / 6, 0.75, 1.0, 1.0])
    model = StructVBertForVQA(tiny_config(visual_feat_dim=24, max_objects=24, answers=["a", "b"])).eval()
    ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]])
    logits = model(ids, visual_feats=feats, visual_boxes=boxes, attention_mask=(ids != 0).long()).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
