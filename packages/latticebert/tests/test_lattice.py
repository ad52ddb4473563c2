"""Lattice construction on hand-checked sentences: units, order, positions, segments, concatenation, truncation."""

from __future__ import annotations

import pytest

from alicemind.latticebert.lattice import TokenTrie, cut_points
from alicemind.latticebert.tokenization import LatticeBertTokenizer, LexiconError


def test_units_order_positions_and_segments(tokenizer):
    lat = tokenizer.lattice("研究生命起源")
    # Sorted by (exclusive end, length): characters before the words that end with them.
    assert lat.tokens == ["研", "究", "研究", "生", "研究生", "命", "生命", "起", "源", "起源"]
    assert lat.starts == [0, 1, 0, 2, 0, 3, 2, 4, 5, 4]
    assert lat.lengths == [1, 1, 2, 1, 3, 1, 2, 1, 1, 2]
    assert lat.ends == [0, 1, 1, 2, 2, 3, 3, 4, 5, 5]
    # The only inner position no word crosses is 4 (between 命 and 起): two segments.
    assert cut_points(lat.starts, lat.lengths, 6) == [4]
    assert lat.segments == [[0, 1, 2, 3, 4, 5, 6], [7, 8, 9]]
    vocab = tokenizer.get_vocab()
    assert lat.ids[2] == vocab["研究"] and lat.ids[2] >= tokenizer.char_vocab_size


def test_nested_and_overlapping_words(tokenizer):
    lat = tokenizer.lattice("中国人民大学")
    spans = sorted((s, n) for s, n in zip(lat.starts, lat.lengths) if n > 1)
    assert spans == [(0, 2), (0, 6), (2, 2), (4, 2)]
    # The six-character word spans everything: one segment holding all ten units.
    assert lat.segments == [list(range(10))]


def test_pair_offsets_as_the_original(tokenizer):
    enc = tokenizer.encode("研究生命起源", "起源")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[11] == "[SEP]" and enc.tokens[-1] == "[SEP]"
    # [CLS] at 0, text from 1; [SEP] at max end + 1 = 7; B from 8; its [SEP] at 10.
    assert enc.starts == [0, 1, 2, 1, 3, 1, 4, 3, 5, 6, 5, 7, 8, 9, 8, 10]
    assert enc.ends == [0, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 7, 8, 9, 9, 10]
    assert enc.token_type_ids == [0] * 12 + [1] * 4
    # Segments offset by units (ours) ...
    assert enc.segments == [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10], [12, 13, 14]]
    # ... or by positions, as the original code does (errata 10: B's segment then points into A and its [SEP]).
    first, second = tokenizer.lattice("研究生命起源"), tokenizer.lattice("起源")
    original = tokenizer.join(first, second, original_segment_offsets=True)
    assert original.segments[-1] == [8, 9, 10]


def test_latin_pieces_count_as_positions(tokenizer):
    lat = tokenizer.lattice("BERT模型")
    assert lat.tokens == ["be", "##rt", "模", "型", "模型"]
    assert lat.starts == [0, 1, 2, 3, 2]


def test_no_lexicon_match_gives_characters_only(tokenizer):
    lat = tokenizer.lattice("天气很好")
    assert lat.tokens == list("天气很好") and lat.lengths == [1, 1, 1, 1]
    assert lat.segments == [[0], [1], [2], [3]]


def test_empty_text_is_refused(tokenizer):
    with pytest.raises(ValueError, match="empty text"):
        tokenizer.encode("   ")


def test_truncation_in_lattice_units(tokenizer):
    with pytest.raises(ValueError, match="more than max_length 8"):
        tokenizer.encode("研究生命起源", max_length=8)
    enc = tokenizer.encode("研究生命起源", "起源", max_length=10, truncation=True)
    assert len(enc) == 10
    # Longest first: A (10 units) loses its last six units; B (3 units) is kept whole.
    assert enc.tokens == ["[CLS]", "研", "究", "研究", "生", "[SEP]", "起", "源", "起源", "[SEP]"]
    assert enc.starts == [0, 1, 2, 1, 3, 4, 5, 6, 5, 7]
    assert enc.segments == [[1, 2, 3, 4], [6, 7, 8]]


def test_named_lexicon_clusters_and_collisions(tmp_path, vocab_file):
    named = tmp_path / "named.txt"
    named.write_text("研究\tC_study\n生命\tC_life\n起源\tC_study\n", encoding="utf-8")
    tok = LatticeBertTokenizer.from_files(vocab_file, named)
    assert tok.vocab_size == tok.char_vocab_size + 2
    lat = tok.lattice("研究起源")
    words = [i for i, n in zip(lat.ids, lat.lengths) if n > 1]
    assert words == [tok.char_vocab_size, tok.char_vocab_size]  # both surfaces -> one cluster id
    bad = tmp_path / "bad.txt"
    bad.write_text("研究\t研\n", encoding="utf-8")  # a cluster named like a character token
    with pytest.raises(LexiconError, match="also character tokens"):
        LatticeBertTokenizer.from_files(vocab_file, bad)


def test_trie_matches_every_prefix():
    trie = TokenTrie()
    for word_id, ids in enumerate([(1, 2), (1, 2, 3), (2, 3), (3,)]):
        trie.add(ids, 100 + word_id)
    assert trie.matches([1, 2, 3, 4]) == [(0, 2, 100), (0, 3, 101), (1, 2, 102), (2, 1, 103)]
    assert trie.matches([4, 4]) == []


def test_batch_tensors_and_save_roundtrip(tokenizer, tmp_path):
    batch = tokenizer(["研究生命", "天气"], ["起源", "很好"])
    assert batch["input_ids"].shape == batch["lattice_starts"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][1].tolist() == [1] * 7 + [0] * (batch["input_ids"].shape[1] - 7)
    tokenizer.save_pretrained(tmp_path / "tok")
    again = LatticeBertTokenizer.from_pretrained(tmp_path / "tok")
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again.encode("研究生命起源").input_ids == tokenizer.encode("研究生命起源").input_ids


def test_the_original_test_sentence(tmp_path):
    # The vocabulary and lexicon of the original's tokenization_labert_test.py (it printed, asserting nothing).
    chars = "州 市 是 中 华 人 民 共 和 国 安 徽 省 下 辖 的 地 级 。".split()
    (tmp_path / "vocab.txt").write_text(
        "".join(f"{t}\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars])
    )
    words = "州市 中华 人民 华人 共和 共和国 中华人民共和国 国安 安徽 安徽省 下辖 地级市".split()
    (tmp_path / "lexicon.txt").write_text("".join(f"{w}\n" for w in words))
    tok = LatticeBertTokenizer.from_files(tmp_path / "vocab.txt", tmp_path / "lexicon.txt")
    lat = tok.lattice("州市是中华人民共和国安徽省下辖的地级市。")
    assert (
        lat.tokens
        == (
            "州 市 州市 是 中 华 中华 人 华人 民 人民 共 和 共和 国 共和国 中华人民共和国 安 国安 徽 安徽 省 安徽省 "
            "下 辖 下辖 的 地 级 市 地级市 。"
        ).split()
    )
    # Cut points 2, 3, 13, 15, 16, 19: seven segments, the long one holding 10 characters and 9 words.
    assert cut_points(lat.starts, lat.lengths, 20) == [2, 3, 13, 15, 16, 19]
    assert [len(s) for s in lat.segments] == [3, 1, 19, 3, 1, 4, 1]
    assert [lat.tokens[i] for i in lat.segments[5]] == ["地", "级", "市", "地级市"]
