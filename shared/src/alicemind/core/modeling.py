"""``from_pretrained`` / ``save_pretrained`` for every family model, in the Hugging Face manner.

A family model subclasses :class:`PreTrainedModel`, sets ``config_class`` and implements
``export_state_dict`` / ``import_state_dict`` when its file keys (the peer's names) differ from its module names,
and ``read_checkpoint`` to recognise the released formats of its family.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from alicemind.core.config import CONFIG_NAME, ModelConfig

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
M = TypeVar("M", bound="PreTrainedModel")


@dataclass
class LoadedCheckpoint:
    """What a family's reader found: the config, weights in the model's own key names, and the format's name."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    source_format: str
    ignore_missing: tuple[str, ...] = ()
    ignore_unexpected: tuple[str, ...] = ()


def init_bert_weights(
    model: nn.Module,
    std: float,
    *,
    zero_padding_rows: bool = True,
    other: Callable[[nn.Module], None] | None = None,
) -> None:
    """BERT's initialisation, shared by every family: normal(0, ``std``) for linear and embedding weights, zero
    biases (and padding rows, unless ``zero_padding_rows=False``), unit LayerNorms. ``other(module)`` is called
    for every other module in the same walk, so a family's extra parameters draw from the RNG in module order."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if zero_padding_rows and isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif other is not None:
            other(module)


class PreTrainedModel(nn.Module):
    """Base of every family model: config handling, safetensors IO and strict, explained loading."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    # Regexes of our own keys that a checkpoint may legitimately lack (e.g. a head being fine-tuned).
    optional_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.source_format: str | None = None

    # -- key translation (identity by default) -------------------------------------------------------------------
    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under the names written to ``model.safetensors`` (the peer's names where one exists)."""
        return self.state_dict()

    @classmethod
    def import_state_dict(cls, state_dict: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`export_state_dict`: file names -> this class's module names."""
        return state_dict

    # -- IO ---------------------------------------------------------------------------------------------------------
    def save_pretrained(
        self, directory: str | os.PathLike, *, overwrite: bool = False, model_card: bool | Sequence[str] = False
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (tied weights stored once) into ``directory``.

        The folder is assembled beside ``directory`` and renamed into place (:func:`alicemind.core.io.atomic_folder`):
        an old folder is replaced whole, except its tokenizer files, which are kept. A folder holding files that
        no save writes is refused unless ``overwrite=True``. ``model_card=True`` (or a list of checks the caller
        ran) also writes a ``README.md`` model card (:mod:`alicemind.core.interop.card`).
        """
        from alicemind.core.checkpoint import save_safetensors
        from alicemind.core.io import atomic_folder, register_saved_files, tokenizer_file_names

        path = Path(directory)
        tensors = {k: v.detach().cpu() for k, v in self.export_state_dict().items()}
        if model_card:
            register_saved_files("README.md")  # the card this save writes replaces an older one
        with atomic_folder(path, keep=tokenizer_file_names(), overwrite=overwrite) as staging:
            self.config.save_pretrained(staging)
            metadata = {"format": "pt", "model_class": type(self).__name__}
            save_safetensors(tensors, staging / WEIGHTS_NAME, metadata=metadata)
            if model_card:
                from alicemind.core.interop.card import saved_weights_check, write_model_card

                checks = [saved_weights_check(staging / WEIGHTS_NAME, tensors)]
                checks += [] if model_card is True else list(model_card)
                write_model_card(staging, self, checks=checks)
        return path

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        """Recognise and read a checkpoint; the base class reads only our own folder layout."""
        from alicemind.core.checkpoint import load_state_dict_file

        if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{path} has no {CONFIG_NAME} + {WEIGHTS_NAME}")
        config = cls.config_class.from_json_file(path / CONFIG_NAME, **config_overrides)
        state = cls.import_state_dict(load_state_dict_file(path / WEIGHTS_NAME), config)
        return LoadedCheckpoint(config, state, "alicemind")

    @classmethod
    def from_pretrained(cls: type[M], name_or_path: str | os.PathLike, **config_overrides: Any) -> M:
        """Build the model and load weights strictly; ``model.source_format`` names the format that was found.

        Keys that the checkpoint lacks are an error unless they match ``optional_keys`` (task heads that are
        freshly initialised when loading a backbone); keys it has but the model does not are always an error,
        except those the reader marks as known-unused (e.g. another head of a multi-head release).
        """
        from alicemind.core.checkpoint import load_into_model

        path = Path(name_or_path)
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {path}")
        loaded = cls.read_checkpoint(path, **config_overrides)
        model = cls(loaded.config)
        layer_sizes = getattr(loaded.config, "extra", {}).get("layer_sizes")
        if layer_sizes:  # a structurally pruned model: per-layer head counts / FFN widths (core.layers.layer_sizes)
            from alicemind.core.layers.layer_sizes import apply_layer_sizes

            apply_layer_sizes(model, layer_sizes)
        missing_ok = tuple(cls.optional_keys) + tuple(loaded.ignore_missing)
        load_into_model(model, loaded.state_dict, ignore_missing=missing_ok, ignore_unexpected=loaded.ignore_unexpected)
        fresh = sorted(k for k in model.state_dict() if k not in loaded.state_dict)
        if fresh:
            logger.warning(
                "%s: %d weight(s) not in %s were newly initialised (train them before use): %s",
                cls.__name__,
                len(fresh),
                path,
                fresh[:10] + (["..."] if len(fresh) > 10 else []),
            )
        model.source_format = loaded.source_format
        logger.info("loaded %s from %s (%s format)", cls.__name__, path, loaded.source_format)
        return model

    def num_parameters(self, *, trainable_only: bool = False) -> int:
        """Parameter count (tied tensors counted once)."""
        seen, total = set(), 0
        for p in self.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total
