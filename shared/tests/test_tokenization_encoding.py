"""The shared call pipeline (truncation arithmetic, padding, masks, tensors, errors) on a tiny WordPiece vocab."""

from __future__ import annotations

import pickle

import pytest
import torch

from alicemind.core.tokenization import BatchEncoding, Tokenizer, WordPieceTokenizer
from alicemind.core.tokenization.encoding import truncation_lengths

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "##s", "."]


@pytest.fixture(scope="module")
def tok() -> WordPieceTokenizer:
    return WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(VOCAB)})


def test_truncation_arithmetic():
    assert truncation_lengths(10, None, 6, "longest_first") == (6, None)
    assert truncation_lengths(3, 10, 8, "longest_first") == (3, 5)  # only the longer side is cut
    assert truncation_lengths(10, 3, 8, "longest_first") == (5, 3)
    assert truncation_lengths(9, 7, 9, "longest_first") == (5, 4)  # both cut; the longer keeps the odd token
    assert truncation_lengths(7, 9, 9, "longest_first") == (4, 5)
    assert truncation_lengths(6, 6, 7, "longest_first") == (3, 4)
    assert truncation_lengths(6, 4, 7, "only_first") == (3, 4)
    assert truncation_lengths(6, 4, 7, "only_second") == (6, 1)
    assert truncation_lengths(2, 3, 10, "only_second") == (2, 3)
    with pytest.raises(ValueError, match="only 4"):
        truncation_lengths(6, 4, 5, "only_second")
    with pytest.raises(ValueError, match="needs a text_pair"):
        truncation_lengths(6, None, 5, "only_second")


def test_masks_types_and_special_tokens(tok):
    out = tok("the cat", "a dog", return_special_tokens_mask=True, return_offsets_mapping=True)
    assert out["input_ids"] == [2, 5, 6, 3, 10, 11, 3]
    assert out.token_type_ids == [0, 0, 0, 0, 1, 1, 1]
    assert out["attention_mask"] == [1] * 7
    assert out["special_tokens_mask"] == [1, 0, 0, 1, 0, 0, 1]
    assert out["offset_mapping"] == [(0, 0), (0, 3), (4, 7), (0, 0), (0, 1), (2, 5), (0, 0)]
    assert tok.build_inputs_with_special_tokens([5], [6]) == [2, 5, 3, 6, 3]
    assert tok.create_token_type_ids_from_sequences([5], [6]) == [0, 0, 0, 1, 1]
    assert tok.num_special_tokens_to_add() == 2 and tok.num_special_tokens_to_add(pair=True) == 3
    assert tok.tokenize("dogs.") == ["dog", "##s", "."]
    assert tok.all_special_ids == [1, 0, 2, 3, 4]


def test_padding_modes(tok):
    texts = ["the cat sat", "a dog"]
    longest = tok(texts, padding=True, return_special_tokens_mask=True)
    assert longest["input_ids"] == [[2, 5, 6, 7, 3], [2, 10, 11, 3, 0]]
    assert longest["attention_mask"][1] == [1, 1, 1, 1, 0] and longest["special_tokens_mask"][1][-1] == 1
    assert tok(texts, padding="max_length", max_length=7)["input_ids"][1] == [2, 10, 11, 3, 0, 0, 0]
    assert len(tok(texts, padding=True, pad_to_multiple_of=4)["input_ids"][0]) == 8
    assert tok("a dog", padding="longest")["input_ids"] == [2, 10, 11, 3]  # one text: nothing to pad to
    left = WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(VOCAB)}, padding_side="left")
    assert left(texts, padding=True)["input_ids"][1] == [0, 2, 10, 11, 3]
    assert left(texts, padding=True)["attention_mask"][1] == [0, 1, 1, 1, 1]


def test_left_truncation(tok):
    left = WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(VOCAB)}, truncation_side="left")
    assert left("the cat sat on the mat", truncation=True, max_length=4)["input_ids"] == [2, 5, 9, 3]
    assert tok("the cat sat on the mat", truncation=True, max_length=4)["input_ids"] == [2, 5, 6, 3]


def test_tensors_and_batch_encoding(tok):
    out = tok(["the cat", "a dog sat on the mat"], padding=True, return_tensors="pt", return_offsets_mapping=True)
    assert isinstance(out, BatchEncoding) and out["input_ids"].shape == (2, 8)
    assert out["offset_mapping"].shape == (2, 8, 2) and out["attention_mask"].sum().item() == 4 + 8
    assert out.to(torch.device("cpu")) is out and out.input_ids.device.type == "cpu"
    with pytest.raises(AttributeError, match="no field 'labels'"):
        _ = out.labels
    # DataLoader workers pickle batches: the round trip must keep the type and every tensor.
    back = pickle.loads(pickle.dumps(out))
    assert isinstance(back, BatchEncoding) and back.keys() == out.keys()
    assert all(torch.equal(back[k], out[k]) for k in out)
    with pytest.raises(ValueError, match="return_tensors"):
        tok("the", return_tensors="np")


def test_errors_are_explicit(tok):
    with pytest.raises(ValueError, match=r"has 8 tokens, more than max_length=5; pass truncation=True"):
        tok("the cat sat on the mat", max_length=5)
    with pytest.raises(ValueError, match="cannot even hold"):
        tok("the cat", "a dog", truncation=True, max_length=2)
    with pytest.raises(ValueError, match="padding must be"):
        tok("the", padding="sideways")
    with pytest.raises(TypeError, match="both be a str or both be a list"):
        tok(["the"], "cat")
    with pytest.raises(TypeError, match="encode takes one str"):
        tok.encode(["the"])
    no_limit = WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(VOCAB)}, model_max_length=None)
    with pytest.raises(ValueError, match="needs max_length"):
        no_limit("the", truncation=True)
    no_pad = WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(VOCAB)}, special_tokens={"pad": None})
    with pytest.raises(ValueError, match="no pad token"):
        no_pad(["the", "the cat"], padding=True)
    with pytest.raises(ValueError, match="unknown special-token roles"):
        WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(VOCAB)}, special_tokens={"foo": "[PAD]"})
    with pytest.raises(ValueError, match="unknown token"):
        WordPieceTokenizer.from_vocab({"a": 0})


def test_add_tokens(tok):
    fresh = WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(VOCAB)})
    assert fresh.add_tokens(["<e1>"], special_tokens=True) == 1 and len(fresh) == len(VOCAB) + 1
    assert fresh.vocab_size == len(VOCAB) and "<e1>" in fresh.additional_special_tokens
    # Special tokens, added ones included, are matched in text only with split_special_tokens=False.
    assert fresh.tokenize("the <e1> cat") == ["the", "[UNK]", "[UNK]", "[UNK]", "cat"]
    fresh.split_special_tokens = False
    assert fresh.tokenize("the <e1> cat") == ["the", "<e1>", "cat"]
    # Ordinary added tokens are always matched.
    plain = WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(VOCAB)})
    assert plain.add_tokens(["<e2>"]) == 1 and plain.tokenize("the <e2> cat") == ["the", "<e2>", "cat"]
    assert fresh.add_tokens(["cat"]) == 0


def test_generic_tokenizer_json(tok, tmp_path):
    tok.backend.save(str(tmp_path / "tokenizer.json"))
    generic = Tokenizer.from_pretrained(tmp_path)  # no config: a plain Tokenizer with no special roles
    assert type(generic) is Tokenizer and generic("the cat", add_special_tokens=False)["input_ids"] == [5, 6]
    with pytest.raises(ValueError, match="needs cls and sep"):
        generic("the cat")
