"""`BaseTokenizer`: the Hugging Face-style call pipeline (special tokens, truncation, padding, tensors), shared by
every tokenizer; subclasses supply raw token ids and offsets for plain text, vocabulary look-ups and file IO."""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from alicemind.core.tokenization.encoding import (
    BatchEncoding,
    PaddingArg,
    RawEncoding,
    TruncationArg,
    assemble_row,
    pad_rows,
    padded_length,
    resolve_padding,
    resolve_truncation,
    to_tensors,
)

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are strings here
    from typing import Self

SPECIAL_ROLES = ("unk", "pad", "cls", "sep", "mask", "bos", "eos")
CONFIG_FILE = "tokenizer_config.json"


class _SpecialToken:
    """Descriptor for `<role>_token` (the string) and `<role>_token_id` (its id); None when the role is unset."""

    def __init__(self, role: str, as_id: bool = False) -> None:
        self.role, self.as_id = role, as_id

    def __get__(self, obj: BaseTokenizer | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        token = obj.special_tokens.get(self.role)
        return obj._token_to_id(token) if token is not None and self.as_id else token


def _token_content(value: Any) -> str | None:
    """Special tokens in HF configs are strings or serialised AddedToken dicts ({"content": ...})."""
    if isinstance(value, dict):
        return value.get("content")
    return value


class BaseTokenizer(abc.ABC):
    """Common interface of alicemind tokenizers (see `Tokenizer` for the `tokenizers`-backed ones)."""

    model_input_names: ClassVar[tuple[str, ...]] = ("input_ids", "token_type_ids", "attention_mask")
    default_special_tokens: ClassVar[Mapping[str, str]] = {}
    hf_tokenizer_class: ClassVar[str | None] = None  # the Hugging Face class name written to tokenizer_config.json
    hf_aliases: ClassVar[tuple[str, ...]] = ()  # further HF class names this class loads
    pair_separator_count: ClassVar[int] = 1  # BERT: "[SEP]" between the texts; RoBERTa/XLM-R: "</s></s>"
    pair_type_id: ClassVar[int] = 1  # token type of the second text (RoBERTa-style models have one type only)
    pad_token_type_id: ClassVar[int] = 0
    # Whether special-token text in the input ("[SEP]", "<mask>") stays text by default. True: the original
    # Google BERT tokenizer (e.g. StructBERT/tokenization.py, BasicTokenizer + WordpieceTokenizer) never matches it,
    # so user text cannot inject structure. A family whose original does match it sets False.
    default_split_special_tokens: ClassVar[bool] = True
    _registry: ClassVar[dict[str, type[BaseTokenizer]]] = {}

    unk_token = _SpecialToken("unk")
    unk_token_id = _SpecialToken("unk", as_id=True)
    pad_token = _SpecialToken("pad")
    pad_token_id = _SpecialToken("pad", as_id=True)
    cls_token = _SpecialToken("cls")
    cls_token_id = _SpecialToken("cls", as_id=True)
    sep_token = _SpecialToken("sep")
    sep_token_id = _SpecialToken("sep", as_id=True)
    mask_token = _SpecialToken("mask")
    mask_token_id = _SpecialToken("mask", as_id=True)
    bos_token = _SpecialToken("bos")
    bos_token_id = _SpecialToken("bos", as_id=True)
    eos_token = _SpecialToken("eos")
    eos_token_id = _SpecialToken("eos", as_id=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        BaseTokenizer._registry[cls.__name__] = cls

    def __init__(
        self,
        *,
        special_tokens: Mapping[str, str | None] | None = None,
        additional_special_tokens: Sequence[str] = (),
        model_max_length: int | None = 512,
        padding_side: str = "right",
        truncation_side: str = "right",
        split_special_tokens: bool | None = None,
    ) -> None:
        merged = {**self.default_special_tokens, **(special_tokens or {})}
        unknown = set(merged) - set(SPECIAL_ROLES)
        if unknown:
            raise ValueError(f"unknown special-token roles {sorted(unknown)}; known roles are {SPECIAL_ROLES}")
        for side_name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in ("left", "right"):
                raise ValueError(f"{side_name} must be 'left' or 'right', got {side!r}")
        self.special_tokens: dict[str, str] = {role: tok for role, tok in merged.items() if tok is not None}
        self.additional_special_tokens: list[str] = list(dict.fromkeys(additional_special_tokens))
        self.model_max_length = model_max_length
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        # Hugging Face's name and meaning: True = special-token strings in text are tokenised as ordinary text;
        # False = they become the special token. Templates (`add_special_tokens`) are unaffected.
        self.split_special_tokens = (
            self.default_split_special_tokens if split_special_tokens is None else bool(split_special_tokens)
        )

    # ----- what a subclass provides -------------------------------------------------------------------------
    @abc.abstractmethod
    def _encode_raw(self, texts: list[str], with_offsets: bool) -> list[RawEncoding]:
        """Token ids (and offsets) of each text, without special tokens, truncation or padding."""

    @abc.abstractmethod
    def _token_to_id(self, token: str) -> int | None:
        """The id of `token`, or None when it is not in the vocabulary."""

    @abc.abstractmethod
    def _id_to_token(self, index: int) -> str | None:
        """The token of `index`, or None when the id is out of range."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int] | Any, skip_special_tokens: bool = True) -> str:
        """Turn ids (a list, or a 1-D tensor/array) back into text."""

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[str]:
        """The tokens of `text` without special tokens."""

    @abc.abstractmethod
    def get_vocab(self) -> dict[str, int]:
        """Token -> id for the whole vocabulary, added tokens included."""

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Size of the base vocabulary (Hugging Face meaning: added tokens beyond it are not counted)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Size of the full vocabulary including added tokens: the embedding matrix needs this many rows."""

    @abc.abstractmethod
    def _save_files(self, directory: Path) -> list[Path]:
        """Write the vocabulary files (native and/or tokenizer.json) into `directory`."""

    @classmethod
    @abc.abstractmethod
    def _from_directory(cls, directory: Path, config: dict[str, Any]) -> Self:
        """Build an instance from the files in `directory` and its parsed tokenizer_config.json."""

    def _extra_config(self) -> dict[str, Any]:
        """Subclass options written to tokenizer_config.json (HF key names)."""
        return {}

    # ----- vocabulary helpers -------------------------------------------------------------------------------
    @property
    def all_special_tokens(self) -> list[str]:
        """Every special token string (roles first, then additional ones), without duplicates."""
        return list(dict.fromkeys([*self.special_tokens.values(), *self.additional_special_tokens]))

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of `all_special_tokens`."""
        return [self._token_to_id(tok) for tok in self.all_special_tokens]  # type: ignore[misc]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Token(s) -> id(s); tokens outside the vocabulary map to the unknown token's id."""
        if isinstance(tokens, str):
            return self._lookup(tokens)
        return [self._lookup(tok) for tok in tokens]

    def _lookup(self, token: str) -> int:
        index = self._token_to_id(token)
        if index is not None:
            return index
        if self.unk_token_id is None:
            raise KeyError(f"token {token!r} is not in the vocabulary and this tokenizer has no unknown token")
        return self.unk_token_id

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        """Id(s) -> token(s); an id outside the vocabulary raises ValueError."""
        if isinstance(ids, int):
            return self._checked_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._checked_token(int(i)) for i in ids if int(i) not in skip]

    def _checked_token(self, index: int) -> str:
        token = self._id_to_token(index)
        if token is None:
            raise ValueError(f"id {index} is outside the vocabulary (size {len(self)})")
        return token

    def encode(self, text: str, text_pair: str | None = None, **kwargs: Any) -> list[int]:
        """Ids of one text (or pair) with special tokens; keyword arguments as for `__call__`."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes one str; got {type(text).__name__} (call the tokenizer for a batch)")
        return self(text, text_pair, **kwargs)["input_ids"]

    def batch_decode(self, sequences: Sequence[Sequence[int]] | Any, skip_special_tokens: bool = True) -> list[str]:
        """`decode` over a batch (a list of id lists, or a 2-D tensor/array)."""
        return [self.decode(seq, skip_special_tokens=skip_special_tokens) for seq in sequences]

    # ----- special-token template -----------------------------------------------------------------------------
    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many special tokens `build_inputs_with_special_tokens` adds to one text (or a pair)."""
        return 2 + self.pair_separator_count if pair else 2

    def _template(self) -> tuple[list[int], list[int], list[int]]:
        cls_id, sep_id = self.cls_token_id, self.sep_token_id
        if cls_id is None or sep_id is None:
            raise ValueError(f"{type(self).__name__} needs cls and sep tokens to add special tokens")
        return [cls_id], [sep_id] * self.pair_separator_count, [sep_id]

    def build_inputs_with_special_tokens(self, ids_a: list[int], ids_b: list[int] | None = None) -> list[int]:
        """`[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` (or the `<s> A </s></s> B </s>` form for RoBERTa-style models)."""
        prefix, middle, suffix = self._template()
        return prefix + ids_a + suffix if ids_b is None else prefix + ids_a + middle + ids_b + suffix

    def create_token_type_ids_from_sequences(self, ids_a: list[int], ids_b: list[int] | None = None) -> list[int]:
        """Token types matching `build_inputs_with_special_tokens`."""
        if ids_b is None:
            return [0] * (len(ids_a) + self.num_special_tokens_to_add())
        prefix, middle, suffix = self._template()
        first = len(prefix) + len(ids_a) + len(middle)
        return [0] * first + [self.pair_type_id] * (len(ids_b) + len(suffix))

    # ----- the call pipeline --------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: PaddingArg = False,
        truncation: TruncationArg = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool = True,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
    ) -> BatchEncoding:
        """Tokenize one text (or pair) or a batch, Hugging Face style.

        A str gives flat lists (tensors of batch size 1 with return_tensors="pt"); a list of str gives one row per
        text. A sequence longer than `max_length` raises ValueError unless `truncation` is set (HF would only warn).
        """
        batched = not isinstance(text, str)
        texts = _text_list(text, "text")
        pairs: list[str] | None = None
        if text_pair is not None:
            if batched == isinstance(text_pair, str):
                raise TypeError("text and text_pair must both be a str or both be a list of str")
            pairs = _text_list(text_pair, "text_pair")
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(pairs)} text_pairs; they must pair up one to one")
        strategy, pad_mode = resolve_truncation(truncation), resolve_padding(padding)
        if max_length is None and (strategy is not None or pad_mode == "max_length"):
            if self.model_max_length is None:
                raise ValueError("truncation or padding='max_length' needs max_length (no model_max_length is set)")
            max_length = self.model_max_length

        raw_a = self._encode_raw(texts, return_offsets_mapping)
        raw_b: list[RawEncoding | None] = (
            list(self._encode_raw(pairs, return_offsets_mapping)) if pairs is not None else [None] * len(texts)
        )
        template = self._template() if add_special_tokens else ([], [], [])
        rows = [
            assemble_row(
                a,
                b,
                template=template,
                pair_type_id=self.pair_type_id,
                strategy=strategy,
                max_length=max_length,
                truncation_side=self.truncation_side,
                index=i if batched else None,
            )
            for i, (a, b) in enumerate(zip(raw_a, raw_b))
        ]

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        wanted = {
            "input_ids": True,
            "token_type_ids": return_token_type_ids,
            "attention_mask": return_attention_mask,
            "special_tokens_mask": return_special_tokens_mask,
            "offset_mapping": return_offsets_mapping,
        }
        fields = {key: [row[key] for row in rows] for key, keep in wanted.items() if keep}
        target = padded_length([len(r["input_ids"]) for r in rows], pad_mode, max_length, pad_to_multiple_of)
        if target:
            if self.pad_token_id is None:
                raise ValueError(f"{type(self).__name__} has no pad token, so it cannot pad; set special_tokens['pad']")
            pad_values = {
                "input_ids": self.pad_token_id,
                "token_type_ids": self.pad_token_type_id,
                "attention_mask": 0,
                "special_tokens_mask": 1,
                "offset_mapping": (0, 0),
            }
            fields = {k: pad_rows(v, target, pad_values[k], self.padding_side) for k, v in fields.items()}
        fields = to_tensors(fields, return_tensors)
        if not batched and return_tensors is None:
            fields = {key: value[0] for key, value in fields.items()}
        return BatchEncoding(fields)

    # ----- files --------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False) -> list[Path]:
        """Write the vocabulary files and tokenizer_config.json into `directory`; returns the paths written.

        Atomic (see `alicemind.core.io.atomic_folder`): an old folder's tokenizer files are all replaced, its model
        files kept; a folder holding files no save writes is refused unless `overwrite=True`.
        """
        from alicemind.core.io import MODEL_FILES, atomic_folder

        directory = Path(directory)
        with atomic_folder(directory, keep=MODEL_FILES, overwrite=overwrite) as staging:
            written = self._save_pretrained_files(staging)
        return [directory / p.name for p in written]

    def _save_pretrained_files(self, directory: Path) -> list[Path]:
        written = self._save_files(directory)
        config = {
            "tokenizer_class": self.hf_tokenizer_class,
            "alicemind_tokenizer_class": type(self).__name__,
            **{f"{role}_token": token for role, token in self.special_tokens.items()},
            "additional_special_tokens": self.additional_special_tokens,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "split_special_tokens": self.split_special_tokens,
            **self._extra_config(),
        }
        path = directory / CONFIG_FILE
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return [*written, path]

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Self:
        """Load a tokenizer saved by `save_pretrained` or a Hugging Face tokenizer directory.

        Called on a base class, the concrete class is picked from tokenizer_config.json.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise NotADirectoryError(f"from_pretrained expects a directory of tokenizer files, got {directory}")
        config = read_config(directory)
        target = cls._resolve_class(config, directory)
        return target._from_directory(directory, config)

    @classmethod
    def _resolve_class(cls, config: dict[str, Any], directory: Path) -> type[Self]:
        named = BaseTokenizer._registry.get(config.get("alicemind_tokenizer_class") or "")
        hf_name = config.get("tokenizer_class")
        if named is None and hf_name:
            named = next(
                (
                    k
                    for k in BaseTokenizer._registry.values()
                    if hf_name in (k.__dict__.get("hf_tokenizer_class"), *k.__dict__.get("hf_aliases", ()))
                ),
                None,
            )
        if named is None or issubclass(cls, named):
            target = cls
        elif issubclass(named, cls):
            target = named
        else:
            raise ValueError(f"{directory} holds a {named.__name__} tokenizer; it cannot be loaded as {cls.__name__}")
        if getattr(target, "__abstractmethods__", None):
            raise ValueError(f"cannot tell which tokenizer {directory} holds: its {CONFIG_FILE} names no known class")
        return target  # type: ignore[return-value]

    @staticmethod
    def _common_kwargs(config: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments every tokenizer reads from a (possibly Hugging Face) tokenizer_config.json."""
        specials = {
            role: _token_content(config[f"{role}_token"]) for role in SPECIAL_ROLES if f"{role}_token" in config
        }
        max_len = config.get("model_max_length", 512)
        ours = "alicemind_tokenizer_class" in config
        return {
            "special_tokens": specials,
            "additional_special_tokens": [_token_content(t) for t in config.get("additional_special_tokens") or ()],
            # HF writes int(1e30) for "no limit".
            "model_max_length": None if max_len is None or max_len >= 10**12 else int(max_len),
            "padding_side": config.get("padding_side", "right"),
            "truncation_side": config.get("truncation_side", "right"),
            # Only a folder we wrote states our choice; transformers writes its own default (False) into every
            # tokenizer_config.json, which would silently undo the class default.
            "split_special_tokens": config.get("split_special_tokens") if ours else None,
        }


def read_config(directory: Path) -> dict[str, Any]:
    """tokenizer_config.json over special_tokens_map.json (older HF directories keep special tokens there)."""
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", CONFIG_FILE):
        path = directory / name
        if path.is_file():
            try:
                config.update(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not valid JSON: {err}") from err
    return config


def _text_list(value: str | Sequence[str], name: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    bad = next((i for i, item in enumerate(items) if not isinstance(item, str)), None)
    if bad is not None:
        raise TypeError(f"{name} must be a str or a list of str; item {bad} is {type(items[bad]).__name__}")
    return items
