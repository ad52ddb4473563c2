"""PALM's tokenizers: Chinese WordPiece with [CLS]/[SEP] as BOS/EOS, English RoBERTa byte-level BPE.

Both put a text between BOS and EOS (``[CLS] x [SEP]`` / ``<s> x </s>``), which is exactly how PALM frames both
its encoder input and its decoder target.

Unlike core's default, special-token text in the input (``[SEP]``, ``<mask>``) is matched as the special token
(``split_special_tokens=False``): PALM's original tokenizers do so. The English one is transformers 2.1's
``RobertaTokenizer``, whose ``tokenize`` first splits the text around every special token
(PALM/others/transformers/tokenization_utils.py, ``tokenize`` / ``split_on_tokens``); the Chinese one, in
sofa, is a Hugging Face ``BertTokenizer``, which does the same, and sofa's DuReader data writes
``answer[SEP]context`` relying on it. Pass ``split_special_tokens=True`` to keep such text as text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from alicemind.core.tokenization import BaseTokenizer, ByteLevelBPETokenizer, WordPieceTokenizer

#: The English clean-up of the original's decode, in its order: transformers 2.1's
#: ``PreTrainedTokenizer.clean_up_tokenization`` (PALM/others/transformers/tokenization_utils.py), which
#: ``RobertaTokenizer.decode`` applies by default (``clean_up_tokenization_spaces=True``) and PALM's predictor
#: relies on (PALM/models/predictor.py, ``from_batch``: ``self.vocab.decode(...)``). " do not" -> " don't" is
#: that version's own rule and is kept for fidelity.
ORIGINAL_CLEAN_UP: tuple[tuple[str, str], ...] = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" do not", " don't"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces before punctuation and contractions as the original PALM English decode does."""
    for old, new in ORIGINAL_CLEAN_UP:
        text = text.replace(old, new)
    return text


class PalmChineseTokenizer(WordPieceTokenizer):
    """BERT Chinese WordPiece (lower-cased, one token per CJK character); BOS = ``[CLS]``, EOS = ``[SEP]``."""

    default_special_tokens: ClassVar[Mapping[str, str]] = {
        **WordPieceTokenizer.default_special_tokens,
        "bos": "[CLS]",
        "eos": "[SEP]",
    }
    default_split_special_tokens: ClassVar[bool] = False  # sofa's HF BertTokenizer matches them (module doc)


class PalmEnglishTokenizer(ByteLevelBPETokenizer):
    """RoBERTa byte-level BPE: ``<s>`` = 0 (BOS), ``<pad>`` = 1, ``</s>`` = 2 (EOS).

    ``decode`` applies the original's English clean-up (``clean_up_tokenization``) unless
    ``clean_up_tokenization_spaces=False``.
    """

    default_split_special_tokens: ClassVar[bool] = False  # transformers 2.1's RobertaTokenizer matches them

    def decode(
        self, ids: Sequence[int] | Any, skip_special_tokens: bool = True, clean_up_tokenization_spaces: bool = True
    ) -> str:
        """Ids -> text, then (by default) the original's clean-up of spaces before punctuation."""
        text = super().decode(ids, skip_special_tokens=skip_special_tokens)
        return clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def batch_decode(
        self,
        sequences: Sequence[Sequence[int]] | Any,
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool = True,
    ) -> list[str]:
        """``decode`` over a batch."""
        texts = super().batch_decode(sequences, skip_special_tokens=skip_special_tokens)
        return [clean_up_tokenization(t) for t in texts] if clean_up_tokenization_spaces else texts


def load_tokenizer(path: str | Path) -> BaseTokenizer:
    """The tokenizer in a PALM folder: saved by us (``tokenizer_config.json``), RoBERTa's ``vocab.json`` +
    ``merges.txt`` (also inside a ``roberta-base/`` sub-folder, as the English release ships it), or a BERT
    ``vocab.txt`` (the Chinese release)."""
    path = Path(path)
    for folder in (path, path / "roberta-base"):
        if (folder / "tokenizer_config.json").is_file():
            loaded = BaseTokenizer.from_pretrained(folder)
            # A Hugging Face folder names RobertaTokenizer / BertTokenizer: load it as PALM's own class, so PALM's
            # decode clean-up and special-token matching apply.
            for palm_class, generic in (
                (PalmEnglishTokenizer, ByteLevelBPETokenizer),
                (PalmChineseTokenizer, WordPieceTokenizer),
            ):
                if type(loaded) is generic:
                    return palm_class.from_pretrained(folder)
            return loaded
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return PalmEnglishTokenizer.from_files(folder / "vocab.json", folder / "merges.txt")
        if (folder / "vocab.txt").is_file():
            return PalmChineseTokenizer.from_vocab_file(folder / "vocab.txt", lowercase=True)
    raise FileNotFoundError(
        f"no tokenizer files in {path}: expected tokenizer_config.json, vocab.json + merges.txt (English) "
        "or vocab.txt (Chinese)"
    )


_CJK_GAP = re.compile(r"(?<=[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef])\s+(?=[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef])")


def detokenize(text: str) -> str:
    """Remove the spaces WordPiece decoding leaves between Chinese characters (``"你 好"`` -> ``"你好"``)."""
    return _CJK_GAP.sub("", text).strip()


class PalmTokenizer:
    """Entry point for either language: ``PalmTokenizer.from_pretrained(folder)`` is :func:`load_tokenizer`."""

    @staticmethod
    def from_pretrained(path: str | Path) -> BaseTokenizer:
        return load_tokenizer(path)
