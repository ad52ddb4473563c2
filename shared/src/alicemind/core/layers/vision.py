"""The CLIP vision transformer (OpenAI ViT-B/16, ViT-L/14) on core's pre-LN block, for every family that sees images.

API (kept stable for the families that use it: mPLUG; StructVBERT grid features)::

    vit = VisionTransformer(VisionConfig.preset("ViT-B/16"))          # or VisionConfig(image_size=..., ...)
    tokens = vit(pixels, skip_last_layer=True)   # [B, 1 + patches, width]: ln_post on every token, no projection
    embeds = vit(pixels)                          # [B, output_dim]: ln_post(CLS) @ proj (CLIP's image embedding)
    hidden = vit.forward_features(pixels)         # [B, 1 + patches, width] before ln_post (HF last_hidden_state)

Images of another size than ``config.image_size`` (any multiple of the patch size, also non-square) get their
position table interpolated on the fly (bicubic, as ``transformers.CLIPVisionModel(interpolate_pos_encoding=True)``);
:func:`resize_position_embeddings` resizes a checkpoint's table once (mPLUG's loaders use bilinear).

Parameter names follow OpenAI CLIP's ``visual`` module (``conv1``, ``class_embedding``, ``positional_embedding``,
``ln_pre``, ``ln_post``, ``proj``) except the blocks, which are core's ``transformer.layers.{i}``;
:mod:`alicemind.core.checkpoint.clip` maps OpenAI and Hugging Face names both ways.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers.block import BlockSpec
from alicemind.core.layers.stack import TransformerStack

__all__ = ["CLIP_VISION_PRESETS", "VisionConfig", "VisionTransformer", "resize_position_embeddings"]


@dataclass
class VisionConfig:
    """Shape of a CLIP-style ViT. ``output_dim`` 0 means no ``proj`` (the pooled output is ``ln_post(CLS)``)."""

    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    output_dim: int = 512
    activation: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    dropout: float = 0.0
    # OpenAI CLIP uses 0; mPLUG's copy of CLIP uses 0.1 (errata §7).
    attention_dropout: float = 0.0

    @classmethod
    def preset(cls, name: str, **overrides) -> VisionConfig:
        """A released CLIP vision tower by name (``ViT-B/16``, ``ViT-L/14``), with field overrides."""
        try:
            fields = dict(CLIP_VISION_PRESETS[name])
        except KeyError:
            raise ValueError(f"unknown CLIP vision preset {name!r}; known: {sorted(CLIP_VISION_PRESETS)}") from None
        fields.update(overrides)
        return cls(**fields)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


# The released OpenAI CLIP towers (``ViT-B-16.tar`` / ``ViT-L-14.tar``), as data.
CLIP_VISION_PRESETS: dict[str, dict] = {
    "ViT-B/16": dict(image_size=224, patch_size=16, width=768, layers=12, heads=12, output_dim=512),
    "ViT-L/14": dict(image_size=224, patch_size=14, width=1024, layers=24, heads=16, output_dim=768),
}


def resize_position_embeddings(table: torch.Tensor, grid: int | tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize a ``[1 + g*g, width]`` CLS+grid table to ``grid`` (int or ``(h, w)``); the CLS row is kept as is."""
    rows, width = table.shape
    old = round((rows - 1) ** 0.5)
    if old * old != rows - 1:
        raise ValueError(f"a position table of {rows} rows is not CLS + a square grid")
    new_h, new_w = (grid, grid) if isinstance(grid, int) else grid
    if (new_h, new_w) == (old, old):
        return table
    patches = table[1:].reshape(1, old, old, width).permute(0, 3, 1, 2)
    patches = F.interpolate(patches.float(), size=(new_h, new_w), mode=mode, align_corners=False).to(table.dtype)
    return torch.cat([table[:1], patches.permute(0, 2, 3, 1).reshape(new_h * new_w, width)])


class VisionTransformer(nn.Module):
    """CLIP's visual tower: patch conv, CLS token, positions, ``ln_pre``, pre-LN blocks (QuickGELU), ``ln_post``."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        if config.image_size % config.patch_size:
            raise ValueError(f"image_size {config.image_size} is not a multiple of patch_size {config.patch_size}")
        self.config = config
        width, scale = config.width, config.width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(config.grid**2 + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=config.layer_norm_eps)
        spec = BlockSpec(
            hidden_size=width,
            num_heads=config.heads,
            intermediate_size=int(width * config.mlp_ratio),
            activation=config.activation,
            norm_first=True,
            layer_norm_eps=config.layer_norm_eps,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            fused_qkv=True,
        )
        self.transformer = TransformerStack(spec, config.layers, final_norm=False)
        self.ln_post = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.proj = nn.Parameter(scale * torch.randn(width, config.output_dim)) if config.output_dim else None

    @property
    def width(self) -> int:
        return self.config.width

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block in backward (CLIP in mPLUG checkpoints every block)."""
        self.transformer.gradient_checkpointing = enabled

    def _positions(self, height: int, width: int) -> torch.Tensor:
        p = self.config.patch_size
        grid = (height // p, width // p)
        if grid == (self.config.grid, self.config.grid):
            return self.positional_embedding
        return resize_position_embeddings(self.positional_embedding, grid)

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, 1 + patches, width]`` after ``ln_pre`` (H, W multiples of the patch size)."""
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"expected pixel values [batch, 3, height, width], got {tuple(pixel_values.shape)}")
        h, w = pixel_values.shape[-2:]
        p = self.config.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        x = self.conv1(pixel_values.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self._positions(h, w).to(x.dtype)
        return self.ln_pre(x)

    def forward_features(self, pixel_values: torch.Tensor, *, output_hidden_states: bool = False):
        """Block outputs before ``ln_post``; with ``output_hidden_states`` also ``(embeddings, block 1, ...)``."""
        out = self.transformer(self.embed(pixel_values), output_hidden_states=output_hidden_states)
        return (out.last_hidden_state, out.hidden_states) if output_hidden_states else out.last_hidden_state

    def forward(self, pixel_values: torch.Tensor, *, skip_last_layer: bool = False) -> torch.Tensor:
        """CLIP's ``visual(image, skip_last_layer)``: ``ln_post`` on all tokens, or the projected CLS embedding."""
        hidden = self.forward_features(pixel_values)
        if skip_last_layer:
            return self.ln_post(hidden)
        pooled = self.ln_post(hidden[:, 0])
        return pooled @ self.proj if self.proj is not None else pooled
