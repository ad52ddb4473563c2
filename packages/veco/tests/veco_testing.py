"""Tiny VECO configs and batches for the tests (a uniquely named module: every package's tests folder is on
sys.path in one pytest run, so a helper imported as ``conftest`` could be another package's)."""

from __future__ import annotations

import torch

from alicemind.veco.config import VecoConfig


def tiny_config(**overrides) -> VecoConfig:
    return VecoConfig.from_preset("veco.tiny", **{"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                                                  **overrides})  # fmt: skip


def random_batch(vocab: int, batch: int = 3, length: int = 11, *, pad: int = 1, seed: int = 0):
    """Right-padded ids ``<s> ... </s>`` with rows of different lengths, and their mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(batch):
        real = length - 2 * row
        ids[row, 0], ids[row, real - 1] = 0, 2
        ids[row, real:], mask[row, real:] = pad, 0
    return ids, mask
