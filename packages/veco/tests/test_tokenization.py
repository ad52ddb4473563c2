"""VecoTokenizer: XLM-R ids from the .model file, fairseq ids from dict.txt, language tags, dict.txt round trip."""

from __future__ import annotations

import pytest
import transformers
from veco_spm import SCRIPTS, corpus, train_spm

from alicemind.core.checkpoint import CorruptCheckpointError
from alicemind.veco import VecoTokenizer

TEXTS = [*SCRIPTS.values(), *corpus(seed=1, n=20), "mixed Über 狐狸 лиса ZZZ unknown ☃", "  spaces  around "]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return train_spm(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="module")
def hf(model_file):
    # transformers 5 names the fast (tokenizers-backed) class XLMRobertaTokenizer; XLMRobertaTokenizerFast is an alias.
    tok = transformers.XLMRobertaTokenizerFast.from_pretrained(str(model_file.parent))
    assert tok.is_fast
    return tok


def test_ids_equal_transformers_fast_tokenizer_over_many_scripts(model_file, hf):
    ours = VecoTokenizer(model_file)
    assert len(ours) == len(hf)
    for text in TEXTS:
        assert ours(text)["input_ids"] == hf(text)["input_ids"], text
    pair = ours(TEXTS[0], TEXTS[3])["input_ids"]
    assert pair == hf(TEXTS[0], TEXTS[3])["input_ids"]
    assert ours.decode(hf(TEXTS[2])["input_ids"]) == hf.decode(hf(TEXTS[2])["input_ids"], skip_special_tokens=True)


def test_xlmr_dict_txt_gives_the_same_ids(model_file, hf, tmp_path):
    plain = VecoTokenizer(model_file)
    dict_path = plain.save_dictionary(tmp_path / "dict.txt")
    fairseq = VecoTokenizer(model_file, dictionary=dict_path)
    assert fairseq.has_dictionary
    for text in TEXTS:
        assert fairseq(text)["input_ids"] == hf(text)["input_ids"], text
        assert fairseq.decode(fairseq(text)["input_ids"]) == plain.decode(plain(text)["input_ids"])


def test_language_tags_and_a_resized_dictionary(model_file, tmp_path):
    plain = VecoTokenizer(model_file)
    lines = plain.dictionary_text().splitlines()
    # A language-pair dictionary: keep every other piece, then the tags (as the NLG dict.txt holds them).
    kept = lines[::2] + ["[de] 1", "[en] 1"]
    (tmp_path / "dict.txt").write_text("\n".join(kept) + "\n", encoding="utf-8")
    tok = VecoTokenizer(model_file, dictionary=tmp_path / "dict.txt")
    assert len(tok) == 4 + len(kept)
    assert tok.lang_tags == ["[de]", "[en]"]
    assert (tok.lang_id("de"), tok.lang_id("[en]")) == (4 + len(kept) - 2, 4 + len(kept) - 1)
    with pytest.raises(KeyError, match=r"no language tag '\[fr\]'"):
        tok.lang_id("fr")
    # A piece's id is its dict.txt line + 4; pieces missing from the dictionary are <unk> (3).
    symbols = [line.rsplit(" ", 1)[0] for line in kept]
    for text in TEXTS[:6]:
        pieces = plain.tokenize(text)
        expected = [0] + [4 + symbols.index(p) if p in symbols else 3 for p in pieces] + [2]
        assert tok(text)["input_ids"] == expected
    ids = tok("the quick", add_special_tokens=False)["input_ids"] + [2, tok.lang_id("de")]
    assert tok.decode(ids, skip_special_tokens=False).endswith("</s>[de]")
    assert "[de]" not in tok.decode(ids)


def test_dict_txt_round_trips_byte_for_byte(model_file, tmp_path):
    text = "▁the 120\n, 99\n▁fox 7\n▁fox 3 #fairseq:overwrite\n[en] 1\n[de] 1\n"
    (tmp_path / "dict.txt").write_text(text, encoding="utf-8")
    tok = VecoTokenizer(model_file, dictionary=tmp_path / "dict.txt")
    saved = tmp_path / "saved"
    tok.save_pretrained(saved)
    assert (saved / "dict.txt").read_text(encoding="utf-8") == text
    again = VecoTokenizer.from_pretrained(saved)
    assert again.has_dictionary and again.get_vocab() == tok.get_vocab()
    assert again("▁the fox")["input_ids"] == tok("▁the fox")["input_ids"]


def test_bad_dictionary_is_one_clear_error(model_file, tmp_path):
    (tmp_path / "dict.txt").write_text("▁the 1\n▁the 2\n", encoding="utf-8")
    with pytest.raises(CorruptCheckpointError, match="duplicate symbol"):
        VecoTokenizer(model_file, dictionary=tmp_path / "dict.txt")
