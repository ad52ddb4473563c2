"""Tiny VECO configs and helpers for fast CPU tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from alicemind.veco.config import VecoConfig

# Test helper modules (veco_releases) import by name; no __init__.py, so test modules of different packages
# with the same file name (test_cli.py) never collide.
sys.path.insert(0, str(Path(__file__).parent))


def tiny_config(**overrides) -> VecoConfig:
    return VecoConfig.from_preset("veco.tiny", **{"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                                                  **overrides})  # fmt: skip


def tiny_nlg_config(**overrides) -> VecoConfig:
    return VecoConfig.from_preset("veco.tiny.nlg", **{"hidden_dropout_prob": 0.0, **overrides})


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from more threads, and on a shared 2-core machine two threads per process
    oversubscribe it badly (a 6x slower training test); restored after each test module of this
    package (module scope, so it also covers the module-scoped fixtures that train)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


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
