"""Grid features from core's ViT, for users without a detector: each patch token becomes a "region" whose box is
its grid cell. This is a different input from the released model's bottom-up-attention regions: a model fine-tuned
on it reproduces none of the published numbers, and ``visual_feat_dim`` must be the ViT's width."""

from __future__ import annotations

import torch

from alicemind.core.layers import VisionTransformer


def grid_boxes(rows: int, cols: int) -> torch.Tensor:
    """``[rows * cols, 4]`` normalised x1, y1, x2, y2 of each cell, row by row (the ViT's patch order)."""
    y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    x, y = x.flatten().float(), y.flatten().float()
    return torch.stack([x / cols, y / rows, (x + 1) / cols, (y + 1) / rows], dim=1)


@torch.no_grad()
def grid_features(vit: VisionTransformer, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, 3, H, W]`` images -> (``[B, patches, width]`` patch tokens after ``ln_post``, CLS dropped;
    ``[B, patches, 4]`` their cells as boxes), ready for ``visual_feats`` / ``visual_boxes``."""
    tokens = vit(pixel_values, skip_last_layer=True)[:, 1:]
    patch = vit.config.patch_size
    rows, cols = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
    boxes = grid_boxes(rows, cols).to(tokens.dtype).expand(tokens.shape[0], -1, -1)
    return tokens, boxes
