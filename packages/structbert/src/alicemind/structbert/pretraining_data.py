"""StructBERT pre-training instances: masked LM, word structural objective (WSO) and sentence structural
objective (SSO), written to memory-mapped shards.

Each instance is ``[CLS] A [SEP] B [SEP]`` with
- ``mlm_labels``: the original token at every predicted position, -100 elsewhere. MLM positions are chosen first
  (80% [MASK], 10% kept, 10% random token); WSO then shuffles some trigrams of still untouched tokens and labels
  every position whose token changed with its original token, so both objectives share the MLM head.
- ``sentence_order_label``: 0 = B is from another document, 1 = B follows A, 2 = B precedes A (A and B swapped).
  With ``sso_classes=2`` only 0 and 1 occur (BERT's next-sentence prediction).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alicemind.core.data import DataCollatorWithPadding, ShardDataset, ShardWriter

SSO_RANDOM, SSO_NEXT, SSO_PREVIOUS = 0, 1, 2
IGNORE_INDEX = -100
PRETRAINING_FIELDS = ("input_ids", "token_type_ids", "mlm_labels", "sentence_order_label")
# The five orders of a trigram other than the identity.
_PERMUTATIONS = np.array([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])

Sentence = str | Sequence[int] | np.ndarray
WordGroups = np.ndarray | Callable[[np.ndarray], np.ndarray]


@dataclass
class MaskedSequence:
    """The corrupted tokens, their labels, and which positions each objective touched."""

    input_ids: np.ndarray
    labels: np.ndarray
    mlm_positions: np.ndarray
    wso_starts: np.ndarray  # first position of every shuffled trigram


def _stochastic_round(x: float, rng: np.random.Generator) -> int:
    # Keeps the expected count right even when x < 1 (short sequences).
    whole = int(x)
    return whole + int(rng.random() < x - whole)


def _greedy_fill(order: np.ndarray, sizes: np.ndarray, budget: int) -> np.ndarray:
    """Walk ``order`` taking every group that still fits the budget, skipping those that do not (as BERT does).

    Done in vectorised passes: each takes the longest fitting prefix of the groups still small enough; a few
    passes suffice because every pass takes at least one group.
    """
    taken = []
    remaining = order
    while budget > 0:
        remaining = remaining[sizes[remaining] <= budget]
        prefix = remaining[np.cumsum(sizes[remaining]) <= budget]
        if not len(prefix):
            break
        taken.append(prefix)
        budget -= int(sizes[prefix].sum())
        remaining = remaining[len(prefix) :]
    return np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)


def mask_and_shuffle(
    tokens: np.ndarray,
    special: np.ndarray,
    *,
    rng: np.random.Generator,
    mask_id: int,
    random_ids: np.ndarray,
    max_predictions: int,
    masked_lm_prob: float = 0.15,
    wso_trigram_prob: float = 0.05,
    continuation: np.ndarray | None = None,
) -> MaskedSequence:
    """Apply MLM masking, then the trigram shuffle, to one sequence.

    ``special`` marks positions never touched ([CLS], [SEP], ...). ``continuation`` (optional, per position) marks
    tokens that continue the previous word: whole words are then masked together. MLM predicts
    ``min(max_predictions, max(1, round(candidates * masked_lm_prob)))`` tokens (a whole word that would exceed that
    is skipped, as in BERT). WSO draws a random offset, tiles the sequence into disjoint trigrams from it, keeps those
    made only of unmasked, non-special tokens that some reordering changes, shuffles a ``wso_trigram_prob`` fraction
    of them (at random among the non-identity reorderings that change a token) within the remaining budget.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    length = len(tokens)
    inputs, labels = tokens.copy(), np.full(length, IGNORE_INDEX, dtype=np.int64)
    candidates = np.flatnonzero(~special)
    positions = np.zeros(0, dtype=np.int64)
    if masked_lm_prob > 0 and len(candidates) and max_predictions > 0:
        budget = min(max_predictions, max(1, int(round(len(candidates) * masked_lm_prob))))
        starts = np.ones(len(candidates), dtype=bool)
        if continuation is not None:
            adjacent = np.diff(candidates, prepend=-2) == 1
            starts = ~(continuation[candidates] & adjacent)
        group = np.cumsum(starts) - 1
        sizes = np.bincount(group)
        chosen = _greedy_fill(rng.permutation(len(sizes)), sizes, budget)
        positions = candidates[np.isin(group, chosen)]
        labels[positions] = tokens[positions]
        draw = rng.random(len(positions))
        inputs[positions[draw < 0.8]] = mask_id
        randomized = positions[draw >= 0.9]
        inputs[randomized] = random_ids[rng.integers(len(random_ids), size=len(randomized))]

    budget = max_predictions - len(positions)
    wso_starts = np.zeros(0, dtype=np.int64)
    if wso_trigram_prob > 0 and budget >= 2 and length >= 3:
        free = ~special
        free[positions] = False
        starts = np.arange(int(rng.integers(3)), length - 2, 3)
        starts = starts[free[starts] & free[starts + 1] & free[starts + 2]]
        trigrams = tokens[starts[:, None] + np.arange(3)]  # [T, 3]
        shuffled = trigrams[:, _PERMUTATIONS]  # [T, 5, 3]
        changed = shuffled != trigrams[:, None, :]
        cost = changed.sum(-1)  # tokens that change under each reordering
        usable = (cost > 0).any(axis=1)  # three equal tokens cannot change
        starts, trigrams, shuffled, changed, cost = (x[usable] for x in (starts, trigrams, shuffled, changed, cost))
        count = _stochastic_round(wso_trigram_prob * len(starts), rng)
        if count:
            scores = np.where(cost > 0, rng.random(cost.shape), -1.0)
            perm = scores.argmax(axis=1)
            pick = rng.permutation(len(starts))[:count]
            pick = pick[np.cumsum(cost[pick, perm[pick]]) <= budget]
            pick.sort()
            where = starts[pick, None] + np.arange(3)
            inputs[where] = shuffled[pick, perm[pick]]
            moved = where[changed[pick, perm[pick]]]
            labels[moved] = tokens[moved]
            wso_starts = starts[pick]
    return MaskedSequence(inputs, labels, positions, wso_starts)


def _truncate_pair(
    a: np.ndarray, b: np.ndarray, max_tokens: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Trim the longer side one token at a time (B on ties), each token from a random end, in closed form."""
    excess = len(a) + len(b) - max_tokens
    if excess <= 0:
        return a, b
    diff = len(a) - len(b)
    if excess <= abs(diff):
        cut_a, cut_b = (excess, 0) if diff > 0 else (0, excess)
    else:
        rest = excess - abs(diff)
        cut_a, cut_b = max(diff, 0) + rest // 2, max(-diff, 0) + rest - rest // 2
    front_a, front_b = int(rng.binomial(cut_a, 0.5)), int(rng.binomial(cut_b, 0.5))
    return a[front_a : len(a) - (cut_a - front_a)], b[front_b : len(b) - (cut_b - front_b)]


@dataclass
class _Builder:
    documents: list[list[np.ndarray]]
    rng: np.random.Generator
    max_seq_length: int
    max_predictions_per_seq: int
    cls_id: int
    sep_id: int
    mask_id: int
    never_mask: np.ndarray
    random_ids: np.ndarray
    masked_lm_prob: float
    short_seq_prob: float
    sso_classes: int
    wso_trigram_prob: float
    whole_word_groups: WordGroups | None

    def from_document(self, d: int) -> list[dict[str, Any]]:
        doc, rng = self.documents[d], self.rng
        max_tokens = self.max_seq_length - 3
        target = int(rng.integers(2, max_tokens + 1)) if rng.random() < self.short_seq_prob else max_tokens
        instances, chunk, size, i = [], [], 0, 0
        while i < len(doc):
            chunk.append(doc[i])
            size += len(doc[i])
            if i == len(doc) - 1 or size >= target:
                instance, unused = self._pair(chunk, target, d)
                if instance is not None:
                    instances.append(instance)
                i -= unused  # sentences B did not take go back into the stream
                chunk, size = [], 0
            i += 1
        return instances

    def _pair(self, chunk: list[np.ndarray], target: int, d: int) -> tuple[dict[str, Any] | None, int]:
        rng = self.rng
        label = int(rng.integers(self.sso_classes))
        a_end = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
        a, unused = np.concatenate(chunk[:a_end]), 0
        if label != SSO_RANDOM and len(chunk) == 1:
            if len(a) < 2:  # one token cannot be split into two segments
                label = SSO_RANDOM
            else:  # keep the classes balanced: split a lone sentence at a token boundary
                cut = int(rng.integers(1, len(a)))
                a, b = a[:cut], a[cut:]
        if label == SSO_RANDOM:
            b = self._random_segment(d, max(1, target - len(a)))
            unused = len(chunk) - a_end
        elif len(chunk) > 1:
            b = np.concatenate(chunk[a_end:])
        if label == SSO_PREVIOUS:
            a, b = b, a
        a, b = _truncate_pair(a, b, self.max_seq_length - 3, rng)
        if len(a) == 0 or len(b) == 0:
            return None, unused
        return self._instance(a, b, label), unused

    def _random_segment(self, d: int, length: int) -> np.ndarray:
        other = int(self.rng.integers(len(self.documents) - 1))
        doc = self.documents[other + (other >= d)]
        start = int(self.rng.integers(len(doc)))
        pieces, size = [], 0
        for sentence in doc[start:]:
            pieces.append(sentence)
            size += len(sentence)
            if size >= length:
                break
        return np.concatenate(pieces)

    def _instance(self, a: np.ndarray, b: np.ndarray, label: int) -> dict[str, Any]:
        tokens = np.concatenate([[self.cls_id], a, [self.sep_id], b, [self.sep_id]]).astype(np.int64)
        special = np.isin(tokens, self.never_mask)
        special[[0, len(a) + 1, len(tokens) - 1]] = True
        continuation = None
        if self.whole_word_groups is not None:
            groups = self.whole_word_groups
            continuation = groups[tokens] if isinstance(groups, np.ndarray) else np.asarray(groups(tokens), bool)
        masked = mask_and_shuffle(
            tokens,
            special,
            rng=self.rng,
            mask_id=self.mask_id,
            random_ids=self.random_ids,
            max_predictions=self.max_predictions_per_seq,
            masked_lm_prob=self.masked_lm_prob,
            wso_trigram_prob=self.wso_trigram_prob,
            continuation=continuation,
        )
        token_type_ids = np.zeros(len(tokens), dtype=np.int64)
        token_type_ids[len(a) + 2 :] = 1
        return {
            "input_ids": masked.input_ids,
            "token_type_ids": token_type_ids,
            "mlm_labels": masked.labels,
            "sentence_order_label": label,
        }


def _prepare(
    documents: Iterable[Sequence[Sentence]], tokenizer_fn: Callable[[str], Sequence[int]] | None, vocab_size: int
) -> list[list[np.ndarray]]:
    prepared = []
    for n, doc in enumerate(documents):
        sentences = []
        for sentence in doc:
            if isinstance(sentence, str):
                if tokenizer_fn is None:
                    raise ValueError(f"document {n} holds text; pass tokenizer_fn to turn sentences into token ids")
                sentence = tokenizer_fn(sentence)
            ids = np.asarray(sentence, dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
                raise ValueError(f"document {n} holds token id {int(ids.max())} outside [0, vocab_size={vocab_size})")
            if ids.size:
                sentences.append(ids)
        if sentences:
            prepared.append(sentences)
    return prepared


def build_pretraining_instances(
    documents: Iterable[Sequence[Sentence]],
    tokenizer_fn: Callable[[str], Sequence[int]] | None = None,
    *,
    max_seq_length: int,
    max_predictions_per_seq: int,
    vocab_size: int,
    cls_id: int,
    sep_id: int,
    mask_id: int,
    pad_id: int = 0,
    special_ids: Iterable[int] = (),
    masked_lm_prob: float = 0.15,
    short_seq_prob: float = 0.1,
    sso_classes: int = 3,
    wso_trigram_prob: float = 0.05,
    whole_word_groups: WordGroups | None = None,
    dupe_factor: int = 1,
    rng: np.random.Generator | int = 0,
) -> list[dict[str, Any]]:
    """Build shuffled StructBERT instances from documents (lists of sentences: text or token ids).

    ``max_predictions_per_seq`` bounds MLM and WSO targets together; MLM takes its share first, so leave room
    (BERT's 20 for 128 tokens leaves almost none: about 32 suits 15% MLM plus WSO). ``wso_trigram_prob`` is the
    fraction of eligible trigrams shuffled (5% in the paper). ``whole_word_groups`` is a boolean array over the
    vocabulary marking word-continuation tokens (WordPiece ``##`` pieces), or a function from a token-id array to
    such flags. Random replacements never draw [CLS]/[SEP]/[MASK]/[PAD] or ``special_ids``, and those ids are never
    masked. ``rng`` is a numpy Generator or a seed; the same seed gives the same instances.
    """
    if sso_classes not in (2, 3):
        raise ValueError(f"sso_classes must be 2 (next-sentence) or 3 (StructBERT order), got {sso_classes}")
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length must leave room for [CLS] A [SEP] B [SEP], got {max_seq_length}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    docs = _prepare(documents, tokenizer_fn, vocab_size)
    if len(docs) < 2:
        raise ValueError(f"need at least 2 non-empty documents to draw random B segments, got {len(docs)}")
    never = np.array(sorted({cls_id, sep_id, mask_id, pad_id, *special_ids}), dtype=np.int64)
    if whole_word_groups is not None and isinstance(whole_word_groups, np.ndarray):
        whole_word_groups = np.asarray(whole_word_groups, dtype=bool)
        if whole_word_groups.shape != (vocab_size,):
            raise ValueError(f"whole_word_groups must have shape ({vocab_size},), got {whole_word_groups.shape}")
    builder = _Builder(
        docs,
        rng,
        max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq,
        cls_id=cls_id,
        sep_id=sep_id,
        mask_id=mask_id,
        never_mask=never,
        random_ids=np.setdiff1d(np.arange(vocab_size), never),
        masked_lm_prob=masked_lm_prob,
        short_seq_prob=short_seq_prob,
        sso_classes=sso_classes,
        wso_trigram_prob=wso_trigram_prob,
        whole_word_groups=whole_word_groups,
    )
    instances = [inst for _ in range(dupe_factor) for d in range(len(docs)) for inst in builder.from_document(d)]
    return [instances[i] for i in rng.permutation(len(instances))]


def write_pretraining_shards(
    instances: Iterable[dict[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    vocab_size: int,
    shard_size: int = 1_000_000,
    overwrite: bool = False,
) -> Path:
    """Write instances to token shards (uint16 ids when the vocabulary fits, uint32 otherwise)."""
    dtype = "uint16" if vocab_size <= 2**16 else "uint32"
    field_dtypes = {"token_type_ids": "uint8", "mlm_labels": "int32", "sentence_order_label": "uint8"}
    with ShardWriter(out_dir, dtype=dtype, field_dtypes=field_dtypes, shard_size=shard_size, overwrite=overwrite) as w:
        for instance in instances:
            w.add({name: instance[name] for name in PRETRAINING_FIELDS})
    return Path(out_dir)


def load_pretraining_dataset(directory: str | os.PathLike[str]) -> ShardDataset:
    """Open shards written by :func:`write_pretraining_shards` (checks that every field is there)."""
    dataset = ShardDataset(directory)
    missing = [name for name in PRETRAINING_FIELDS if name not in dataset.fields]
    if missing:
        raise ValueError(f"{directory} is not a StructBERT pre-training shard set: missing fields {missing}")
    return dataset


def pretraining_collator(pad_token_id: int, *, pad_to_multiple_of: int | None = 8) -> DataCollatorWithPadding:
    """Pads ids with ``pad_token_id``, token types with 0 and ``mlm_labels`` with -100; adds ``attention_mask``."""
    return DataCollatorWithPadding(pad_token_id, pad_to_multiple_of=pad_to_multiple_of)
