"""Shared tiny fixtures: a character vocabulary, a lexicon and the tokenizer over them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from labert_testing import write_lexicon, write_vocab  # noqa: E402


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
    write_vocab(tmp_path)
    return tmp_path / "vocab.txt"


@pytest.fixture
def lexicon_file(tmp_path):
    write_lexicon(tmp_path)
    return tmp_path / "lexicon.txt"


@pytest.fixture
def tokenizer(vocab_file, lexicon_file):
    from alicemind.latticebert import LatticeBertTokenizer

    return LatticeBertTokenizer.from_files(vocab_file, lexicon_file)
