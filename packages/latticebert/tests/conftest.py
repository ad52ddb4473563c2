"""Shared tiny fixtures: a character vocabulary, a lexicon and the tokenizer over them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from labert_testing import write_lexicon, write_vocab  # noqa: E402


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
