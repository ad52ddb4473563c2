"""Reading fairseq checkpoints and dictionaries without fairseq (which does not import on Python 3.11)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint.errors import CheckpointError, CorruptCheckpointError
from alicemind.core.checkpoint.torch_files import load_checkpoint_object

__all__ = ["FAIRSEQ_SPECIAL_SYMBOLS", "load_fairseq_checkpoint", "read_fairseq_dictionary"]

# fairseq.data.Dictionary always starts with these, in this order (bos=0, pad=1, eos=2, unk=3).
FAIRSEQ_SPECIAL_SYMBOLS = ("<s>", "<pad>", "</s>", "<unk>")
_OVERWRITE_FLAG = "#fairseq:overwrite"
# Order in which the sections of a fairseq >= 0.10 `cfg` are flattened; later sections win on a name clash.
_CFG_SECTIONS = ("common", "common_eval", "distributed_training", "dataset", "optimization", "checkpoint",
                 "bmuf", "generation", "eval_lm", "interactive", "criterion", "optimizer", "lr_scheduler",
                 "bpe", "tokenizer", "task", "model")  # fmt: skip


def _flatten_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    ordered = [s for s in _CFG_SECTIONS if s in cfg] + [s for s in cfg if s not in _CFG_SECTIONS]
    for section in ordered:
        value = cfg[section]
        if isinstance(value, Mapping):
            flat.update(value)
        elif value is not None:
            flat[section] = value
    return flat


def load_fairseq_checkpoint(
    path: str | os.PathLike[str], *, map_location: Any = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a fairseq checkpoint: returns ``(state_dict, args)``.

    ``args`` is the pickled ``argparse.Namespace`` of fairseq <= 0.9 as a dict, or, for fairseq >= 0.10, the
    ``cfg`` sections flattened into one dict (the same flat option names the old ``args`` had; ``model`` wins on a
    clash). Loaded with the restricted unpickler: nothing from the file is executed.
    """
    path = Path(path)
    obj = load_checkpoint_object(path, map_location=map_location)
    if not isinstance(obj, Mapping) or "model" not in obj:
        found = list(obj)[:20] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{path} is not a fairseq checkpoint: no 'model' entry (found {found})")
    state_dict = obj["model"]
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: 'model' holds non-tensor entries {bad[:10]}")
    args = obj.get("args")
    if isinstance(args, Mapping):
        args_dict = dict(args)
    elif isinstance(obj.get("cfg"), Mapping):
        args_dict = _flatten_cfg(obj["cfg"])
    else:
        raise CheckpointError(f"{path} has neither an 'args' namespace nor a 'cfg' dict")
    return dict(state_dict), args_dict


def read_fairseq_dictionary(path: str | os.PathLike[str]) -> list[str]:
    """Read a fairseq ``dict.txt`` (``<token> <count>`` per line) into the full symbol list.

    The list starts with fairseq's ``<s> <pad> </s> <unk>``, so a symbol's index is its fairseq id. A line ending in
    ``#fairseq:overwrite`` may repeat a symbol (fairseq then appends it again); any other repeat is an error.
    """
    path = Path(path)
    symbols = list(FAIRSEQ_SPECIAL_SYMBOLS)
    seen = set(symbols)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptCheckpointError(f"cannot read fairseq dictionary {path}: {exc}") from exc
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip()
        if not line:
            continue
        overwrite = False
        parts = line.rsplit(" ", 1)
        if len(parts) == 2 and parts[1] == _OVERWRITE_FLAG:
            overwrite = True
            parts = parts[0].rsplit(" ", 1)
        if len(parts) != 2:
            raise CorruptCheckpointError(f"{path}:{lineno}: expected '<token> <count>', got {line!r}")
        token, count = parts
        try:
            int(count)
        except ValueError:
            raise CorruptCheckpointError(f"{path}:{lineno}: count {count!r} is not an integer") from None
        if token in seen and not overwrite:
            raise CorruptCheckpointError(
                f"{path}:{lineno}: duplicate symbol {token!r} (add '{_OVERWRITE_FLAG}' to the line if intended)"
            )
        symbols.append(token)
        seen.add(token)
    return symbols
