"""SentencePieceTokenizer (fairseq / XLM-R id layout) on a tiny SentencePiece model trained in the test."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
import sentencepiece as spm

from alicemind.core.tokenization import BaseTokenizer, SentencePieceTokenizer

SYLLABLES = ["ka", "to", "ri", "mu", "sen", "lo", "ve", "dan", "ü", "ß", "qui", "ck", "bro", "wn", "fox", "the", "zé"]
TEXTS = [
    "the quick brown fox",
    "kato  rimu, senlo!",
    "Über den <mask> fox!",
    "unknown ZZZ 你好 words",
    "  leading and trailing spaces  ",
    "a<mask>b",
    "",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    rng = random.Random(0)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(300)]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + rng.choice(".!?,") for _ in range(500)]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buffer, vocab_size=200, character_coverage=1.0, minloglevel=2
    )
    directory = tmp_path_factory.mktemp("spm")
    (directory / "sentencepiece.bpe.model").write_bytes(buffer.getvalue())
    return directory


@pytest.fixture(scope="module")
def ours(model_dir) -> SentencePieceTokenizer:
    return SentencePieceTokenizer(model_dir / "sentencepiece.bpe.model")


@pytest.fixture(scope="module")
def processor(model_dir) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(model_dir / "sentencepiece.bpe.model"))


def test_fairseq_id_layout(ours, processor):
    n = processor.get_piece_size()
    assert n == 200
    assert (ours.bos_token_id, ours.pad_token_id, ours.eos_token_id, ours.unk_token_id) == (0, 1, 2, 3)
    assert ours.mask_token_id == n + 1 == len(ours) - 1 and ours.vocab_size == n + 2
    text = "the quick brown fox"
    spm_ids = processor.encode(text)
    assert ours(text)["input_ids"] == [0, *[i + 1 for i in spm_ids], 2]
    assert ours.tokenize(text) == processor.encode(text, out_type=str)
    unknown = processor.encode("ZZZ")  # "Z" never occurs in training: spm's unk (0) must become fairseq's 3
    assert 0 in unknown and 3 in ours.encode("ZZZ", add_special_tokens=False)
    assert ours.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>", "<mask>", "▁the"]) == [
        0,
        1,
        2,
        3,
        n + 1,
        processor.piece_to_id("▁the") + 1,
    ]
    assert ours.convert_tokens_to_ids("not-a-piece") == 3
    a, b = ours.encode("fox", add_special_tokens=False), ours.encode("the", add_special_tokens=False)
    assert ours("fox", "the")["input_ids"] == [0, *a, 2, 2, *b, 2]
    assert ours.get_vocab()["<mask>"] == n + 1 and len(ours.get_vocab()) == n + 2


def test_mask_in_text_is_text_by_default_and_one_token_with_the_option(ours, processor, model_dir):
    text = "Über den <mask> fox!</s>"
    ids = ours.encode(text, add_special_tokens=False)
    assert ours.split_special_tokens and not {ours.mask_token_id, ours.eos_token_id} & set(ids)
    # As fairseq's spm pipeline: the whole text goes to SentencePiece (unknown pieces become <unk>).
    assert ids == [3 if i == processor.unk_id() else i + 1 for i in processor.encode(text)]
    parsing = SentencePieceTokenizer(model_dir / "sentencepiece.bpe.model", split_special_tokens=False)
    ids = parsing.encode(text, add_special_tokens=False)
    assert ids.count(parsing.mask_token_id) == 1 and ids[-1] == parsing.eos_token_id


def test_matches_hf_xlm_roberta(ours, model_dir):
    transformers = pytest.importorskip("transformers")
    hf = transformers.XLMRobertaTokenizer.from_pretrained(str(model_dir))
    # transformers matches "<mask>" in the text (its split_special_tokens=True does not change that for this
    # class); our default keeps it as text, so the texts holding it are compared with split_special_tokens=False.
    parsing = SentencePieceTokenizer(model_dir / "sentencepiece.bpe.model", split_special_tokens=False)
    for text in TEXTS:
        assert dict(parsing(text, return_offsets_mapping=True)) == dict(hf(text, return_offsets_mapping=True).items())
    assert len(hf) == len(ours)
    for text in [t for t in TEXTS if "<mask>" not in t]:
        for pair in (None, "the second text"):
            want = dict(hf(text, pair, return_offsets_mapping=True).items())
            assert dict(ours(text, pair, return_offsets_mapping=True)) == want, (text, pair)
        ids = hf.encode(text)
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=True)
        assert ours.decode(ids, skip_special_tokens=False) == hf.decode(ids, skip_special_tokens=False)
    assert dict(parsing(TEXTS, padding=True)) == dict(hf(TEXTS, padding=True).items())
    for strategy in ("longest_first", "only_first", "only_second"):
        for max_length in (10, 16):
            try:
                want = dict(hf(TEXTS[:2], TEXTS[1:3], truncation=strategy, max_length=max_length).items())
            except Exception:  # HF refuses this truncation (its error type varies by version); we must refuse too
                with pytest.raises(ValueError, match="must remove"):
                    parsing(TEXTS[:2], TEXTS[1:3], truncation=strategy, max_length=max_length)
                continue
            assert dict(parsing(TEXTS[:2], TEXTS[1:3], truncation=strategy, max_length=max_length)) == want


def test_decode_round_trip(ours):
    text = "kato rimu, senlo!"
    assert ours.decode(ours.encode(text)) == text
    assert ours.batch_decode([ours.encode(t) for t in TEXTS[:2]]) == ["the quick brown fox", "kato rimu, senlo!"]


def test_save_load_round_trip(ours, model_dir, tmp_path):
    names = {p.name for p in ours.save_pretrained(tmp_path)}
    assert names == {"sentencepiece.bpe.model", "tokenizer_config.json"}
    assert (tmp_path / "sentencepiece.bpe.model").read_bytes() == (model_dir / "sentencepiece.bpe.model").read_bytes()
    loaded = BaseTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is SentencePieceTokenizer
    assert dict(loaded(TEXTS, return_offsets_mapping=True)) == dict(ours(TEXTS, return_offsets_mapping=True))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="SentencePiece model file not found"):
        SentencePieceTokenizer(tmp_path / "missing.model")
    with pytest.raises(ValueError, match="not a valid SentencePiece model"):
        SentencePieceTokenizer(b"definitely not a protobuf")
    with pytest.raises(FileNotFoundError, match="sentencepiece.bpe.model"):
        SentencePieceTokenizer.from_pretrained(tmp_path)
