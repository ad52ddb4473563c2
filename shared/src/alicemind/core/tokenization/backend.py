"""`Tokenizer`: a `BaseTokenizer` over a Rust `tokenizers.Tokenizer` (the engine of Hugging Face fast tokenizers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tokenizers
from tokenizers import AddedToken

from alicemind.core.tokenization.base import BaseTokenizer
from alicemind.core.tokenization.encoding import RawEncoding

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are strings here
    from typing import Self

TOKENIZER_FILE = "tokenizer.json"


def _id_list(ids: Sequence[int] | Any) -> list[int]:
    """Accept a list, a 1-D tensor or a numpy array of ids."""
    return ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]


class Tokenizer(BaseTokenizer):
    """Wraps a `tokenizers.Tokenizer`; subclasses build the backend from native vocabulary files.

    The backend is configured in place: its own truncation/padding are switched off (this class applies them
    per call) and the special tokens are registered as special. They must already be in its vocabulary; a missing
    one raises instead of silently growing the vocabulary past the embeddings. Whether their text in the input
    becomes the special token is `split_special_tokens` (the backend's `encode_special_tokens`): by default it
    stays text, as the original BERT tokenizer does; this also covers tokens added with
    `add_tokens(..., special_tokens=True)`, while ordinary added tokens are always matched.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        special_tokens: Mapping[str, str | None] | None = None,
        additional_special_tokens: Sequence[str] = (),
        model_max_length: int | None = 512,
        padding_side: str = "right",
        truncation_side: str = "right",
        split_special_tokens: bool | None = None,
    ) -> None:
        super().__init__(
            special_tokens=special_tokens,
            additional_special_tokens=additional_special_tokens,
            model_max_length=model_max_length,
            padding_side=padding_side,
            truncation_side=truncation_side,
            split_special_tokens=split_special_tokens,
        )
        self._backend = backend
        self.split_special_tokens = self._split_special_tokens  # now that there is a backend to configure
        # A tokenizer.json may carry truncation/padding settings; this class applies its own per call.
        backend.no_truncation()
        backend.no_padding()
        roles = {token: role for role, token in self.special_tokens.items()}
        added = []
        for token in self.all_special_tokens:
            if backend.token_to_id(token) is None:
                what = f"special token {token!r}" + (f" ({roles[token]})" if token in roles else "")
                raise ValueError(f"{what} is not in the vocabulary of {type(self).__name__}")
            added.append(self._added_token(token, roles.get(token)))
        backend.add_special_tokens(added)
        self._configure_post_processor()

    def _added_token(self, token: str, role: str | None) -> AddedToken:
        """How a special token is matched in raw text (subclasses may strip neighbouring spaces)."""
        return AddedToken(token, special=True, normalized=False)

    def _configure_post_processor(self) -> None:
        """Give the backend the matching template so a saved tokenizer.json works on its own (e.g. in HF)."""
        if self.cls_token is None or self.sep_token is None:
            return
        cls, sep = (self.cls_token, self.cls_token_id), (self.sep_token, self.sep_token_id)
        middle = " ".join([f"{sep[0]}:0"] * self.pair_separator_count)
        type_b = self.pair_type_id
        self._backend.post_processor = tokenizers.processors.TemplateProcessing(
            single=f"{cls[0]}:0 $A:0 {sep[0]}:0",
            pair=f"{cls[0]}:0 $A:0 {middle} $B:{type_b} {sep[0]}:{type_b}",
            special_tokens=[cls, sep],
        )

    @property
    def split_special_tokens(self) -> bool:
        """True: special-token strings in the text are tokenised as ordinary text; False: they are matched."""
        return self._split_special_tokens

    @split_special_tokens.setter
    def split_special_tokens(self, value: bool) -> None:
        self._split_special_tokens = bool(value)
        backend = getattr(self, "_backend", None)
        if backend is not None:
            # tokenizer.json does not store this flag; tokenizer_config.json does (Hugging Face reads it too).
            backend.encode_special_tokens = self._split_special_tokens

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The underlying Rust tokenizer."""
        return self._backend

    # ----- BaseTokenizer hooks ------------------------------------------------------------------------------
    def _encode_raw(self, texts: list[str], with_offsets: bool) -> list[RawEncoding]:
        if not texts:
            return []
        if with_offsets:
            encodings = self._backend.encode_batch(texts, add_special_tokens=False)
            return [(enc.ids, enc.offsets) for enc in encodings]
        # encode_batch_fast (tokenizers >= 0.21) skips offset tracking, which is faster on large batches.
        encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
        return [(enc.ids, None) for enc in encode(texts, add_special_tokens=False)]

    def _token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def _id_to_token(self, index: int) -> str | None:
        return self._backend.id_to_token(index) if index >= 0 else None

    def tokenize(self, text: str) -> list[str]:
        """The tokens of `text` without added special tokens (special-token text: see `split_special_tokens`)."""
        return self._backend.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Sequence[int] | Any, skip_special_tokens: bool = True) -> str:
        """Turn ids (a list, or a 1-D tensor/array) back into text."""
        return self._backend.decode(_id_list(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences: Sequence[Sequence[int]] | Any, skip_special_tokens: bool = True) -> list[str]:
        """`decode` over a batch, run in parallel by the Rust backend."""
        return self._backend.decode_batch([_id_list(s) for s in sequences], skip_special_tokens=skip_special_tokens)

    def get_vocab(self) -> dict[str, int]:
        """Token -> id for the whole vocabulary, added tokens included."""
        return self._backend.get_vocab(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        """Size of the model vocabulary, not counting tokens added beyond it."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def add_tokens(self, tokens: Sequence[str], *, special_tokens: bool = False) -> int:
        """Add tokens that text never splits; returns how many were new to the vocabulary (resize embeddings!)."""
        before = len(self)
        if special_tokens:
            self._backend.add_special_tokens([self._added_token(t, None) for t in tokens])
            self.additional_special_tokens = list(dict.fromkeys([*self.additional_special_tokens, *tokens]))
        else:
            self._backend.add_tokens([AddedToken(t, special=False) for t in tokens])
        return len(self) - before

    # ----- files --------------------------------------------------------------------------------------------
    def _save_files(self, directory: Path) -> list[Path]:
        path = directory / TOKENIZER_FILE
        self._backend.save(str(path))
        return [path, *self._save_native_files(directory)]

    def _save_native_files(self, directory: Path) -> list[Path]:
        """Subclasses write their model's own vocabulary files (vocab.txt, vocab.json + merges.txt)."""
        return [Path(p) for p in self._backend.model.save(str(directory))]

    @classmethod
    def _from_directory(cls, directory: Path, config: dict[str, Any]) -> Self:
        path = directory / TOKENIZER_FILE
        if path.is_file():
            return cls(tokenizers.Tokenizer.from_file(str(path)), **cls._backend_kwargs(config))
        return cls._from_native_files(directory, config)

    @classmethod
    def _backend_kwargs(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Constructor keyword arguments read from tokenizer_config.json when loading a tokenizer.json."""
        return cls._common_kwargs(config)

    @classmethod
    def _from_native_files(cls, directory: Path, config: dict[str, Any]) -> Self:
        raise FileNotFoundError(f"{directory} has no {TOKENIZER_FILE}, which {cls.__name__} needs")
