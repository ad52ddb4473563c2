"""Chinese helpers: CJK tests and splitting, jieba segmentation, whole-word groups, lexicon matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from alicemind.core.tokenization import (
    JiebaSegmenter,
    LexiconMatcher,
    WordPieceTokenizer,
    is_cjk_char,
    split_chinese_chars,
    whole_word_groups,
)

SENTENCE = "我喜欢北京天安门，iPhone手机很好用。"
CHARS = "我喜欢北京天安门手机很好用南市长江大桥，。"


def _chinese_tokenizer(tmp_path: Path, chars: str = CHARS) -> WordPieceTokenizer:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, "i", "##ph", "##one"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return WordPieceTokenizer.from_vocab_file(path)


@pytest.fixture(scope="module")
def segmenter() -> JiebaSegmenter:
    return JiebaSegmenter()


def test_is_cjk_char():
    assert all(is_cjk_char(ch) for ch in "中文字㐀豈𠀀")
    assert not any(is_cjk_char(ch) for ch in "aZ9，。한ひカ ")
    with pytest.raises(ValueError, match="one character"):
        is_cjk_char("中文")


def test_split_chinese_chars():
    assert split_chinese_chars("我爱NLP模型") == " 我  爱 NLP 模  型 "
    assert split_chinese_chars("我爱NLP模型").split() == ["我", "爱", "NLP", "模", "型"]
    assert split_chinese_chars("no cjk here, 한국어") == "no cjk here, 한국어"


def test_jieba_segmentation_is_quiet_and_complete(segmenter, capfd):
    words = segmenter.segment(SENTENCE)
    assert "".join(words) == SENTENCE
    assert {"喜欢", "北京", "天安门", "iPhone", "手机"} <= set(words)
    spans = segmenter.segment_with_spans(SENTENCE)
    assert [w for w, _, _ in spans] == words and all(SENTENCE[s:e] == w for w, s, e in spans)
    assert "prefix dict" not in capfd.readouterr().err


def test_jieba_user_dictionary(tmp_path):
    path = tmp_path / "user.dict"
    path.write_text("阿里巴巴达摩院 100000 nt\n", encoding="utf-8")
    text = "阿里巴巴达摩院发布模型"
    assert "阿里巴巴达摩院" in JiebaSegmenter(path).segment(text)
    assert "阿里巴巴达摩院" in JiebaSegmenter(["阿里巴巴达摩院"]).segment(text)
    assert "阿里巴巴达摩院" not in JiebaSegmenter().segment(text)  # user words stay in their own segmenter
    with pytest.raises(FileNotFoundError, match="user dictionary"):
        JiebaSegmenter(tmp_path / "missing.dict")


def test_whole_word_groups_on_a_chinese_sentence(segmenter, tmp_path):
    tokenizer = _chinese_tokenizer(tmp_path)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode(SENTENCE))
    assert tokens[:9] == ["[CLS]", "我", "喜", "欢", "北", "京", "天", "安", "门"]
    assert tokens[10:13] == ["i", "##ph", "##one"]
    groups = whole_word_groups(tokens, segmenter.segment(SENTENCE))
    assert [[tokens[i] for i in g] for g in groups] == [
        ["我"],
        ["喜", "欢"],
        ["北", "京"],
        ["天", "安", "门"],
        ["，"],
        ["i", "##ph", "##one"],
        ["手", "机"],
        ["很"],
        ["好"],
        ["用"],
        ["。"],
    ]
    assert groups[3] == [6, 7, 8]
    # Truncated token sequences still align (the words run on past the last token).
    assert whole_word_groups(tokens[:6], segmenter.segment(SENTENCE)) == [[1], [2, 3], [4, 5]]


def test_whole_word_groups_survive_unknown_tokens(tmp_path):
    tokenizer = _chinese_tokenizer(tmp_path, chars=CHARS.replace("安", ""))
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode("北京天安门很好"))
    assert tokens == ["[CLS]", "北", "京", "天", "[UNK]", "门", "很", "好", "[SEP]"]
    groups = whole_word_groups(tokens, ["北京", "天安门", "很", "好"])
    assert groups == [[1, 2], [3], [4], [5], [6], [7]]  # [UNK] stands alone; alignment resumes at 门
    assert whole_word_groups(["[CLS]", "[SEP]"], ["x"]) == []


def test_whole_word_groups_for_english_word_pieces():
    tokens = ["[CLS]", "un", "##believ", "##able", "café", "[SEP]", "naive", "[SEP]"]
    assert whole_word_groups(tokens, ["Unbelievable", " ", "Café", "naïve"]) == [[1, 2, 3], [4], [6]]


def test_lexicon_matcher_finds_overlapping_words(tmp_path):
    matcher = LexiconMatcher(["南京", "南京市", "市长", "长江", "长江大桥", "大桥", "江大", "北京"])
    assert matcher.find("南京市长江大桥") == [
        (0, 2, "南京"),
        (0, 3, "南京市"),
        (2, 4, "市长"),
        (3, 5, "长江"),
        (3, 7, "长江大桥"),
        (4, 6, "江大"),
        (5, 7, "大桥"),
    ]
    assert matcher.find(list("南京市长")) == [(0, 2, "南京"), (0, 3, "南京市"), (2, 4, "市长")]
    assert matcher.find("") == [] and matcher.find("上海") == []
    assert len(matcher) == 8 and matcher.max_length == 4 and "长江大桥" in matcher and "长江大" not in matcher
    long_text = "南京市长江大桥" * 200
    assert matcher.find(long_text)[-7:] == [(s + 7 * 199, e + 7 * 199, w) for s, e, w in matcher.find("南京市长江大桥")]
    assert len(matcher.find(long_text)) == 7 * 200  # no lexicon word spans a "桥南" joint

    path = tmp_path / "lexicon.txt"
    path.write_text("南京 10\n长江大桥 5 ns\n\n长\n", encoding="utf-8")
    from_file = LexiconMatcher.from_file(path, min_length=2)
    assert len(from_file) == 2 and from_file.find("南京长江大桥") == [(0, 2, "南京"), (2, 6, "长江大桥")]
    with pytest.raises(ValueError, match="min_length"):
        LexiconMatcher([], min_length=0)
