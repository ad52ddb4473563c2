"""Dynamic padding: a batch is padded to its own longest sequence, not to a global maximum."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

LABEL_PAD_ID = -100  # ignored by torch.nn.functional.cross_entropy


def _is_label_key(key: str) -> bool:
    return key == "labels" or key == "label" or key.endswith("_labels") or key.endswith("_label")


class DataCollatorWithPadding:
    """Turn a list of feature dicts into a dict of tensors, padding sequence fields to the batch maximum.

    Sequence fields (lists, 1-D arrays or tensors) are right-padded: ``input_ids`` (and any ``*input_ids``) with
    ``pad_token_id``, label fields (``labels``, ``*_labels``) with -100, everything else with 0. An
    ``attention_mask`` (1 = real token) is built from the ``input_ids`` lengths unless the features carry one.
    Scalar fields are stacked. Integer fields become int64 tensors, floating ones float32.

    ``bucket_lengths`` (opt-in, e.g. core.ops.compiling's ``DEFAULT_BUCKETS``) pads the batch width up to the
    smallest bucket that holds it (a multiple of the largest beyond it), so a compiled model sees a handful of
    shapes; ``pad_to_multiple_of`` then rounds that up. The new positions are padding, masked like any other.
    """

    def __init__(
        self,
        pad_token_id: int,
        *,
        pad_to_multiple_of: int | None = None,
        label_pad_id: int = LABEL_PAD_ID,
        padding_values: Mapping[str, int | float] | None = None,
        bucket_lengths: Sequence[int] | None = None,
    ) -> None:
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of}")
        if bucket_lengths is not None:
            bucket_lengths = tuple(bucket_lengths)
            if not bucket_lengths or list(bucket_lengths) != sorted(set(bucket_lengths)) or bucket_lengths[0] < 1:
                raise ValueError(f"bucket_lengths must be increasing positive lengths, got {list(bucket_lengths)}")
        self.bucket_lengths = bucket_lengths
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.label_pad_id = label_pad_id
        self.padding_values = dict(padding_values or {})

    def pad_value(self, key: str) -> int | float:
        """The value used to pad field ``key``."""
        if key in self.padding_values:
            return self.padding_values[key]
        if key.endswith("input_ids"):
            return self.pad_token_id
        if _is_label_key(key):
            return self.label_pad_id
        return 0

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        keys = list(features[0])
        for i, feature in enumerate(features):
            if set(feature) != set(keys):
                raise ValueError(f"feature {i} has fields {sorted(feature)}, expected {sorted(keys)}")
        batch: dict[str, torch.Tensor] = {}
        for key in keys:
            values = [np.asarray(f[key]) for f in features]
            ndim = {v.ndim for v in values}
            if ndim == {0}:
                batch[key] = torch.as_tensor(np.stack(values)).to(_dtype_for(values))
            elif ndim == {1}:
                batch[key] = self._pad(key, values)
            else:
                raise ValueError(f"field {key!r} must be a scalar or a 1-D sequence in every feature, got ndims {ndim}")
        if "attention_mask" not in batch and "input_ids" in batch:
            lengths = torch.tensor([len(f["input_ids"]) for f in features])
            width = batch["input_ids"].shape[1]
            batch["attention_mask"] = (torch.arange(width)[None, :] < lengths[:, None]).long()
        return batch

    def _pad(self, key: str, values: list[np.ndarray]) -> torch.Tensor:
        width = max(len(v) for v in values)
        if self.bucket_lengths:
            from alicemind.core.ops.compiling import bucket_length

            width = bucket_length(max(width, 1), self.bucket_lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        dtype = _dtype_for(values)
        out = torch.full((len(values), width), self.pad_value(key), dtype=dtype)
        for row, value in enumerate(values):  # one copy per example; the copy itself is vectorised
            out[row, : len(value)] = torch.from_numpy(value.astype(_NUMPY[dtype], copy=False))
        return out


_NUMPY = {torch.int64: np.int64, torch.float32: np.float32, torch.bool: np.bool_}


def _dtype_for(values: list[np.ndarray]) -> torch.dtype:
    kinds = {v.dtype.kind for v in values if v.size}
    if kinds <= {"b"} and kinds:
        return torch.bool
    if kinds & {"f"}:
        return torch.float32
    if kinds <= {"i", "u", "b"}:
        return torch.int64
    raise ValueError(f"cannot make a tensor from values of dtype kinds {sorted(kinds)}")
