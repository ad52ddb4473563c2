"""State-dict key mapping and strict loading into a model."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from alicemind.core.checkpoint.errors import CheckpointError, CheckpointMismatchError, format_keys

__all__ = ["rename_keys", "strip_prefix", "detect_prefix", "load_into_model"]

Rule = tuple[str | re.Pattern[str], str]


def _check_collisions(pairs: Iterable[tuple[str, str]], what: str) -> dict[str, str]:
    new_to_old: dict[str, str] = {}
    for old, new in pairs:
        if new in new_to_old:
            raise CheckpointError(f"{what} maps both {new_to_old[new]!r} and {old!r} to {new!r}")
        new_to_old[new] = old
    return new_to_old


def rename_keys(state_dict: Mapping[str, torch.Tensor], rules: Sequence[Rule]) -> dict[str, torch.Tensor]:
    """Rename keys with ``(regex, replacement)`` rules.

    Every rule is applied, in order, to every key with ``re.sub`` (so a later rule sees the output of the earlier
    ones, and a rule that does not match leaves the key unchanged). Raises :class:`CheckpointError` if two keys end up
    with the same name. Example: ``[(r"LayerNorm\\.gamma$", "LayerNorm.weight"), (r"LayerNorm\\.beta$", "LayerNorm.bias")]``.
    """
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]

    def apply(key: str) -> str:
        for pattern, replacement in compiled:
            key = pattern.sub(replacement, key)
        return key

    pairs = [(key, apply(key)) for key in state_dict]
    _check_collisions(pairs, "rename_keys")
    return {new: state_dict[old] for old, new in pairs}


def strip_prefix(
    state_dict: Mapping[str, torch.Tensor],
    prefixes: str | Sequence[str],
    *,
    drop_others: bool = False,
) -> dict[str, torch.Tensor]:
    """Remove the first matching prefix (in the order given) from each key.

    Keys that carry none of the prefixes are kept unchanged, or dropped when ``drop_others`` is true (how the
    StructBERT loader keeps only the encoder out of a fine-tuned checkpoint). Raises :class:`CheckpointError` on a
    name collision.
    """
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    pairs: list[tuple[str, str]] = []
    for key in state_dict:
        for prefix in prefixes:
            if prefix and key.startswith(prefix):
                pairs.append((key, key[len(prefix) :]))
                break
        else:
            if not drop_others:
                pairs.append((key, key))
    _check_collisions(pairs, "strip_prefix")
    return {new: state_dict[old] for old, new in pairs}


def detect_prefix(keys: Iterable[str], candidates: Sequence[str], *, anchor: str | None = None) -> str | None:
    """Find which of ``candidates`` the keys are prefixed with.

    With ``anchor`` (a key known to exist without prefix, e.g. ``"embeddings.word_embeddings.weight"``): the first
    candidate ``p`` such that ``p + anchor`` is a key (``""`` is a valid candidate). Without an anchor: the non-empty
    candidate that prefixes the most keys (ties go to the longer one); ``""`` if no non-empty candidate matches and
    ``""`` is a candidate; otherwise ``None``.
    """
    keys = list(keys)
    if anchor is not None:
        key_set = set(keys)
        for prefix in candidates:
            if prefix + anchor in key_set:
                return prefix
        return None
    counts = {p: sum(1 for k in keys if k.startswith(p)) for p in candidates if p}
    best = max(counts.items(), key=lambda item: (item[1], len(item[0])), default=(None, 0))
    if best[1] > 0:
        return best[0]
    return "" if "" in candidates else None


def _matches_any(key: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    return any(p.search(key) for p in patterns)


def load_into_model(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    ignore_missing: Sequence[str] = (),
    ignore_unexpected: Sequence[str] = (),
) -> None:
    """Load ``state_dict`` into ``model`` strictly.

    ``ignore_missing`` / ``ignore_unexpected`` are regexes (``re.search``) for keys allowed to be absent from the
    checkpoint (e.g. a ``position_ids`` buffer, a tied decoder weight) or present without a place in the model
    (they are not loaded). Any other missing or unexpected key, and any shape mismatch, raises
    :class:`CheckpointMismatchError` naming them; the model is left untouched in that case.
    """
    missing_ok = [re.compile(p) for p in ignore_missing]
    unexpected_ok = [re.compile(p) for p in ignore_unexpected]
    expected = model.state_dict()

    missing = [k for k in expected if k not in state_dict and not _matches_any(k, missing_ok)]
    unexpected = [k for k in state_dict if k not in expected and not _matches_any(k, unexpected_ok)]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {format_keys(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {format_keys(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {format_keys(mismatched)}")
    if problems:
        raise CheckpointMismatchError(f"state dict does not fit {type(model).__name__}: " + "; ".join(problems))

    to_load = {k: v for k, v in state_dict.items() if k in expected}
    result = model.load_state_dict(to_load, strict=False)
    # Re-check what torch reports, in case a module's custom loading hook disagrees with state_dict().
    left_missing = [k for k in result.missing_keys if not _matches_any(k, missing_ok)]
    if left_missing or result.unexpected_keys:
        raise CheckpointMismatchError(
            f"{type(model).__name__}.load_state_dict reported missing {format_keys(left_missing)} "
            f"and unexpected {format_keys(result.unexpected_keys)}"
        )
