"""`ByteLevelBPETokenizer`: GPT-2/RoBERTa byte-level BPE (PALM EN uses RoBERTa's) on the Rust `tokenizers` engine."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import tokenizers
from tokenizers import AddedToken, decoders, pre_tokenizers, processors

from alicemind.core.tokenization.backend import Tokenizer

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are strings here
    from typing import Self

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"


def read_merges(path: str | Path) -> list[tuple[str, str]]:
    """BPE merges, one "left right" pair per line; the "#version" header and blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BPE merges file not found: {path}")
    merges = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: a merge must be two tokens separated by one space, got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def read_vocab_json(path: str | Path) -> dict[str, int]:
    """A {token: id} JSON vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BPE vocabulary file not found: {path}")
    vocab = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(vocab, dict):
        raise ValueError(f"{path} must hold a JSON object mapping tokens to ids")
    return {str(token): int(index) for token, index in vocab.items()}


class ByteLevelBPETokenizer(Tokenizer):
    """RoBERTa-style byte-level BPE: `<s> A </s>` / `<s> A </s></s> B </s>`, one token type, `<mask>` swallowing
    the space before it, offsets trimmed of the spaces byte-level BPE folds into tokens."""

    hf_tokenizer_class: ClassVar[str] = "RobertaTokenizer"
    hf_aliases: ClassVar[tuple[str, ...]] = ("RobertaTokenizerFast",)
    model_input_names: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")
    pair_separator_count: ClassVar[int] = 2
    pair_type_id: ClassVar[int] = 0
    default_special_tokens: ClassVar[Mapping[str, str]] = {
        "bos": "<s>",
        "cls": "<s>",
        "eos": "</s>",
        "sep": "</s>",
        "pad": "<pad>",
        "unk": "<unk>",
        "mask": "<mask>",
    }

    def __init__(self, backend: tokenizers.Tokenizer, *, trim_offsets: bool = True, **kwargs: Any) -> None:
        self._trim_offsets = trim_offsets
        super().__init__(backend, **kwargs)

    @classmethod
    def from_files(
        cls,
        vocab_file: str | Path,
        merges_file: str | Path,
        *,
        add_prefix_space: bool = False,
        trim_offsets: bool = True,
        **kwargs: Any,
    ) -> Self:
        """Build from RoBERTa's vocab.json + merges.txt; other keyword arguments go to the constructor."""
        return cls.from_vocab_and_merges(
            read_vocab_json(vocab_file),
            read_merges(merges_file),
            add_prefix_space=add_prefix_space,
            trim_offsets=trim_offsets,
            **kwargs,
        )

    @classmethod
    def from_vocab_and_merges(
        cls,
        vocab: Mapping[str, int],
        merges: Sequence[tuple[str, str]],
        *,
        add_prefix_space: bool = False,
        trim_offsets: bool = True,
        **kwargs: Any,
    ) -> Self:
        """Build from an in-memory vocabulary and merge list (see `from_files`)."""
        model = tokenizers.models.BPE(
            dict(vocab), list(merges), dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False
        )
        backend = tokenizers.Tokenizer(model)
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        backend.decoder = decoders.ByteLevel()
        return cls(backend, trim_offsets=trim_offsets, **kwargs)

    def _added_token(self, token: str, role: str | None) -> AddedToken:
        # RoBERTa's <mask> absorbs the space before it, so "a <mask>" predicts the token " word" in one slot.
        return AddedToken(token, special=True, normalized=False, lstrip=role == "mask")

    def _configure_post_processor(self) -> None:
        # RobertaProcessing trims the offsets even when no special tokens are added, which `_encode_raw` relies on.
        self._backend.post_processor = processors.RobertaProcessing(
            (self.sep_token, self.sep_token_id),
            (self.cls_token, self.cls_token_id),
            trim_offsets=self._trim_offsets,
            add_prefix_space=self.add_prefix_space,
        )

    @property
    def add_prefix_space(self) -> bool:
        """Whether a space is prepended so the first word is encoded like any other."""
        return bool(getattr(self._backend.pre_tokenizer, "add_prefix_space", False))

    @property
    def trim_offsets(self) -> bool:
        """Whether offsets exclude the leading space folded into a token."""
        return self._trim_offsets

    def _extra_config(self) -> dict[str, Any]:
        return {"add_prefix_space": self.add_prefix_space, "trim_offsets": self.trim_offsets}

    @classmethod
    def _backend_kwargs(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {**cls._common_kwargs(config), "trim_offsets": config.get("trim_offsets", True)}

    @classmethod
    def _from_native_files(cls, directory: Path, config: dict[str, Any]) -> Self:
        vocab, merges = directory / VOCAB_FILE, directory / MERGES_FILE
        if not (vocab.is_file() and merges.is_file()):
            raise FileNotFoundError(f"{directory} has neither tokenizer.json nor {VOCAB_FILE} + {MERGES_FILE}")
        return cls.from_files(
            vocab,
            merges,
            add_prefix_space=config.get("add_prefix_space", False),
            trim_offsets=config.get("trim_offsets", True),
            **cls._common_kwargs(config),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, add_prefix_space={self.add_prefix_space})"
