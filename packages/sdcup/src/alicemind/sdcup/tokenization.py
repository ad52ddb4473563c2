"""SdcupTokenizer: UER's BertTokenizer (Google WordPiece, always lower-cased, errata 4.3) and the table input.

Serialisation (``generate_inputs`` of the original): ``[CLS] q_1 .. q_m [SEP] c_1 [SEP] .. c_n [SEP] 空列 [SEP]``;
segment 1 over ``[CLS] question [SEP]``, 2 over every column and its ``[SEP]``, 0 = padding (the attention mask
is ``segment > 0``). Question tokens given pre-split (CBANK ``question_tok``) are looked up unchanged; columns
are WordPiece-tokenised. Nothing is truncated: a longer input raises :class:`TableTooLongError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alicemind.core.tokenization import WordPieceTokenizer
from alicemind.sdcup.table import TableQuestion, TableTooLongError, header_knowledge, question_knowledge


@dataclass
class SerializedInput:
    """One encoded (question, table): ids, segments, the question span and each column's ``[start, end)`` span."""

    tokens: list[str]
    input_ids: list[int]
    segment_ids: list[int]
    question_span: tuple[int, int]  # [start, end) of the question tokens (after [CLS])
    column_spans: list[tuple[int, int]]  # one per column, the dummy column last
    question_tokens: list[str]
    question_knowledge: list[int]
    header_knowledge: list[int]

    @property
    def num_columns(self) -> int:
        """Columns including the dummy column."""
        return len(self.column_spans)


class SdcupTokenizer(WordPieceTokenizer):
    """WordPiece over ``vocab.txt`` (``google_zh_vocab.txt`` for the released models), plus :meth:`serialize`."""

    @classmethod
    def from_vocab_file(cls, vocab_file, **kwargs):  # noqa: D102 - UER lower-cases whatever it is told
        return super().from_vocab_file(vocab_file, lowercase=True, **kwargs)

    def question_tokens(self, question: str) -> list[str]:
        """The first-level tokens of a question with no ``question_tok``: WordPiece (CJK split one per character)."""
        return self.tokenize(question)

    def serialize(self, example: TableQuestion, max_seq_length: int | None = None) -> SerializedInput:
        """Encode a question and its table as the original does (the dummy column included)."""
        q_tokens = list(example.question_tokens) if example.question_tokens else self.question_tokens(example.question)
        if not q_tokens:
            raise ValueError(f"example {example.example_id!r}: the question is empty")
        tokens, segments = ["[CLS]", *q_tokens, "[SEP]"], [1] * (len(q_tokens) + 2)
        spans = []
        for name in example.table.header_with_dummy:
            pieces = self.tokenize(name) or ["[UNK]"]
            spans.append((len(tokens), len(tokens) + len(pieces)))
            tokens += [*pieces, "[SEP]"]
            segments += [2] * (len(pieces) + 1)
        limit = max_seq_length or self.model_max_length
        if limit and len(tokens) > limit:
            raise TableTooLongError(
                f"example {example.example_id or example.question[:30]!r}: question + {len(spans)} columns need "
                f"{len(tokens)} tokens, more than max_seq_length {limit}; shorten the header or raise max_seq_length"
            )
        unk = self.unk_token_id
        vocab = self.get_vocab()
        ids = [vocab.get(t, unk) for t in tokens]
        return SerializedInput(tokens, ids, segments, (1, 1 + len(q_tokens)), spans, q_tokens,
                               question_knowledge(q_tokens, example.table), header_knowledge(q_tokens, example.table))  # fmt: skip


def collate_serialized(items: Sequence[SerializedInput]) -> dict[str, torch.Tensor]:
    """Pad a batch: ``input_ids``/``token_type_ids`` (0 = pad), question/column index tensors and knowledge codes."""
    batch = len(items)
    length = max(len(it.input_ids) for it in items)
    q_len = max(it.question_span[1] - it.question_span[0] for it in items)
    n_cols = max(it.num_columns for it in items)
    col_len = max(e - s for it in items for s, e in it.column_spans)
    out = {
        "input_ids": torch.zeros(batch, length, dtype=torch.long),
        "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
        "question_index": torch.zeros(batch, q_len, dtype=torch.long),
        "question_mask": torch.zeros(batch, q_len, dtype=torch.bool),
        "column_index": torch.zeros(batch, n_cols, col_len, dtype=torch.long),
        "column_token_mask": torch.zeros(batch, n_cols, col_len, dtype=torch.bool),
        "column_mask": torch.zeros(batch, n_cols, dtype=torch.bool),
        "question_knowledge": torch.zeros(batch, q_len, dtype=torch.long),
        "header_knowledge": torch.zeros(batch, n_cols, dtype=torch.long),
    }
    for b, it in enumerate(items):
        out["input_ids"][b, : len(it.input_ids)] = torch.tensor(it.input_ids)
        out["token_type_ids"][b, : len(it.segment_ids)] = torch.tensor(it.segment_ids)
        s, e = it.question_span
        out["question_index"][b, : e - s] = torch.arange(s, e)
        out["question_mask"][b, : e - s] = True
        out["question_knowledge"][b, : e - s] = torch.tensor(it.question_knowledge)
        out["header_knowledge"][b, : it.num_columns] = torch.tensor(it.header_knowledge)
        out["column_mask"][b, : it.num_columns] = True
        for c, (cs, ce) in enumerate(it.column_spans):
            out["column_index"][b, c, : ce - cs] = torch.arange(cs, ce)
            out["column_token_mask"][b, c, : ce - cs] = True
    return out
