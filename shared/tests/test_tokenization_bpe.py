"""ByteLevelBPETokenizer against transformers' RobertaTokenizerFast on a tiny vocab/merges trained in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import AddedToken
from tokenizers import ByteLevelBPETokenizer as BpeTrainer

from alicemind.core.tokenization import BaseTokenizer, ByteLevelBPETokenizer, WordPieceTokenizer

transformers = pytest.importorskip("transformers")

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
CORPUS = [
    f"The quick brown fox number {i} jumps over the lazy dog; héllo wörld, naïve café! Summaries: CNN / Daily Mail."
    for i in range(200)
]
TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space and  double  spaces ",
    "The quick <mask> fox!",
    "a <mask>b and <mask> again",
    "naïve café, héllo wörld — 你好 😀",
    "numbers 12345 and 3.14",
    "",
]
PAIRS = [("Who jumps?", "The quick brown fox jumps over the lazy dog, again and again."), ("Daily Mail", "CNN")]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("bpe")
    trainer = BpeTrainer()
    trainer.train_from_iterator(CORPUS, vocab_size=400, min_frequency=2, special_tokens=SPECIALS, show_progress=False)
    trainer.save_model(str(directory))
    return directory


@pytest.fixture(scope="module")
def ours(files) -> ByteLevelBPETokenizer:
    return ByteLevelBPETokenizer.from_files(files / "vocab.json", files / "merges.txt")


@pytest.fixture(scope="module")
def hf(files):
    # roberta-base's own tokenizer.json gives <mask> lstrip=True; built from raw files HF needs telling.
    mask = AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)
    # split_special_tokens=True: our default keeps "<mask>" etc. in the text as text; transformers' default
    # matches them (compared in test_split_special_tokens_false_matches_hf_default).
    return transformers.RobertaTokenizerFast.from_pretrained(str(files), mask_token=mask, split_special_tokens=True)


@pytest.fixture(scope="module")
def parsing(files) -> ByteLevelBPETokenizer:
    return ByteLevelBPETokenizer.from_files(files / "vocab.json", files / "merges.txt", split_special_tokens=False)


def _hf(hf, *args, **kwargs) -> dict:
    return dict(hf(*args, **kwargs).items())


def test_files_are_real_bpe(files, ours):
    merges = (files / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) > 50
    assert len(ours) == ours.vocab_size == len(json.loads((files / "vocab.json").read_text())) > 300


def test_single_texts_match_hf(ours, hf):
    for text in TEXTS:
        assert dict(ours(text, return_offsets_mapping=True)) == _hf(hf, text, return_offsets_mapping=True), text
        assert ours.tokenize(text) == hf.tokenize(text)
        ids = hf.encode(text)
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=True)
        assert ours.decode(ids, skip_special_tokens=False) == hf.decode(ids, skip_special_tokens=False)


def test_mask_swallows_the_space_before_it(parsing):
    ids = parsing.encode("The quick <mask> fox", add_special_tokens=False)
    assert ids[ids.index(parsing.mask_token_id) - 1] != parsing.convert_tokens_to_ids("Ġ")


def test_special_token_text_stays_text_by_default(ours, parsing):
    text = "a <mask> b </s><s> c <pad><unk>"
    assert ours.split_special_tokens and not parsing.split_special_tokens
    ids = ours.encode(text, add_special_tokens=False)
    assert not set(ids) & set(ours.all_special_ids)
    assert ours.decode(ids) == text  # byte-level BPE round-trips the literal text
    assert ours.tokenize("<mask>") == ["<", "m", "a", "s", "k", ">"]  # the tiny vocab has no "mask" merge
    assert parsing.encode(text, add_special_tokens=False).count(parsing.mask_token_id) == 1


def test_split_special_tokens_false_matches_hf_default(files, parsing):
    mask = AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)
    hf_default = transformers.RobertaTokenizerFast.from_pretrained(str(files), mask_token=mask)
    for text in TEXTS:
        assert dict(parsing(text, return_offsets_mapping=True)) == _hf(hf_default, text, return_offsets_mapping=True)
        assert parsing.tokenize(text) == hf_default.tokenize(text)


def test_pairs_batches_padding_and_truncation_match_hf(ours, hf):
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    got = ours(firsts, seconds, padding=True, return_offsets_mapping=True, return_token_type_ids=True)
    want = _hf(hf, firsts, seconds, padding=True, return_offsets_mapping=True, return_token_type_ids=True)
    assert got["input_ids"] == want["input_ids"] and got["attention_mask"] == want["attention_mask"]
    assert got["offset_mapping"] == want["offset_mapping"]
    assert set(got["token_type_ids"][0]) == {0}  # RoBERTa has one token type; PALM EN embeds type 0 only
    assert "token_type_ids" not in ours("x")  # like HF: not a RoBERTa model input
    for strategy in ("longest_first", "only_first", "only_second"):
        for max_length in (9, 14, 20):
            for a, b in PAIRS:
                try:
                    want = _hf(hf, a, b, truncation=strategy, max_length=max_length, return_offsets_mapping=True)
                except Exception:  # HF refuses this truncation (its error type varies by version); we must refuse too
                    with pytest.raises(ValueError, match="must remove"):
                        ours(a, b, truncation=strategy, max_length=max_length)
                    continue
                got = ours(a, b, truncation=strategy, max_length=max_length, return_offsets_mapping=True)
                assert dict(got) == want, (strategy, max_length, a)
    assert dict(ours(TEXTS, padding=True, truncation=True, max_length=12)) == _hf(
        hf, TEXTS, padding=True, truncation=True, max_length=12
    )


def test_special_token_ids_and_template(ours):
    assert (ours.bos_token_id, ours.pad_token_id, ours.eos_token_id, ours.unk_token_id, ours.mask_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert ours.cls_token_id == ours.bos_token_id and ours.sep_token_id == ours.eos_token_id
    a, b = ours.encode("Hello", add_special_tokens=False), ours.encode("world", add_special_tokens=False)
    assert ours.build_inputs_with_special_tokens(a, b) == [0, *a, 2, 2, *b, 2]
    assert ours("Hello", "world")["input_ids"] == [0, *a, 2, 2, *b, 2]
    with pytest.raises(ValueError, match="truncation=True"):
        ours("Hello world " * 10, max_length=8)


def test_save_load_round_trip(ours, files, tmp_path):
    names = {p.name for p in ours.save_pretrained(tmp_path)}
    assert names == {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"}
    assert json.loads((tmp_path / "vocab.json").read_text()) == json.loads((files / "vocab.json").read_text())
    from_json = BaseTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    from_files = ByteLevelBPETokenizer.from_pretrained(tmp_path)
    want = ours(TEXTS, return_offsets_mapping=True)
    for loaded in (from_json, from_files):
        assert type(loaded) is ByteLevelBPETokenizer and loaded.trim_offsets and not loaded.add_prefix_space
        assert dict(loaded(TEXTS, return_offsets_mapping=True)) == dict(want)
    with pytest.raises(ValueError, match="cannot be loaded as WordPieceTokenizer"):
        WordPieceTokenizer.from_pretrained(tmp_path)


def test_add_prefix_space_changes_first_word(files):
    spaced = ByteLevelBPETokenizer.from_files(files / "vocab.json", files / "merges.txt", add_prefix_space=True)
    plain = ByteLevelBPETokenizer.from_files(files / "vocab.json", files / "merges.txt")
    assert spaced.encode("quick", add_special_tokens=False) == plain.encode(" quick", add_special_tokens=False)
    assert spaced.encode("quick", add_special_tokens=False) != plain.encode("quick", add_special_tokens=False)


def test_bad_merges_file_is_reported(tmp_path, files):
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nthree parts here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges.txt:3"):
        ByteLevelBPETokenizer.from_files(files / "vocab.json", tmp_path / "merges.txt")
