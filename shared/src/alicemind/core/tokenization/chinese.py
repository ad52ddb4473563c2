"""Chinese text helpers: CJK character tests and splitting, jieba word segmentation, and the alignment of
WordPiece tokens to words that whole-word masking needs."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The CJK Unified Ideograph blocks BERT treats as Chinese characters (Hangul and kana are not included).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
_CJK_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_RANGES)
_CJK_RE = re.compile(f"([{_CJK_CLASS}])")


def is_cjk_char(ch: str) -> bool:
    """Whether `ch` (one character) is a CJK ideograph in BERT's sense."""
    if len(ch) != 1:
        raise ValueError(f"is_cjk_char takes one character, got {ch!r}")
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def split_chinese_chars(text: str) -> str:
    """Surround every CJK character with spaces, as BERT's basic tokenizer does before splitting on whitespace."""
    return _CJK_RE.sub(r" \1 ", text)


_BASE_DICTIONARY: tuple[dict[str, int], int] | None = None  # jieba's default prefix dictionary and total count
_BASE_LOCK = threading.Lock()


def _base_dictionary() -> tuple[dict[str, int], int]:
    """Load jieba's default dictionary once per process: it takes seconds, and every segmenter starts from it."""
    global _BASE_DICTIONARY
    with _BASE_LOCK:
        if _BASE_DICTIONARY is None:
            import jieba  # imported lazily: only Chinese pipelines need it

            jieba.setLogLevel(logging.WARNING)  # jieba prints "Building prefix dict..." at DEBUG
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            _BASE_DICTIONARY = (tokenizer.FREQ, tokenizer.total)
        return _BASE_DICTIONARY


class JiebaSegmenter:
    """jieba word segmentation on a private `jieba.Tokenizer`, built on first use with jieba's logging silenced.

    `user_dict` is a jieba user-dictionary file ("word [freq] [tag]" per line) or an iterable of words.
    """

    def __init__(self, user_dict: str | Path | Iterable[str] | None = None, *, hmm: bool = True) -> None:
        self._user_dict = user_dict if user_dict is None or isinstance(user_dict, str | Path) else list(user_dict)
        if isinstance(self._user_dict, str | Path) and not Path(self._user_dict).is_file():
            raise FileNotFoundError(f"jieba user dictionary not found: {self._user_dict}")
        self.hmm = hmm
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _jieba(self) -> Any:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    import jieba

                    freq, total = _base_dictionary()
                    tokenizer = jieba.Tokenizer()
                    # Start from the shared default dictionary instead of re-reading it; copy it only when a user
                    # dictionary will add words to it.
                    tokenizer.FREQ = freq if self._user_dict is None else dict(freq)
                    tokenizer.total = total
                    tokenizer.initialized = True
                    if isinstance(self._user_dict, str | Path):
                        tokenizer.load_userdict(str(self._user_dict))
                    elif self._user_dict is not None:
                        for word in self._user_dict:
                            tokenizer.add_word(word)
                    self._tokenizer = tokenizer
        return self._tokenizer

    def segment(self, text: str) -> list[str]:
        """The words of `text`, in order; their concatenation is `text`."""
        return self._jieba().lcut(text, HMM=self.hmm)

    def segment_with_spans(self, text: str) -> list[tuple[str, int, int]]:
        """(word, start, end) character spans of the words of `text`."""
        return list(self._jieba().tokenize(text, HMM=self.hmm))


def _normalise(text: str) -> str:
    """Lower-case, strip accents and drop whitespace, so WordPiece token text and raw words compare equal."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn" and not ch.isspace())


def whole_word_groups(
    tokens: Sequence[str],
    words: Sequence[str],
    *,
    skip_tokens: Collection[str] = ("[CLS]", "[SEP]", "[PAD]"),
    continuation_prefix: str = "##",
) -> list[list[int]]:
    """Group token indices by the word (e.g. from `JiebaSegmenter.segment`) each token falls in.

    `tokens` are WordPiece tokens of the same text as `words` (possibly truncated); tokens in `skip_tokens` belong
    to no group, and a `##` continuation always joins the group before it. A token whose text cannot be found
    where expected (e.g. `[UNK]`) forms its own group and alignment resumes at the next token that matches.
    """
    content = np.asarray([i for i, tok in enumerate(tokens) if tok not in skip_tokens], dtype=np.int64)
    if content.size == 0:
        return []
    n_prefix = len(continuation_prefix)
    is_continuation = np.asarray([tokens[i].startswith(continuation_prefix) for i in content], dtype=bool)
    surfaces = [
        _normalise(tokens[i][n_prefix:] if cont else tokens[i]) for i, cont in zip(content.tolist(), is_continuation)
    ]
    normalised_words = [_normalise(w) for w in words]
    text = "".join(normalised_words)
    word_of_char = np.repeat(np.arange(len(normalised_words)), [len(w) for w in normalised_words])
    lengths = np.asarray([len(s) for s in surfaces], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if text.startswith("".join(surfaces)) and lengths.all():
        word_ids = word_of_char[starts]  # the common case: every token's text is where expected
    else:
        word_ids = _align_slowly(surfaces, text, word_of_char)
    new_group = np.ones(content.size, dtype=bool)
    new_group[1:] = (word_ids[1:] != word_ids[:-1]) | (word_ids[1:] < 0)
    new_group &= ~is_continuation
    new_group[0] = True
    return [group.tolist() for group in np.split(content, np.flatnonzero(new_group[1:]) + 1)]


def _align_slowly(surfaces: list[str], text: str, word_of_char: np.ndarray) -> np.ndarray:
    """Word id per token (-1: unaligned) when some token text does not match, resynchronising on the next match."""
    word_ids = np.full(len(surfaces), -1, dtype=np.int64)
    pos = 0
    for i, surface in enumerate(surfaces):
        if pos >= len(text):
            break
        if surface and text.startswith(surface, pos):
            word_ids[i] = word_of_char[pos]
            pos += len(surface)
            continue
        # Unmatched (e.g. [UNK]): it covers at least one character; resume where the next token's text appears.
        following = next((s for s in surfaces[i + 1 :] if s), "")
        found = text.find(following, pos + 1) if following else -1
        pos = found if found >= 0 else len(text)
    return word_ids
