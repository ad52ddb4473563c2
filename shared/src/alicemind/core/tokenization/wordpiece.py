"""`WordPieceTokenizer`: BERT's tokenizer (basic tokenization + WordPiece) on the Rust `tokenizers` engine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import tokenizers
from tokenizers import decoders, normalizers, pre_tokenizers

from alicemind.core.tokenization.backend import Tokenizer

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are strings here
    from typing import Self

VOCAB_FILE = "vocab.txt"


def read_vocab_txt(path: str | Path) -> dict[str, int]:
    """One token per line, id = line number (BERT's format; a later duplicate wins, as in Google's loader)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"WordPiece vocabulary file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        vocab = {line.rstrip("\n"): index for index, line in enumerate(handle)}
    if not vocab:
        raise ValueError(f"WordPiece vocabulary file {path} is empty")
    return vocab


class WordPieceTokenizer(Tokenizer):
    """BERT WordPiece: clean text, optional lower-casing / accent stripping, CJK characters split one per token,
    punctuation split, greedy longest-match WordPiece with `##` continuations; `[CLS] A [SEP] B [SEP]` template."""

    hf_tokenizer_class: ClassVar[str] = "BertTokenizer"
    hf_aliases: ClassVar[tuple[str, ...]] = ("BertTokenizerFast",)
    default_special_tokens: ClassVar[Mapping[str, str]] = {
        "unk": "[UNK]",
        "pad": "[PAD]",
        "cls": "[CLS]",
        "sep": "[SEP]",
        "mask": "[MASK]",
    }

    @classmethod
    def from_vocab_file(
        cls,
        vocab_file: str | Path,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
        **kwargs: Any,
    ) -> Self:
        """Build from a BERT vocab.txt. `strip_accents=None` follows `lowercase` (as BERT does); other keyword
        arguments (special_tokens, additional_special_tokens, model_max_length, ...) go to the constructor."""
        return cls.from_vocab(
            read_vocab_txt(vocab_file),
            lowercase=lowercase,
            strip_accents=strip_accents,
            tokenize_chinese_chars=tokenize_chinese_chars,
            max_input_chars_per_word=max_input_chars_per_word,
            **kwargs,
        )

    @classmethod
    def from_vocab(
        cls,
        vocab: Mapping[str, int],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
        **kwargs: Any,
    ) -> Self:
        """Build from an in-memory token -> id mapping (see `from_vocab_file`)."""
        unk = {**cls.default_special_tokens, **(kwargs.get("special_tokens") or {})}.get("unk")
        if unk is None or unk not in vocab:
            raise ValueError(f"the WordPiece vocabulary must contain the unknown token {unk!r}")
        backend = tokenizers.Tokenizer(
            tokenizers.models.WordPiece(dict(vocab), unk_token=unk, max_input_chars_per_word=max_input_chars_per_word)
        )
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents,
            lowercase=lowercase,
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        return cls(backend, **kwargs)

    # ----- options, read back from the backend so a loaded tokenizer.json reports what it really does -------
    def _normalizer_option(self, name: str, default: Any) -> Any:
        normalizer = self._backend.normalizer
        return getattr(normalizer, name) if isinstance(normalizer, normalizers.BertNormalizer) else default

    @property
    def lowercase(self) -> bool:
        """Whether input is lower-cased before WordPiece."""
        return bool(self._normalizer_option("lowercase", False))

    @property
    def strip_accents(self) -> bool | None:
        """Whether accents are stripped (None: follows `lowercase`)."""
        return self._normalizer_option("strip_accents", None)

    @property
    def tokenize_chinese_chars(self) -> bool:
        """Whether each CJK character becomes its own word before WordPiece."""
        return bool(self._normalizer_option("handle_chinese_chars", False))

    def _extra_config(self) -> dict[str, Any]:
        model = self._backend.model
        return {
            "do_lower_case": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "max_input_chars_per_word": getattr(model, "max_input_chars_per_word", 100),
        }

    # ----- files --------------------------------------------------------------------------------------------
    def _save_native_files(self, directory: Path) -> list[Path]:
        vocab = self._backend.get_vocab(with_added_tokens=False)
        tokens = sorted(vocab, key=vocab.__getitem__)
        if [vocab[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError("the WordPiece vocabulary ids are not 0..N-1, so it cannot be written as vocab.txt")
        path = directory / VOCAB_FILE
        path.write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
        return [path]

    @classmethod
    def _from_native_files(cls, directory: Path, config: dict[str, Any]) -> Self:
        vocab_path = directory / VOCAB_FILE
        if not vocab_path.is_file():
            raise FileNotFoundError(f"{directory} has neither tokenizer.json nor {VOCAB_FILE}")
        return cls.from_vocab_file(
            vocab_path,
            lowercase=config.get("do_lower_case", True),
            strip_accents=config.get("strip_accents"),
            tokenize_chinese_chars=config.get("tokenize_chinese_chars", True),
            max_input_chars_per_word=config.get("max_input_chars_per_word", 100),
            **cls._common_kwargs(config),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, lowercase={self.lowercase})"
