"""Model cards: the ``README.md`` of a saved folder (architecture, source release, conversion, licence, how to
load it, and the checks it passed), in the Hugging Face layout (YAML front matter, then Markdown).

Transformers-free; written by ``save_pretrained(..., model_card=True)`` and by the transformers wrappers' save.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CARD_NAME = "README.md"
_SHOWN_FIELDS = (
    "architecture",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "dec_hidden_layers",
    "max_position_embeddings",
)


def model_card(
    model: Any,
    *,
    checks: Sequence[str] = (),
    source: str | None = None,
    license: str | None = None,
) -> str:
    """The card's text for ``model`` (one of our ``PreTrainedModel``\\ s).

    ``source`` names the release it came from (default: the hub entry whose family and format match the one it
    was read from, if any) and ``license`` its licence (default: that entry's). ``checks`` are lines saying what
    was verified (e.g. "transformers AutoModel: identical outputs").
    """
    from alicemind.core.interop.spec import AUTO_CLASSES, registered_specs

    config = model.config
    cls = type(model)
    family = getattr(config, "family", "") or config.model_type
    entry = _release_entry(family, getattr(model, "source_format", None), source)
    license = license or (entry.license if entry is not None else None) or "unknown"
    source_text = source or (f"{entry.name} ({entry.url or 'on request'})" if entry is not None else "not recorded")
    spec = registered_specs().get(config.model_type)
    task = next((t for t, c in (spec.models.items() if spec else ()) if c is cls), None)
    sizes = {k: getattr(config, k) for k in _SHOWN_FIELDS if hasattr(config, k)}
    lines = [
        "---",
        f"license: {license.lower() if license != 'unknown' else 'other'}",
        "library_name: alicemind",
        f"tags: [alicemind, {family}]",
        "---",
        "",
        f"# {cls.__name__} ({family})",
        "",
        "## Architecture",
        f"- class `{cls.__module__}.{cls.__name__}`, model_type `{config.model_type}`"
        + (f", task `{task}`" if task else ""),
        f"- {model.num_parameters():,} parameters; " + ", ".join(f"{k} {v}" for k, v in sizes.items()),
        "",
        "## Source release and conversion",
        f"- source release: {source_text}",
        f"- read from: {getattr(model, 'source_format', None) or 'built in this process (not converted)'}",
        f"- licence: {license}",
        "",
        "## How to load",
        "```python",
        f"from {cls.__module__.rsplit('.', 1)[0]} import {cls.__name__}",
        f"model = {cls.__name__}.from_pretrained('PATH')",
        "```",
    ]
    if spec is not None:
        if spec.peer:
            lines.append(
                f"transformers loads it as its own `{spec.peer}` classes (`AutoModel.from_pretrained('PATH')`)."
            )
        else:
            package = cls.__module__.rsplit(".", 1)[0]
            auto = AUTO_CLASSES[task] if task else "AutoModel"
            lines.append(f"With transformers: `import {package}`, then `{auto}.from_pretrained('PATH')`.")
        lines.append(f"ONNX: `alicemind export onnx PATH OUT_DIR{f' --task {task}' if task else ''}`.")
    lines += ["", "## Checks passed"]
    lines += [f"- {check}" for check in checks] or ["- none recorded"]
    lines += ["", "## Config", "```json", json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str), "```"]
    return "\n".join(lines) + "\n"


def _release_entry(family: str, source_format: str | None, source: str | None):
    try:
        from alicemind.core.hub import list_checkpoints
    except ImportError:
        return None
    entries = list_checkpoints(family=family)
    for entry in entries:
        if entry.name == source or (source is None and source_format and entry.format == source_format):
            return entry
    return None


def write_model_card(folder: str | Path, model: Any, **kwargs: Any) -> Path:
    """Write :func:`model_card` as ``README.md`` into ``folder`` (through a rename, never half-written)."""
    from alicemind.core.io import atomic_write_text, register_saved_files

    register_saved_files(CARD_NAME)  # a later save in this process may replace the card it wrote
    return atomic_write_text(Path(folder) / CARD_NAME, model_card(model, **kwargs))


def saved_weights_check(weights_file: str | Path, tensors: dict[str, Any]) -> str:
    """Re-read ``weights_file`` and compare it with ``tensors``: the card's line, or ``ValueError`` on a mismatch."""
    import torch

    from alicemind.core.checkpoint import load_state_dict_file

    stored = load_state_dict_file(Path(weights_file))
    if set(stored) != set(tensors) or not all(torch.equal(stored[k], tensors[k]) for k in tensors):
        raise ValueError(f"{weights_file} does not hold the weights just saved")
    return f"{Path(weights_file).name} re-read: all {len(tensors)} tensors equal the model's"
