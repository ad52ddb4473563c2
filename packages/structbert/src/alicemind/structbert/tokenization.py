"""StructBERT's tokenizer: BERT WordPiece, with the Chinese vocabulary's dialog tokens kept whole."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tokenizers

from alicemind.core.tokenization import WordPieceTokenizer

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are strings here
    from typing import Self

# The released Chinese vocab (Google bert-base-chinese) replaces [unused98]/[unused99] with seller/buyer markers
# used by `--add_dialog_token`. They are registered as special tokens (ids, skipped when decoding); like "[SEP]",
# their text in the input is matched only with `split_special_tokens=False`: the original FullTokenizer
# (StructBERT/tokenization.py) matches no special token in text, so by default "[SLR]" is "[", "slr", "]".
DIALOG_TOKENS = ("[SLR]", "[BYR]")


class StructBertTokenizer(WordPieceTokenizer):
    """WordPiece tokenizer for StructBERT (English uncased 30522, Chinese 21128): `[CLS] A [SEP] B [SEP]`,
    Chinese characters one per token, `[SLR]`/`[BYR]` registered as special tokens when the vocab has them.

    Special-token text in the input ("[SEP]", "[MASK]", "[SLR]", ...) is ordinary text by default, as in the
    original; `split_special_tokens=False` makes it the special token (transformers' default behaviour)."""

    def __init__(
        self, backend: tokenizers.Tokenizer, *, additional_special_tokens: Sequence[str] = (), **kwargs: Any
    ) -> None:
        dialog = [token for token in DIALOG_TOKENS if backend.token_to_id(token) is not None]
        super().__init__(backend, additional_special_tokens=[*additional_special_tokens, *dialog], **kwargs)

    @classmethod
    def english_uncased(cls, vocab_file: str | Path, **kwargs: Any) -> Self:
        """The English model's tokenizer: Google's uncased BERT vocab, lower-cased with accents stripped."""
        return cls.from_vocab_file(vocab_file, lowercase=True, tokenize_chinese_chars=True, **kwargs)

    @classmethod
    def chinese(cls, vocab_file: str | Path, **kwargs: Any) -> Self:
        """The Chinese model's tokenizer (ch_vocab.txt): lower-cased like bert-base-chinese, CJK split per char."""
        return cls.from_vocab_file(vocab_file, lowercase=True, tokenize_chinese_chars=True, **kwargs)
