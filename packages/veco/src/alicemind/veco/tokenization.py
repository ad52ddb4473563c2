"""``VecoTokenizer``: SentencePiece with the fairseq id layout, optionally over a fairseq ``dict.txt``.

Without a dictionary the ids are XLM-R's (spm piece ``i`` -> ``i + 1``, ``<mask>`` last): the NLU release. With
``dict.txt`` (the NLG release, ``sentencepiece.bpe.model`` + ``dict.txt``) a piece's id is its line in the
dictionary, as fairseq's ``Dictionary.encode_line`` gives it, and the language tags ``[xx]`` in the dictionary are
special tokens (the source ends ``</s> [src]``; the target tag starts and ends the decoder sequence, errata 1.1).
For XLM-R's own ``dict.txt`` (the spm pieces in order) both ways give the same ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alicemind.core.checkpoint import FAIRSEQ_SPECIAL_SYMBOLS, read_fairseq_dictionary
from alicemind.core.io import register_saved_files
from alicemind.core.tokenization import SentencePieceTokenizer

DICT_FILE = "dict.txt"
LANG_TAG = re.compile(r"^\[[A-Za-z][A-Za-z_-]*\]$")  # "[en]", "[de]", "[zh_cn]"
register_saved_files(DICT_FILE)


def lang_tag(lang: str) -> str:
    """The dictionary symbol of a language code: ``"de"`` -> ``"[de]"``."""
    return lang if lang.startswith("[") else f"[{lang}]"


class VecoTokenizer(SentencePieceTokenizer):
    """XLM-R-style SentencePiece tokenizer; with ``dictionary`` (a fairseq ``dict.txt``), fairseq NLG ids."""

    def __init__(self, model: str | Path | bytes, *, dictionary: str | Path | None = None, **kwargs: Any) -> None:
        """``model``: the ``.model`` file; ``dictionary``: a fairseq ``dict.txt`` (NLG ids), or None (XLM-R ids)."""
        self._dict_lines: list[str] | None = None
        if dictionary is not None:
            symbols = read_fairseq_dictionary(dictionary)  # validates the file (one clear error per bad line)
            lines = [line for line in Path(dictionary).read_text(encoding="utf-8").splitlines() if line.strip()]
            specials = dict(kwargs.pop("special_tokens", None) or {})
            if "<mask>" not in symbols:
                specials["mask"] = None  # the NLG dictionary has no <mask> row (the checkpoint's is dropped)
            kwargs["special_tokens"] = specials
            self._dict_lines, self._symbols = lines, symbols
            self._index = {s: i for i, s in enumerate(symbols)}  # the base class looks special tokens up in it
        super().__init__(model, **kwargs)
        if self._dict_lines is not None:
            self._use_dictionary()

    # ----- the dictionary layout ----------------------------------------------------------------------------
    def _use_dictionary(self) -> None:
        symbols = self._symbols
        fixed = {
            s: i for i, s in enumerate(symbols) if s in FAIRSEQ_SPECIAL_SYMBOLS or s == "<mask>" or LANG_TAG.match(s)
        }
        self._fixed, self._fixed_by_id = fixed, {i: s for s, i in fixed.items()}
        pieces = self._sp.id_to_piece(list(range(self._sp.get_piece_size())))
        unk = self._index["<unk>"]
        self._spm_to_id = np.asarray([self._index.get(p, unk) for p in pieces], dtype=np.int64)
        self._spm_to_id[self._sp.unk_id()] = unk
        self._id_to_spm = np.full(len(symbols), self._sp.unk_id(), dtype=np.int64)
        for spm_id, piece in enumerate(pieces):
            index = self._index.get(piece)
            if index is not None and index not in self._fixed_by_id:
                self._id_to_spm[index] = spm_id
        specials = sorted(self.all_special_tokens + self.lang_tags, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, specials)))

    @property
    def has_dictionary(self) -> bool:
        return self._dict_lines is not None

    @property
    def lang_tags(self) -> list[str]:
        """The ``[xx]`` language tags of the dictionary (none without one)."""
        return [s for s in self._symbols if LANG_TAG.match(s)] if self.has_dictionary else []

    def lang_id(self, lang: str) -> int:
        """The id of a language's tag; a clear error if the dictionary has none."""
        tag = lang_tag(lang)
        if not self.has_dictionary or tag not in self._index:
            raise KeyError(f"the dictionary has no language tag {tag!r}; it has {self.lang_tags or 'none'}")
        return self._index[tag]

    def _token_to_id(self, token: str) -> int | None:
        if not self.has_dictionary:
            return super()._token_to_id(token)
        return self._index.get(token)

    def _id_to_token(self, index: int) -> str | None:
        if not self.has_dictionary:
            return super()._id_to_token(index)
        return self._symbols[index] if 0 <= index < len(self._symbols) else None

    @property
    def vocab_size(self) -> int:
        return len(self._symbols) if self.has_dictionary else super().vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return dict(self._index) if self.has_dictionary else super().get_vocab()

    def decode(self, ids: Sequence[int] | Any, skip_special_tokens: bool = True) -> str:
        if not self.has_dictionary:
            return super().decode(ids, skip_special_tokens)
        ids = np.asarray(ids.tolist() if hasattr(ids, "tolist") else list(ids), dtype=np.int64).reshape(-1)
        parts: list[str] = []
        run: list[int] = []

        def flush() -> None:
            if run:
                text = self._sp.decode(run)
                if parts and self._sp.id_to_piece(run[0]).startswith("\u2581"):
                    text = " " + text  # spm drops a run's leading "▁"; after a special token that space is real
                parts.append(text)
                run.clear()

        for index in ids.tolist():
            if index in self._fixed_by_id:
                if not skip_special_tokens:
                    flush()
                    parts.append(self._fixed_by_id[index])
                continue
            run.append(int(self._id_to_spm[index]) if 0 <= index < len(self._symbols) else self._sp.unk_id())
        flush()
        return "".join(parts)

    # ----- dict.txt -----------------------------------------------------------------------------------------
    def dictionary_text(self) -> str:
        """The ``dict.txt`` to write: the lines read (so a file round-trips byte for byte), or, without a dictionary,
        XLM-R's: every spm piece after the control pieces, in order, with count 1."""
        if self._dict_lines is not None:
            return "\n".join(self._dict_lines) + "\n"
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        skip = {self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id(), self._sp.pad_id()}
        return "".join(f"{p} 1\n" for i, p in enumerate(pieces) if i not in skip)

    def save_dictionary(self, path: str | Path) -> Path:
        """Write :meth:`dictionary_text` to ``path``."""
        path = Path(path)
        path.write_text(self.dictionary_text(), encoding="utf-8")
        return path

    def _save_files(self, directory: Path) -> list[Path]:
        written = super()._save_files(directory)
        if self.has_dictionary:
            written.append(self.save_dictionary(directory / DICT_FILE))
        return written

    @classmethod
    def _from_directory(cls, directory: Path, config: dict[str, Any]):
        base = super()._from_directory(directory, config)
        if not (directory / DICT_FILE).is_file():
            return base
        return cls(base._model_bytes, dictionary=directory / DICT_FILE, **cls._common_kwargs(config))

    def __repr__(self) -> str:
        kind = f", dictionary={len(self._symbols)} symbols" if self.has_dictionary else ""
        return f"{type(self).__name__}(vocab_size={self.vocab_size}{kind})"
