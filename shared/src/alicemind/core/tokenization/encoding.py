"""`BatchEncoding` and the sequence-level rules every tokenizer shares: truncation, padding, tensor conversion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

TruncationArg = bool | Literal["longest_first", "only_first", "only_second", "do_not_truncate"]
PaddingArg = bool | Literal["longest", "max_length", "do_not_pad"]

TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
PADDING_STRATEGIES = ("longest", "max_length")

# One tokenized text before special tokens: ids and, when asked for, (start, end) character offsets.
RawEncoding = tuple[list[int], list[tuple[int, int]] | None]


class BatchEncoding(dict):
    """The output of a tokenizer call: a dict of model inputs (lists or tensors), also readable as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {name!r}; fields are {sorted(self)}") from None

    def to(self, device: Any) -> BatchEncoding:
        """Move every tensor field to `device` (in place) and return self, as Hugging Face does."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


def resolve_truncation(truncation: TruncationArg | None) -> str | None:
    """Map the user-facing `truncation` argument to a strategy name, or None for no truncation."""
    if truncation is None or truncation is False or truncation == "do_not_truncate":
        return None
    if truncation is True:
        return "longest_first"
    if isinstance(truncation, str) and truncation in TRUNCATION_STRATEGIES:
        return truncation
    raise ValueError(f"truncation must be a bool or one of {TRUNCATION_STRATEGIES}, got {truncation!r}")


def resolve_padding(padding: PaddingArg | None) -> str | None:
    """Map the user-facing `padding` argument to a strategy name, or None for no padding."""
    if padding is None or padding is False or padding == "do_not_pad":
        return None
    if padding is True:
        return "longest"
    if isinstance(padding, str) and padding in PADDING_STRATEGIES:
        return padding
    raise ValueError(f"padding must be a bool or one of {PADDING_STRATEGIES}, got {padding!r}")


def truncation_lengths(len_a: int, len_b: int | None, budget: int, strategy: str) -> tuple[int, int | None]:
    """How many tokens of each sequence to keep so that together they fit `budget`.

    Mirrors the Rust `tokenizers` rules so results match Hugging Face fast tokenizers exactly: `longest_first`
    on a pair shortens the longer side down to the shorter one's length, then splits the budget evenly (the
    originally longer side gets the odd token); `only_first`/`only_second` cut one side and fail if it cannot
    absorb the whole excess.
    """
    total = len_a + (len_b or 0)
    if total <= budget:
        return len_a, len_b
    excess = total - budget
    if strategy == "longest_first":
        if len_b is None:
            return budget, None
        short, long_ = sorted((len_a, len_b))
        keep_long = short if short > budget else max(short, budget - short)
        keep_short = short
        if keep_short + keep_long > budget:
            keep_short, keep_long = budget // 2, budget // 2 + budget % 2
        return (keep_short, keep_long) if len_a <= len_b else (keep_long, keep_short)
    if strategy == "only_second" and len_b is None:
        raise ValueError("truncation='only_second' needs a text_pair; use 'longest_first' or 'only_first' for one text")
    side, length = ("first", len_a) if strategy == "only_first" else ("second", len_b)
    if length <= excess:
        raise ValueError(
            f"truncation={strategy!r} must remove {excess} tokens but the {side} sequence has only {length}; "
            "use truncation='longest_first' or a larger max_length"
        )
    return (len_a - excess, len_b) if strategy == "only_first" else (len_a, len_b - excess)


def cut(values: list, keep: int, side: str) -> list:
    """Keep `keep` items from the right end ("left" truncation) or the left end ("right" truncation)."""
    if keep >= len(values):
        return values
    return values[len(values) - keep :] if side == "left" else values[:keep]


def padded_length(lengths: Sequence[int], mode: str | None, max_length: int | None, multiple_of: int | None) -> int:
    """The common length a batch is padded to (0 when no padding is requested)."""
    if mode is None:
        return 0
    target = max(lengths, default=0) if mode == "longest" else int(max_length)  # type: ignore[arg-type]
    if multiple_of:
        target = -(-target // multiple_of) * multiple_of
    return target


def pad_rows(rows: list[list], target: int, value: Any, side: str) -> list[list]:
    """Pad each row to `target` with `value` on `side`; rows already that long are returned unchanged."""
    if side == "left":
        return [[value] * (target - len(row)) + row for row in rows]
    return [row + [value] * (target - len(row)) for row in rows]


def to_tensors(fields: dict[str, list], return_tensors: str | None) -> dict[str, Any]:
    """Convert batched list fields to tensors; every row must have the same length."""
    if return_tensors is None:
        return fields
    if return_tensors != "pt":
        raise ValueError(f"return_tensors must be None or 'pt', got {return_tensors!r}")
    import torch  # imported here so data workers that only need lists skip torch's import cost

    out = {}
    for key, rows in fields.items():
        lengths = {len(row) for row in rows}
        if len(lengths) > 1:
            raise ValueError(
                f"cannot make a tensor from {key!r}: rows have lengths {sorted(lengths)}; pass padding=True "
                "(or padding='max_length' with max_length) to return tensors for a batch of unequal lengths"
            )
        out[key] = torch.tensor(rows, dtype=torch.long)
    return out


def assemble_row(
    a: RawEncoding,
    b: RawEncoding | None,
    *,
    template: tuple[list[int], list[int], list[int]],
    pair_type_id: int,
    strategy: str | None,
    max_length: int | None,
    truncation_side: str,
    index: int | None,
) -> dict[str, list]:
    """Truncate one text (or pair), then add the special tokens (`template` = prefix, pair middle, suffix ids),
    token types, attention and special-token masks and offsets."""
    ids_a, off_a = a
    ids_b, off_b = b if b is not None else (None, None)
    prefix, middle, suffix = template
    n_special = len(prefix) + len(suffix) + (len(middle) if b is not None else 0)
    total = len(ids_a) + (len(ids_b) if ids_b is not None else 0) + n_special
    if max_length is not None and total > max_length:
        if strategy is None:
            which = "the input" if index is None else f"batch item {index}"
            raise ValueError(
                f"{which} has {total} tokens, more than max_length={max_length}; pass truncation=True "
                "(or 'only_first' / 'only_second') to cut it, or raise max_length"
            )
        if max_length < n_special:
            raise ValueError(f"max_length={max_length} cannot even hold the {n_special} special tokens")
        keep_a, keep_b = truncation_lengths(
            len(ids_a), None if ids_b is None else len(ids_b), max_length - n_special, strategy
        )
        ids_a, off_a = (
            cut(ids_a, keep_a, truncation_side),
            None if off_a is None else cut(off_a, keep_a, truncation_side),
        )
        if ids_b is not None:
            ids_b = cut(ids_b, keep_b, truncation_side)  # type: ignore[arg-type]
            off_b = None if off_b is None else cut(off_b, keep_b, truncation_side)  # type: ignore[arg-type]

    # (ids, offsets, is_special) pieces of each segment; the second segment gets `pair_type_id`.
    first: list[tuple[list[int], list | None, bool]] = [(prefix, None, True), (ids_a, off_a, False)]
    second: list[tuple[list[int], list | None, bool]] = []
    if ids_b is None:
        first.append((suffix, None, True))
    else:
        first.append((middle, None, True))
        second = [(ids_b, off_b, False), (suffix, None, True)]
    pieces = first + second
    n_first = sum(len(piece) for piece, _, _ in first)
    ids = [i for piece, _, _ in pieces for i in piece]
    row = {
        "input_ids": ids,
        "token_type_ids": [0] * n_first + [pair_type_id] * (len(ids) - n_first),
        "attention_mask": [1] * len(ids),
        "special_tokens_mask": [int(special) for piece, _, special in pieces for _ in piece],
    }
    if off_a is not None:
        row["offset_mapping"] = [
            pair for piece, offs, _ in pieces for pair in (offs if offs is not None else [(0, 0)] * len(piece))
        ]
    return row
