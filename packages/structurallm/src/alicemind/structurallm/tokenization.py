"""``StructuralLMTokenizer``: RoBERTa's cased byte-level BPE (``vocab.json`` + ``merges.txt``), word by word."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from alicemind.core.tokenization import ByteLevelBPETokenizer


class StructuralLMTokenizer(ByteLevelBPETokenizer):
    """``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2. Documents arrive as words: :meth:`word_pieces` encodes each with
    a leading space, the same pieces as the original's ``tokenize("pad " + word)[1:]`` (the ``Ġ`` variant)."""

    default_split_special_tokens: ClassVar[bool] = False  # transformers 2.1's RobertaTokenizer matched them

    def word_pieces(self, words: Sequence[str]) -> list[list[int]]:
        """Token ids of every word, as it reads inside a line (leading space); never empty for non-blank words."""
        encodings = self.backend.encode_batch([" " + w for w in words], add_special_tokens=False)
        pieces = [list(e.ids) for e in encodings]
        for word, ids in zip(words, pieces):
            if not ids:
                raise ValueError(f"word {word!r} encodes to no tokens")
        return pieces
