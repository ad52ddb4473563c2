"""StructVBERT's tokenizer: BERT-base uncased WordPiece (the ``vocab.txt`` of the release), ``[CLS] q [SEP]``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alicemind.core.tokenization import WordPieceTokenizer

if TYPE_CHECKING:
    from typing import Self


class StructVBertTokenizer(WordPieceTokenizer):
    """WordPiece with lower-casing and accent stripping (the original builds it with ``do_lower_case=True``)."""

    @classmethod
    def english_uncased(cls, vocab_file: str | Path, **kwargs: Any) -> Self:
        """The released model's tokenizer from its ``vocab.txt``."""
        return cls.from_vocab_file(vocab_file, lowercase=True, tokenize_chinese_chars=True, **kwargs)

    @classmethod
    def from_folder(cls, folder: str | Path) -> Self:
        """Ours (``tokenizer_config.json``) or a release folder with a bare ``vocab.txt``."""
        folder = Path(folder)
        if (folder / "tokenizer_config.json").is_file():
            return cls.from_pretrained(folder)
        if (folder / "vocab.txt").is_file():
            return cls.english_uncased(folder / "vocab.txt")
        raise FileNotFoundError(f"{folder}: no tokenizer_config.json or vocab.txt")
