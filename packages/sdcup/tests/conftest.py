"""Shared fixtures: one torch thread per test, a tiny vocabulary and the tokenizer over it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sdcup_testing import write_vocab  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny shapes run fastest on one thread; more only add contention on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def vocab_file(tmp_path):
    return write_vocab(tmp_path)


@pytest.fixture
def tokenizer(vocab_file):
    from alicemind.sdcup import SdcupTokenizer

    return SdcupTokenizer.from_vocab_file(vocab_file, model_max_length=128)
