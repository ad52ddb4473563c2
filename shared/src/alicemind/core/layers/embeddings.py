"""Input embeddings: word + positions (learned, offset or sinusoidal) + token types, 2-D layout, scaling, LN."""

from __future__ import annotations

import math

import torch
from torch import nn


class SequenceTooLongError(ValueError):
    """A sequence is longer than the model's position table."""


class TextEmbeddings(nn.Module):
    """``word_embeddings`` (optionally factorised through ``word_projection``), ``position_embeddings``,
    ``token_type_embeddings``, then ``norm`` and dropout.

    Covers BERT/StructBERT (positions from 0), RoBERTa/XLM-R/VECO (positions offset by ``pad_token_id + 1``),
    fairseq's ``embed_scale`` (VECO NLG multiplies word embeddings by sqrt(hidden)), and ALBERT-style factorised
    tables (LatticeBERT).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        *,
        max_positions: int = 512,
        type_vocab_size: int = 2,
        pad_token_id: int | None = 0,
        position_offset: int = 0,
        embedding_size: int | None = None,
        layer_norm: bool = True,
        layer_norm_eps: float = 1e-12,
        dropout: float = 0.1,
        scale: float = 1.0,
        projection_bias: bool = True,
    ):
        super().__init__()
        emb = embedding_size or hidden_size
        self.word_embeddings = nn.Embedding(vocab_size, emb, padding_idx=pad_token_id)
        # LatticeBERT's factorised projection is a bare matmul (no bias): projection_bias=False.
        self.word_projection = nn.Linear(emb, hidden_size, bias=projection_bias) if emb != hidden_size else None
        self.position_embeddings = nn.Embedding(max_positions, hidden_size) if max_positions else None
        self.token_type_embeddings = nn.Embedding(type_vocab_size, hidden_size) if type_vocab_size else None
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps) if layer_norm else None
        self.dropout = nn.Dropout(dropout)
        self.position_offset, self.scale = position_offset, scale
        self.max_positions = max_positions - position_offset if max_positions else None

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_length: int = 0,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embed ``[B, L]`` ids (or take ``inputs_embeds``); ``extra`` is added before the norm (e.g. 2-D layout)."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
            if self.word_projection is not None:
                inputs_embeds = self.word_projection(inputs_embeds)
        seq_len = inputs_embeds.shape[1]
        x = inputs_embeds * self.scale if self.scale != 1.0 else inputs_embeds
        if self.position_embeddings is not None:
            if position_ids is None:
                end = past_length + seq_len
                if end > self.max_positions:
                    raise SequenceTooLongError(
                        f"sequence of {end} positions is longer than the model's {self.max_positions}; "
                        "truncate the input (tokenizer truncation=True, max_length)"
                    )
                position_ids = torch.arange(past_length, end, device=x.device)[None]
            x = x + self.position_embeddings(position_ids + self.position_offset)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
            x = x + self.token_type_embeddings(token_type_ids)
        if extra is not None:
            x = x + extra
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


class SinusoidalPositions(nn.Module):
    """Fixed sin/cos position encodings (Transformer / PreSumm decoders), added after the caller's scaling."""

    def __init__(self, dim: int, max_len: int = 5000):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)
        self.register_buffer("table", table, persistent=False)

    def forward(self, seq_len: int, past_length: int = 0) -> torch.Tensor:
        end = past_length + seq_len
        if end > self.table.shape[0]:
            raise SequenceTooLongError(
                f"sequence of {end} positions exceeds the sinusoidal table ({self.table.shape[0]})"
            )
        return self.table[past_length:end][None]


class LayoutEmbeddings(nn.Module):
    """2-D position embeddings of token boxes ``[B, L, 4]`` as (x0, y0, x1, y1) integers in ``[0, max_coordinate]``.

    ``separate_tables=True`` is StructuralLM (four tables x0/y0/x1/y1); False is LayoutLM (shared x and y tables,
    plus height and width tables).
    """

    def __init__(self, hidden_size: int, *, max_coordinate: int = 1000, separate_tables: bool = True):
        super().__init__()
        n = max_coordinate + 1
        self.separate_tables = separate_tables
        self.max_coordinate = max_coordinate
        if separate_tables:
            self.x0_embeddings, self.y0_embeddings = nn.Embedding(n, hidden_size), nn.Embedding(n, hidden_size)
            self.x1_embeddings, self.y1_embeddings = nn.Embedding(n, hidden_size), nn.Embedding(n, hidden_size)
        else:
            self.x_embeddings, self.y_embeddings = nn.Embedding(n, hidden_size), nn.Embedding(n, hidden_size)
            self.h_embeddings, self.w_embeddings = nn.Embedding(n, hidden_size), nn.Embedding(n, hidden_size)

    def forward(self, bbox: torch.Tensor) -> torch.Tensor:
        if bbox.shape[-1] != 4:
            raise ValueError(f"bbox must end in 4 coordinates (x0, y0, x1, y1), got shape {tuple(bbox.shape)}")
        # Reading the boxes is a host sync, and under torch.compile a graph break: traced code relies on the
        # caller (an eager call, or the collator) having checked the range.
        if not torch.compiler.is_compiling() and (bool((bbox < 0).any()) or bool((bbox > self.max_coordinate).any())):
            raise ValueError(f"bbox coordinates must lie in [0, {self.max_coordinate}]")
        x0, y0, x1, y1 = bbox.unbind(-1)
        if self.separate_tables:
            return self.x0_embeddings(x0) + self.y0_embeddings(y0) + self.x1_embeddings(x1) + self.y1_embeddings(y1)
        return (
            self.x_embeddings(x0)
            + self.y_embeddings(y0)
            + self.x_embeddings(x1)
            + self.y_embeddings(y1)
            + self.h_embeddings((y1 - y0).clamp(min=0))
            + self.w_embeddings((x1 - x0).clamp(min=0))
        )


class PatchEmbedding(nn.Module):
    """ViT patch embedding: a strided conv into ``hidden_size``, a [CLS] token and learned positions."""

    def __init__(self, image_size: int, patch_size: int, hidden_size: int, *, in_channels: int = 3, bias: bool = True):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size = image_size, patch_size
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.num_patches + 1, hidden_size))
        nn.init.trunc_normal_(self.position_embeddings, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, 1 + patches, hidden]``."""
        if pixel_values.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"expected {self.image_size}x{self.image_size} images, got {tuple(pixel_values.shape[-2:])}"
            )
        x = self.proj(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.position_embeddings
