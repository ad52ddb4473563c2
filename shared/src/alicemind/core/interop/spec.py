"""What a family exposes to other tools, as data: its config class and one model class per task.

Transformers-free: a family registers its :class:`FamilySpec` at import (cheap); the transformers Auto classes
(:mod:`alicemind.core.interop.hf`) and the ONNX exporter (:mod:`alicemind.core.interop.onnx_export`) read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from alicemind.core.config import CONFIG_NAME, ModelConfig, read_json_file

# Tasks a family's model class can serve, each with its outputs under transformers' field names and where each
# comes from in our output: an attribute, or (attribute, i) for item i of a tuple (our QA heads return
# (start, end) logits). An empty table (pretraining) keeps our own field names.
TASK_OUTPUTS: dict[str, dict[str, str | tuple[str, int]]] = {
    "base": {"last_hidden_state": "last_hidden_state", "pooler_output": "pooler_output"},
    "pretraining": {},
    "masked-lm": {"logits": ("logits", 0)},
    "sequence-classification": {"logits": "logits"},
    "token-classification": {"logits": "logits"},
    "question-answering": {"start_logits": ("logits", 0), "end_logits": ("logits", 1)},
    "multiple-choice": {"logits": "logits"},
    "seq2seq-lm": {"logits": "logits", "encoder_last_hidden_state": "encoder_hidden_state"},
    "visual-question-answering": {"logits": "logits"},
    "image-text-to-text": {},
}
TASK_NAMES = tuple(TASK_OUTPUTS)
# transformers' Auto class that serves each task.
AUTO_CLASSES = {
    "base": "AutoModel",
    "pretraining": "AutoModelForPreTraining",
    "masked-lm": "AutoModelForMaskedLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "multiple-choice": "AutoModelForMultipleChoice",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "visual-question-answering": "AutoModelForVisualQuestionAnswering",
    "image-text-to-text": "AutoModelForImageTextToText",
}


def output_values(out: Any, task: str, *, with_loss: bool = False) -> dict[str, Any]:
    """Our model's output as ``{transformers field name: value}`` for ``task`` (None values left out).

    A bare tensor is the task's first field (PALM's encoder-decoder base returns the decoder states).
    """
    table = TASK_OUTPUTS[task]
    if isinstance(out, torch.Tensor):
        return {next(iter(table), "last_hidden_state"): out}
    if not table:
        values = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
        return {k: v for k, v in values.items() if v is not None}
    values = {"loss": getattr(out, "loss", None)} if with_loss else {}
    for field, source in table.items():
        if isinstance(source, tuple):
            name, index = source
            value = getattr(out, name, None)
            value = value[index] if isinstance(value, (tuple, list)) else (value if index == 0 else None)
        else:
            value = getattr(out, source, None)
        values[field] = value
    return {k: v for k, v in values.items() if v is not None}


class UnknownModelTypeError(LookupError):
    """A folder's model_type is not one an installed family registered."""


class NoHeadError(LookupError):
    """A task the folder's family has no model (head) for."""


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    """A family's config class and, per task of :data:`TASK_NAMES`, its model class.

    ``peer`` names the transformers model_type whose classes load the family's folders unchanged (``bert`` for
    StructBERT): such a family is not registered with transformers, whose own classes serve it.
    """

    config_class: type[ModelConfig]
    models: Mapping[str, type]
    peer: str = ""
    is_encoder_decoder: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.models) - set(TASK_NAMES))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {list(TASK_NAMES)}")

    @property
    def model_type(self) -> str:
        """The ``model_type`` our folders' config.json carries."""
        return self.config_class.model_type

    def model_class(self, task: str) -> type:
        """The model class serving ``task``; :class:`NoHeadError` naming the tasks there are otherwise."""
        if task not in self.models:
            raise NoHeadError(
                f"{self.config_class.__name__} models have no {task!r} head; tasks: {sorted(self.models)}"
            )
        return self.models[task]


_SPECS: dict[str, FamilySpec] = {}


def add_spec(spec: FamilySpec) -> None:
    """Record ``spec`` under its model_type; another family claiming the same model_type is an error."""
    old = _SPECS.get(spec.model_type)
    if old is not None and old.config_class is not spec.config_class:
        raise ValueError(f"model_type {spec.model_type!r} is registered by {old.config_class.__name__} already")
    _SPECS[spec.model_type] = spec


def registered_specs() -> dict[str, FamilySpec]:
    """model_type -> spec of every family imported so far."""
    return dict(_SPECS)


def spec_for_folder(folder: str | Path) -> FamilySpec:
    """The spec of the family whose model a saved folder holds (read from its config.json's model_type)."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"no model folder at {path}")
    if not (path / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{path} has no {CONFIG_NAME}: not a saved model folder")
    data = read_json_file(path / CONFIG_NAME)
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type not in _SPECS:
        raise UnknownModelTypeError(
            f"{path}: model_type {model_type!r} is not one of an installed family's ({sorted(_SPECS)})"
        )
    return _SPECS[model_type]
