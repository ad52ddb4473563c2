"""`LatticeBertTokenizer`: BERT-Chinese character WordPiece plus a lexicon matched into lattice units.

Ids: characters keep their ``vocab.txt`` ids; lexicon words (plain lexicon) or clusters (named lexicon,
``surface<TAB>cluster``, as the releases use) follow from ``len(vocab.txt)`` in order of first appearance.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alicemind.core.io import register_tokenizer_files
from alicemind.core.tokenization import WordPieceTokenizer
from alicemind.latticebert.lattice import Lattice, TokenTrie, build_lattice, concatenate, special_unit

LEXICON_FILE = "lexicon.txt"
VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"
register_tokenizer_files(LEXICON_FILE)


class LexiconError(ValueError):
    """A lexicon that would give two different tokens one id."""


@dataclass
class LatticeEncoding:
    """One encoded example: the lattice units with their ids, segment ids and start/end positions."""

    lattice: Lattice
    token_type_ids: list[int]

    @property
    def input_ids(self) -> list[int]:
        return self.lattice.ids

    @property
    def tokens(self) -> list[str]:
        return self.lattice.tokens

    @property
    def starts(self) -> list[int]:
        return self.lattice.starts

    @property
    def ends(self) -> list[int]:
        return self.lattice.ends

    @property
    def segments(self) -> list[list[int]]:
        return self.lattice.segments

    def __len__(self) -> int:
        return len(self.lattice)


def read_lexicon(path: str | Path) -> tuple[list[tuple[str, str]], bool]:
    """``[(surface, name)]`` of a lexicon file and whether it is named (``surface<TAB>cluster`` lines)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lexicon file not found: {path}")
    lines = [line.rstrip("\n").strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    named = any("\t" in line for line in lines)
    entries = []
    for line in lines:
        fields = line.split("\t")
        entries.append((fields[0], fields[-1]) if named else (line, line))
    return entries, named


class LatticeBertTokenizer:
    """Characters by WordPiece (lower-cased BERT-Chinese), words by a trie over their character-token ids.

    ``__call__`` encodes a batch (pairs as ``[CLS] A [SEP] B [SEP]``) into padded tensors: ``input_ids``,
    ``attention_mask``, ``token_type_ids``, ``lattice_starts`` and ``lattice_ends`` (the inclusive end position).
    ``max_length`` counts lattice units (characters plus words, specials included), as the original does.
    """

    def __init__(self, char_tokenizer: WordPieceTokenizer, lexicon: Sequence[tuple[str, str]] = ()) -> None:
        self.char_tokenizer = char_tokenizer
        self._char_vocab = char_tokenizer.get_vocab()
        self.char_vocab_size = len(self._char_vocab)
        self.trie = TokenTrie()
        self.lexicon: list[tuple[str, str]] = []
        self._word_ids: dict[str, int] = {}
        self.word_names: dict[int, str] = {}
        collisions = [name for _, name in lexicon if name in self._char_vocab]
        if collisions:
            raise LexiconError(
                f"{len(collisions)} lexicon name(s) are also character tokens, e.g. {collisions[:5]}; the original "
                "overwrote those characters' ids with the word's. Rename or drop them"
            )
        surfaces = [surface for surface, _ in lexicon]
        encoded = char_tokenizer.backend.encode_batch(surfaces, add_special_tokens=False) if surfaces else []
        for (surface, name), enc in zip(lexicon, encoded):
            if not enc.ids:
                continue
            word_id = self._word_ids.setdefault(name, self.char_vocab_size + len(self._word_ids))
            self.word_names[word_id] = name
            self.trie.add(enc.ids, word_id)
            self.lexicon.append((surface, name))
        for token in ("cls", "sep", "pad", "mask", "unk"):
            if getattr(char_tokenizer, f"{token}_token_id") is None:
                raise ValueError(f"the character vocabulary has no {token} token")

    # -- construction / IO ------------------------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls, vocab_file: str | Path, lexicon_file: str | Path | None = None, *, lowercase: bool = True
    ) -> LatticeBertTokenizer:
        """From a ``vocab.txt`` and a lexicon (plain: one word a line; named: ``surface<TAB>cluster``)."""
        chars = WordPieceTokenizer.from_vocab_file(vocab_file, lowercase=lowercase)
        entries = read_lexicon(lexicon_file)[0] if lexicon_file is not None else []
        return cls(chars, entries)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LatticeBertTokenizer:
        """A folder with ``vocab.txt`` and ``lexicon.txt`` (a released tarball folder, or one we saved)."""
        directory = Path(directory)
        if not (directory / VOCAB_FILE).is_file():
            raise FileNotFoundError(f"{directory} has no {VOCAB_FILE}")
        lowercase = True
        if (directory / CONFIG_FILE).is_file():
            lowercase = bool(json.loads((directory / CONFIG_FILE).read_text()).get("do_lower_case", True))
        lexicon = directory / LEXICON_FILE
        return cls.from_files(directory / VOCAB_FILE, lexicon if lexicon.is_file() else None, lowercase=lowercase)

    def save_pretrained(self, directory: str | Path) -> list[Path]:
        """Write ``vocab.txt``, ``lexicon.txt`` (always named: ``surface<TAB>name``) and ``tokenizer_config.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        chars = sorted(self._char_vocab.items(), key=lambda kv: kv[1])
        paths = [directory / VOCAB_FILE, directory / LEXICON_FILE, directory / CONFIG_FILE]
        paths[0].write_text("".join(f"{tok}\n" for tok, _ in chars), encoding="utf-8")
        paths[1].write_text("".join(f"{s}\t{n}\n" for s, n in self.lexicon), encoding="utf-8")
        config = {"tokenizer_class": type(self).__name__, "do_lower_case": self.char_tokenizer.lowercase}
        paths[2].write_text(json.dumps(config, indent=2) + "\n")
        return paths

    # -- vocabulary -------------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Characters plus words/clusters: the model's ``vocab_size``."""
        return self.char_vocab_size + len(self._word_ids)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return {**self._char_vocab, **self._word_ids}

    def __getattr__(self, name: str) -> Any:
        # Special tokens and their ids ([CLS], [SEP], [PAD], [MASK], [UNK]) are the character tokenizer's.
        if name.endswith(("_token", "_token_id")) and name != "char_tokenizer":
            return getattr(self.__dict__["char_tokenizer"], name)
        raise AttributeError(name)

    @property
    def word_ids(self) -> list[int]:
        """Ids of every lexicon word or cluster."""
        return sorted(self.word_names)

    # -- lattices ---------------------------------------------------------------------------------------------------
    def lattices(self, texts: Sequence[str]) -> list[Lattice]:
        """The lattice of each text (characters by the Rust tokenizer in one batch call, words by the trie)."""
        encodings = self.char_tokenizer.backend.encode_batch(list(texts), add_special_tokens=False)
        out = []
        for text, enc in zip(texts, encodings):
            if not enc.ids:
                raise ValueError(f"empty text: {text!r} has no characters to encode")
            out.append(build_lattice(enc.tokens, enc.ids, self.trie, self.word_names))
        return out

    def lattice(self, text: str) -> Lattice:
        return self.lattices([text])[0]

    def join(self, first: Lattice, second: Lattice | None = None, **kwargs: Any) -> LatticeEncoding:
        """``[CLS] first [SEP] (second [SEP])`` with positions offset as the original does, and segment ids."""
        cls_unit = special_unit(self.cls_token, self.cls_token_id)
        sep = special_unit(self.sep_token, self.sep_token_id)
        parts = [cls_unit, first, sep] + ([second, special_unit(self.sep_token, self.sep_token_id)] if second else [])
        joined = concatenate(parts, **kwargs)
        type_ids = [0] * (len(first) + 2) + ([1] * (len(second) + 1) if second else [])
        return LatticeEncoding(joined, type_ids)

    def encode(
        self, text: str, text_pair: str | None = None, *, max_length: int | None = None, truncation: bool = False
    ) -> LatticeEncoding:
        """One example; see :meth:`encode_batch`."""
        return self.encode_batch([text], [text_pair] if text_pair is not None else None, max_length=max_length,
                                 truncation=truncation)[0]  # fmt: skip

    def encode_batch(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        *,
        max_length: int | None = None,
        truncation: bool = False,
    ) -> list[LatticeEncoding]:
        """Encode texts (and pairs). With ``max_length`` (lattice units, specials included) a longer example is an
        error unless ``truncation=True``, which drops the last units of the longer part first."""
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(text_pairs)} text pairs")
        firsts = self.lattices(texts)
        seconds = self.lattices(text_pairs) if text_pairs is not None else [None] * len(firsts)
        out = []
        for first, second in zip(firsts, seconds):
            if max_length is not None:
                self._fit(first, second, max_length, truncation)
            out.append(self.join(first, second))
        return out

    @staticmethod
    def _fit(first: Lattice, second: Lattice | None, max_length: int, truncation: bool) -> None:
        specials = 3 if second is not None else 2
        total = len(first) + (len(second) if second is not None else 0) + specials
        if total <= max_length:
            return
        if not truncation:
            raise ValueError(
                f"the lattice has {total} units (characters + words + specials), more than max_length {max_length}; "
                "pass truncation=True to cut it"
            )
        if max_length < specials + (2 if second is not None else 1):
            raise ValueError(f"max_length {max_length} leaves no room for text after the special tokens")
        while len(first) + (len(second) if second is not None else 0) + specials > max_length:
            longer = second if second is not None and len(second) > len(first) else first
            longer.pop_back()

    def encode_tagged(
        self, words: Sequence[str], *, max_length: int | None = None, truncation: bool = False
    ) -> tuple[LatticeEncoding, list[int]]:
        """A CoNLL sentence as the original sequence-labelling script builds it: ``[CLS]``, each word's own lattice
        in order (its label on its first unit), then the sentence's words not already present (keeping their
        positions), then ``[SEP]``. Returns the encoding and each word's unit index (``label_positions``).

        With ``max_length`` a longer lattice is an error, or with ``truncation=True`` appended words go first,
        then trailing words of the sentence (whose labels are then absent from ``label_positions``).
        """
        if not words:
            raise ValueError("empty sentence: no words to tag")
        pieces = self.lattices(list(words))
        units = concatenate([special_unit(self.cls_token, self.cls_token_id), *pieces])
        label_positions, index = [], 1
        for piece in pieces:
            label_positions.append(index)
            index += len(piece)
        covered = set(zip(units.starts, units.lengths))
        whole = self.lattice("".join(words))
        extra = [(t, i, s + 1, n) for t, i, s, n in zip(whole.tokens, whole.ids, whole.starts, whole.lengths)
                 if (s + 1, n) not in covered]  # fmt: skip
        limit = None if max_length is None else max_length - 1  # room for [SEP]
        if limit is not None and len(units) + len(extra) > limit:
            if not truncation:
                raise ValueError(
                    f"the sentence's lattice has {len(units) + len(extra) + 1} units, more than max_length "
                    f"{max_length}; pass truncation=True to cut it"
                )
            extra = extra[: max(0, limit - len(units))]
            while len(units) > limit:
                units.pop_back()
            label_positions = [p for p in label_positions if p < len(units)]
        for token, token_id, start, length in extra:
            units.tokens.append(token)
            units.ids.append(token_id)
            units.starts.append(start)
            units.lengths.append(length)
        units.segments = []
        joined = concatenate([units, special_unit(self.sep_token, self.sep_token_id)])
        return LatticeEncoding(joined, [0] * len(joined)), label_positions

    def __call__(
        self,
        texts: str | Sequence[str],
        text_pairs: str | Sequence[str] | None = None,
        *,
        max_length: int | None = None,
        truncation: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Padded ``[B, L]`` tensors of a batch (padding: id of [PAD], type 0, start = end = 0, mask 0)."""
        if isinstance(texts, str):
            texts = [texts]
            text_pairs = [text_pairs] if isinstance(text_pairs, str) else text_pairs
        encodings = self.encode_batch(texts, text_pairs, max_length=max_length, truncation=truncation)
        return self.pad(encodings)

    def pad(self, encodings: Sequence[LatticeEncoding]) -> dict[str, torch.Tensor]:
        """Stack encodings into padded tensors (one tensor built per field, from padded lists)."""
        length = max(len(e) for e in encodings)

        def padded(rows, fill: int) -> torch.Tensor:
            return torch.tensor([row + [fill] * (length - len(row)) for row in rows], dtype=torch.long)

        return {
            "input_ids": padded([e.input_ids for e in encodings], self.pad_token_id),
            "attention_mask": padded([[1] * len(e) for e in encodings], 0),
            "token_type_ids": padded([e.token_type_ids for e in encodings], 0),
            "lattice_starts": padded([e.starts for e in encodings], 0),
            "lattice_ends": padded([e.ends for e in encodings], 0),
        }


def build_lexicon(
    lines: Iterable[str],
    path: str | Path,
    *,
    min_count: int = 2,
    max_words: int | None = None,
    min_chars: int = 2,
    exclude: Container[str] = (),
) -> int:
    """Segment a user's corpus with jieba and write the words seen at least ``min_count`` times (most frequent
    first, at most ``max_words``; words of fewer than ``min_chars`` characters are left to the character units)
    as a plain lexicon file; returns the number of words written. Words in ``exclude`` (the character vocab) are
    dropped: a lexicon name equal to a character token is refused by the tokenizer."""
    import jieba

    counts: Counter[str] = Counter()
    for line in lines:
        words = (w.strip().lower() for w in jieba.lcut(line.strip()))
        counts.update(w for w in words if len(w) >= min_chars and w not in exclude)
    words = [w for w, c in counts.most_common(max_words) if c >= min_count]
    Path(path).write_text("".join(f"{w}\n" for w in words), encoding="utf-8")
    return len(words)
