"""Bad input: empty text, no lexicon match, lattices longer than the position tables, non-Chinese text."""

from __future__ import annotations

import pytest
import torch
from labert_testing import tiny_config

from alicemind.core.layers import SequenceTooLongError
from alicemind.latticebert import LatticeBertModel


def test_empty_inputs_are_refused(tokenizer):
    with pytest.raises(ValueError, match="empty text"):
        tokenizer(["研究", ""])
    with pytest.raises(ValueError, match="empty sentence"):
        tokenizer.encode_tagged([])


def test_text_without_lexicon_match_still_encodes(tokenizer):
    model = LatticeBertModel(tiny_config(tokenizer.vocab_size)).eval()
    batch = tokenizer("天气很好")
    assert batch["input_ids"].shape == (1, 6)
    assert batch["lattice_starts"].tolist() == batch["lattice_ends"].tolist() == [[0, 1, 2, 3, 4, 5]]
    assert model(**batch).last_hidden_state.shape == (1, 6, 32)


def test_longer_than_position_tables(tokenizer):
    model = LatticeBertModel(tiny_config(tokenizer.vocab_size, max_position_embeddings=16)).eval()
    batch = tokenizer("研究生命起源" * 3)  # 18 characters: positions up to 19
    with pytest.raises(SequenceTooLongError, match="lattice position 19 is beyond the model's 16 position rows"):
        model(**batch)
    cut = tokenizer("研究生命起源" * 3, max_length=16, truncation=True)
    assert cut["input_ids"].shape[1] == 16 and int(cut["lattice_ends"].max()) < 16
    assert model(**cut).last_hidden_state.shape == (1, 16, 32)
    with pytest.raises(ValueError, match="pass truncation=True"):
        tokenizer("研究生命起源" * 3, max_length=16)


def test_non_chinese_text(tokenizer):
    enc = tokenizer.encode("hello BERT!")
    # Unknown Latin words become [UNK], known ones WordPiece pieces, punctuation its own (unknown) token.
    assert enc.tokens == ["[CLS]", "[UNK]", "be", "##rt", "[UNK]", "[SEP]"]
    assert enc.starts == [0, 1, 2, 3, 4, 5]
    model = LatticeBertModel(tiny_config(tokenizer.vocab_size)).eval()
    assert torch.isfinite(model(**tokenizer("hello BERT!")).last_hidden_state).all()


def test_missing_or_inconsistent_positions(tokenizer):
    model = LatticeBertModel(tiny_config(tokenizer.vocab_size)).eval()
    batch = tokenizer("研究")
    with pytest.raises(ValueError, match="needs lattice_starts and lattice_ends"):
        model(batch["input_ids"])
    with pytest.raises(ValueError, match="0 <= start <= end"):
        model(batch["input_ids"], lattice_starts=batch["lattice_ends"] + 1, lattice_ends=batch["lattice_ends"])
