"""PALM's tokenizers: Chinese WordPiece with [CLS]/[SEP] as BOS/EOS, English RoBERTa byte-level BPE.

Both put a text between BOS and EOS (``[CLS] x [SEP]`` / ``<s> x </s>``), which is exactly how PALM frames both
its encoder input and its decoder target.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from alicemind.core.tokenization import BaseTokenizer, ByteLevelBPETokenizer, WordPieceTokenizer


class PalmChineseTokenizer(WordPieceTokenizer):
    """BERT Chinese WordPiece (lower-cased, one token per CJK character); BOS = ``[CLS]``, EOS = ``[SEP]``."""

    default_special_tokens: ClassVar[Mapping[str, str]] = {
        **WordPieceTokenizer.default_special_tokens,
        "bos": "[CLS]",
        "eos": "[SEP]",
    }


class PalmEnglishTokenizer(ByteLevelBPETokenizer):
    """RoBERTa byte-level BPE: ``<s>`` = 0 (BOS), ``<pad>`` = 1, ``</s>`` = 2 (EOS)."""


def load_tokenizer(path: str | Path) -> BaseTokenizer:
    """The tokenizer in a PALM folder: saved by us (``tokenizer_config.json``), RoBERTa's ``vocab.json`` +
    ``merges.txt`` (also inside a ``roberta-base/`` sub-folder, as the English release ships it), or a BERT
    ``vocab.txt`` (the Chinese release)."""
    path = Path(path)
    for folder in (path, path / "roberta-base"):
        if (folder / "tokenizer_config.json").is_file():
            return BaseTokenizer.from_pretrained(folder)
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
