"""Fine-tuning data: (source, target) text pairs -> token features -> padded seq2seq batches.

File formats: sofa's TSV ``text_a<TAB>text_b`` (DuReaderQG / DuReader-robust store ``answer[SEP]context`` as
``text_a``; LCSTS ``content<TAB>summary``), or JSON lines with ``src``/``tgt`` (PreSumm's field names) or
``source``/``target`` text fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from alicemind.core.data import DataCollatorWithPadding, DataFormatError, read_jsonl, read_tsv
from alicemind.core.tokenization import BaseTokenizer

_JSON_FIELDS = (("src", "tgt"), ("source", "target"), ("src_txt", "tgt_txt"))


def read_pairs(path: str | Path, *, limit: int | None = None) -> list[tuple[str, str]]:
    """(source, target) pairs from a ``.tsv``/``.txt`` (two tab-separated fields, no header) or ``.jsonl`` file."""
    path = Path(path)
    pairs: list[tuple[str, str]] = []
    if path.suffix in (".jsonl", ".json"):
        for record in read_jsonl(path):
            for src, tgt in _JSON_FIELDS:
                if src in record and tgt in record:
                    pairs.append((str(record[src]), str(record[tgt])))
                    break
            else:
                raise DataFormatError(f"{path}: a record has none of the field pairs {_JSON_FIELDS}: {sorted(record)}")
            if limit is not None and len(pairs) >= limit:
                break
    else:
        for row in read_tsv(path, has_header=False):
            if len(row) != 2:
                raise DataFormatError(f"{path}: expected 'source<TAB>target' rows, got {len(row)} field(s)")
            pairs.append((row[0], row[1]))
            if limit is not None and len(pairs) >= limit:
                break
    if not pairs:
        raise DataFormatError(f"{path} holds no examples")
    return pairs


def encode_pairs(
    tokenizer: BaseTokenizer,
    pairs: Iterable[tuple[str, str]],
    *,
    max_source_length: int,
    max_target_length: int,
) -> list[dict[str, list[int]]]:
    """Features for teacher forcing: ``input_ids`` = ``BOS src EOS``; the target ``BOS tgt EOS`` is split into
    ``decoder_input_ids`` (all but the last token) and ``labels`` (all but the first), as sofa's palm_batchify."""
    pairs = list(pairs)
    sources = tokenizer([s for s, _ in pairs], truncation=True, max_length=max_source_length)["input_ids"]
    targets = tokenizer([t for _, t in pairs], truncation=True, max_length=max_target_length)["input_ids"]
    return [{"input_ids": src, "decoder_input_ids": tgt[:-1], "labels": tgt[1:]} for src, tgt in zip(sources, targets)]


def encode_sources(tokenizer: BaseTokenizer, sources: Sequence[str], *, max_source_length: int) -> dict:
    """A padded source batch (``input_ids``, ``attention_mask`` tensors) for generation."""
    return tokenizer(list(sources), truncation=True, max_length=max_source_length, padding=True, return_tensors="pt")


def seq2seq_collator(pad_token_id: int) -> DataCollatorWithPadding:
    """Right-pads ``input_ids``/``decoder_input_ids`` with the pad id and ``labels`` with -100."""
    return DataCollatorWithPadding(pad_token_id)
