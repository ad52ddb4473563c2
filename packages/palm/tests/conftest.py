"""Tiny PALM models of both architectures for fast CPU tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from alicemind.palm.config import PalmConfig
from alicemind.palm.model import PalmForConditionalGeneration

# Test helper modules (palm_releases) import by name; no __init__.py, so test modules of different packages
# with the same file name (test_cli.py) never collide.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than two on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ARCHS = {
    "sofa-zh": dict(preset="palm.ch.tiny"),
    "presumm-en": dict(preset="palm.en.tiny"),
    "presumm-en-pgen": dict(preset="palm.en.tiny", use_pointer_generator=True),
}


def tiny_config(arch: str, **overrides) -> PalmConfig:
    spec = dict(ARCHS[arch])
    preset = spec.pop("preset")
    return PalmConfig.from_preset(preset, **{**spec, **overrides})


def tiny_model(arch: str, seed: int = 0, **overrides) -> PalmForConditionalGeneration:
    torch.manual_seed(seed)
    model = PalmForConditionalGeneration(tiny_config(arch, **overrides)).eval()
    # initializer_range 0.00707 gives near-uniform logits; widen so argmax and beams are decisive.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model


def source_batch(model, batch: int = 3, length: int = 9, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random source ids avoiding special tokens, right-padded to different lengths."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    ids = torch.randint(5, c.vocab_size, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for row in range(1, batch):
        cut = length - 2 * row
        ids[row, cut:] = c.pad_token_id
        mask[row, cut:] = 0
    return ids, mask


@pytest.fixture(params=list(ARCHS))
def arch(request) -> str:
    return request.param


@pytest.fixture
def make_model():
    return tiny_model


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture
def make_source():
    return source_batch
