"""`LexiconMatcher`: every lexicon word occurring in a character sequence (the word lattice of LatticeBERT)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

_WORD = None  # trie key marking "a word ends here"; never equal to a character


class LexiconMatcher:
    """A character trie over a word list; `find` reports all (start, end, word) matches, overlaps included.

    Matching walks the trie from each position for at most `max_length` characters, so the cost is
    O(len(text) * longest word) with no substring copies.
    """

    def __init__(self, words: Iterable[str], *, min_length: int = 1) -> None:
        if min_length < 1:
            raise ValueError(f"min_length must be at least 1, got {min_length}")
        self.min_length = min_length
        self.max_length = 0
        self._root: dict = {}
        self._count = 0
        for word in words:
            word = word.strip()
            if len(word) < min_length:
                continue
            node = self._root
            for ch in word:
                node = node.setdefault(ch, {})
            if _WORD not in node:
                node[_WORD] = word
                self._count += 1
                self.max_length = max(self.max_length, len(word))

    @classmethod
    def from_file(cls, path: str | Path, *, min_length: int = 1) -> LexiconMatcher:
        """One word per line; anything after the first whitespace (a frequency, a tag) is ignored."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"lexicon file not found: {path}")
        with path.open(encoding="utf-8") as handle:
            return cls((line.split()[0] for line in handle if line.strip()), min_length=min_length)

    def __len__(self) -> int:
        return self._count

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        node = self._root
        for ch in word:
            node = node.get(ch)
            if node is None:
                return False
        return _WORD in node

    def find(self, sequence: str | Sequence[str]) -> list[tuple[int, int, str]]:
        """All lexicon words in `sequence` (a str, or a list of one-character tokens) as (start, end, word),
        `end` exclusive, sorted by start then end."""
        matches: list[tuple[int, int, str]] = []
        n = len(sequence)
        root, limit = self._root, self.max_length
        for start in range(n):
            node = root
            for end in range(start, min(n, start + limit)):
                node = node.get(sequence[end])
                if node is None:
                    break
                word = node.get(_WORD)
                if word is not None:
                    matches.append((start, end + 1, word))
        return matches
