"""Lattices of characters and lexicon words: matching, ordering, cut-point segments, concatenation, truncation.

A lattice unit is either one character token (length 1) or a lexicon word matched over consecutive character
tokens (start = index of its first character, length = its number of characters). Positions count WordPiece
pieces, so a Latin word ``BERT`` -> ``be ##rt`` occupies two positions (errata 10).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

_END = -1  # trie key marking "a word ends here"; never a token id


class TokenTrie:
    """A trie over token-id sequences: every lexicon word that starts at each position of an id sequence.

    ``matches`` walks the trie once per start position and stops at the first id with no child, so the work is
    one dict lookup per character plus one per matched prefix; no substrings or joined keys are built.
    """

    def __init__(self) -> None:
        self._root: dict = {}
        self.num_words = 0
        self.max_length = 0

    def add(self, ids: Sequence[int], word_id: int) -> bool:
        """Insert the word spelled by ``ids``. A spelling already present takes the new id (the original's trie
        assignment: the last lexicon line wins); returns whether the spelling was new."""
        if not ids:
            return False
        node = self._root
        for token in ids:
            node = node.setdefault(int(token), {})
        new = _END not in node
        node[_END] = word_id
        if not new:
            return False
        self.num_words += 1
        self.max_length = max(self.max_length, len(ids))
        return True

    def matches(self, ids: Sequence[int]) -> list[tuple[int, int, int]]:
        """``(start, length, word_id)`` of every word occurrence, by start then length."""
        out = []
        root = self._root
        n = len(ids)
        for start in range(n):
            node = root.get(ids[start])
            end = start
            while node is not None:
                word = node.get(_END)
                if word is not None:
                    out.append((start, end - start + 1, word))
                end += 1
                if end >= n:
                    break
                node = node.get(ids[end])
        return out


@dataclass
class Lattice:
    """The units of one text (or of a concatenation) in the original's order, with their segments.

    ``segments`` holds, per segment, the indices of its units: a segment is the span between two consecutive
    cut points (positions that no word crosses), the unit of masked segment prediction. Special tokens belong to
    no segment.
    """

    tokens: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    segments: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ends(self) -> list[int]:
        """Inclusive end position of every unit (start + length - 1)."""
        return [s + n - 1 for s, n in zip(self.starts, self.lengths)]

    @property
    def next_position(self) -> int:
        """Where a following part starts when concatenated: the largest exclusive end (errata 2: max end + 1)."""
        return max((s + n for s, n in zip(self.starts, self.lengths)), default=0)

    @property
    def num_words(self) -> int:
        return sum(1 for n in self.lengths if n > 1)

    def pop_back(self) -> None:
        """Drop the last unit (the one ending last); its segment loses it."""
        last = len(self.ids) - 1
        for seq in (self.tokens, self.ids, self.starts, self.lengths):
            seq.pop()
        self.segments = [kept for seg in self.segments if (kept := [i for i in seg if i != last])]


def special_unit(token: str, token_id: int) -> Lattice:
    """A one-unit lattice for [CLS] or [SEP] (position 0 before concatenation, no segment)."""
    return Lattice([token], [token_id], [0], [1], [])


def cut_points(starts: Sequence[int], lengths: Sequence[int], num_chars: int) -> list[int]:
    """Inner boundaries ``n`` (0 < n < num_chars) that no unit crosses (no unit with start < n < start + length).

    The original removes each boundary from a graph and runs a shortest-path search (O(n * E)); since every
    character is a unit, the boundary is a cut exactly when the furthest end of the units starting before it is
    not past it, which one sweep over the units sorted by start finds.
    """
    furthest = [0] * (num_chars + 1)  # furthest exclusive end of units starting at each position
    for s, n in zip(starts, lengths):
        furthest[s] = max(furthest[s], s + n)
    cuts, reach = [], 0
    for boundary in range(1, num_chars):
        reach = max(reach, furthest[boundary - 1])
        if reach <= boundary:
            cuts.append(boundary)
    return cuts


def build_lattice(tokens: Sequence[str], ids: Sequence[int], trie: TokenTrie, word_names: Mapping[int, str]) -> Lattice:
    """The lattice of one character-token sequence: every character plus every matched word, sorted as the original
    sorts them, by (exclusive end, length) with characters before words of the same span; and its segments."""
    payload = [(tok, i, start, 1) for start, (tok, i) in enumerate(zip(tokens, ids))]
    payload += [(word_names[w], w, s, n) for s, n, w in trie.matches(ids)]
    payload.sort(key=lambda unit: (unit[2] + unit[3], unit[3]))  # stable: characters stay first
    lattice = Lattice(
        [u[0] for u in payload], [u[1] for u in payload], [u[2] for u in payload], [u[3] for u in payload]
    )
    if tokens:
        boundaries = [*cut_points(lattice.starts, lattice.lengths, len(tokens)), len(tokens)]
        segments: list[list[int]] = [[] for _ in boundaries]
        for index, (s, n) in enumerate(zip(lattice.starts, lattice.lengths)):
            segments[bisect.bisect_left(boundaries, s + n)].append(index)
        lattice.segments = segments
    return lattice


def concatenate(parts: Iterable[Lattice], *, original_segment_offsets: bool = False) -> Lattice:
    """Join lattices as ``[CLS] A [SEP] B [SEP]`` is built: each part's positions are offset by the previous
    parts' largest exclusive end. Segment indices are offset by the number of units before the part;
    ``original_segment_offsets=True`` offsets them by the position offset instead, as the original code does
    (errata 10: its segments after the first part then point at the wrong units)."""
    out = Lattice()
    for part in parts:
        position_offset = out.next_position if out.ids else 0
        unit_offset = position_offset if original_segment_offsets else len(out.ids)
        out.tokens += part.tokens
        out.ids += part.ids
        out.starts += [s + position_offset for s in part.starts]
        out.lengths += list(part.lengths)
        out.segments += [[i + unit_offset for i in seg] for seg in part.segments]
    return out
