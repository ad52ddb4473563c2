"""Our families as ``transformers`` models: config and model wrappers registered with the public Auto API.

A family describes itself as data (:class:`FamilySpec`: its config class and one model class per task) and calls
:func:`register_family`. That builds

* a ``PreTrainedConfig`` subclass whose ``model_type`` is ours, holding every field of our config, and
* per task, a ``PreTrainedModel`` subclass named like our class that owns our model as ``.alicemind``, loads a
  folder with our strict ``from_pretrained`` (never transformers' lenient loader, so the weights are exactly
  ours), and returns our outputs as transformers ``ModelOutput``\\ s with the usual field names,

and registers them through ``AutoConfig.register`` / ``AutoModel...register`` only (no private maps). This
module imports transformers; :func:`alicemind.core.interop.register_family` reaches it through an import hook.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, PreTrainedConfig, PreTrainedModel
from transformers import modeling_outputs as outs
from transformers.utils import ModelOutput

from alicemind.core.config import ModelConfig
from alicemind.core.interop.spec import AUTO_CLASSES, TASK_NAMES, TASK_OUTPUTS, FamilySpec, output_values
from alicemind.core.modeling import PreTrainedModel as AliceMindModel

# Task -> transformers output class; the fields and their sources are spec.TASK_OUTPUTS, the Auto classes
# spec.AUTO_CLASSES.
OUTPUT_CLASSES: dict[str, type[ModelOutput]] = {
    "base": outs.BaseModelOutputWithPooling,
    "pretraining": ModelOutput,
    "masked-lm": outs.MaskedLMOutput,
    "sequence-classification": outs.SequenceClassifierOutput,
    "token-classification": outs.TokenClassifierOutput,
    "question-answering": outs.QuestionAnsweringModelOutput,
    "multiple-choice": outs.MultipleChoiceModelOutput,
    "seq2seq-lm": outs.Seq2SeqLMOutput,
    "visual-question-answering": outs.SequenceClassifierOutput,
    "image-text-to-text": ModelOutput,
}
if set(OUTPUT_CLASSES) != set(TASK_NAMES):
    raise RuntimeError(f"interop.hf knows tasks {sorted(OUTPUT_CLASSES)}, interop.spec {sorted(TASK_NAMES)}")
# Keyword arguments transformers' Auto classes and pipelines pass that mean nothing for a local folder.
_HUB_KWARGS = frozenset(
    {
        "_from_auto",
        "_from_pipeline",
        "adapter_kwargs",
        "cache_dir",
        "code_revision",
        "force_download",
        "local_files_only",
        "proxies",
        "revision",
        "subfolder",
        "token",
        "trust_remote_code",
        "use_safetensors",
    }
)


def register_with_transformers(spec: FamilySpec) -> dict[str, type[PreTrainedModel]]:
    """Register ``spec`` with ``AutoConfig`` and the Auto model class of each task; returns the wrapper classes.

    Registering the same family again is a no-op returning the classes it has.
    """
    model_type = spec.model_type
    if model_type in _REGISTERED:
        return _REGISTERED[model_type]
    config_class = make_config_class(spec.config_class, model_type, is_encoder_decoder=spec.is_encoder_decoder)
    AutoConfig.register(model_type, config_class)
    wrappers = {}
    for task, our_class in spec.models.items():
        wrapper = make_model_class(our_class, config_class, task)
        getattr(transformers, AUTO_CLASSES[task]).register(config_class, wrapper)
        wrappers[task] = wrapper
    _REGISTERED[model_type] = wrappers
    if spec.is_encoder_decoder:
        from alicemind.core.interop.pipelines import register_pipelines

        register_pipelines()
    return wrappers


_REGISTERED: dict[str, dict[str, type[PreTrainedModel]]] = {}


def registered_families() -> dict[str, dict[str, type[PreTrainedModel]]]:
    """model_type -> {task: wrapper class} of every family registered in this process."""
    return dict(_REGISTERED)


# -- config ------------------------------------------------------------------------------------------------------------
def our_field_names(config_class: type[ModelConfig]) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class) if f.name != "extra"]


def make_config_class(
    our_class: type[ModelConfig], model_type: str, *, is_encoder_decoder: bool = False
) -> type[PreTrainedConfig]:
    """A ``PreTrainedConfig`` with ``model_type`` that carries every field of ``our_class`` (defaults from it)."""
    names = our_field_names(our_class)
    defaults = dataclasses.asdict(our_class()) if _constructible(our_class) else {}

    def __init__(self, **kwargs):
        # Our fields are set after the base init: transformers drops generation fields (eos_token_id, ...) from
        # its kwargs, but they are architecture settings of ours.
        ours = {name: kwargs.pop(name) for name in names if name in kwargs}
        PreTrainedConfig.__init__(self, is_encoder_decoder=is_encoder_decoder, **kwargs)
        for name in names:
            if name in ("num_labels", "id2label", "label2id") and name not in ours:
                continue  # transformers' own defaults stand
            value = ours.get(name, defaults.get(name))
            if name == "id2label" and value is not None:
                value = {int(k): v for k, v in value.items()}
            setattr(self, name, value)

    def to_alicemind(self) -> ModelConfig:
        """Our config with this config's values (transformers' int label ids written back as strings)."""
        values = {name: getattr(self, name) for name in names if hasattr(self, name)}
        # transformers answers None for label fields it does not hold (num_labels without id2label): ours stand.
        values = {k: v for k, v in values.items() if v is not None or defaults.get(k) is None}
        if values.get("id2label") is not None:
            values["id2label"] = {str(k): v for k, v in values["id2label"].items()}
        return our_class.from_dict(values)

    name = our_class.__name__.removesuffix("Config") + "HFConfig"
    body = {"model_type": model_type, "__init__": __init__, "to_alicemind": to_alicemind, "__module__": __name__}
    return type(name, (PreTrainedConfig,), body)


def _constructible(cls: type) -> bool:
    try:
        cls()
    except (TypeError, ValueError):  # required fields, or defaults its checks refuse: transformers' (none) stand
        return False
    return True


# -- models ------------------------------------------------------------------------------------------------------------
def make_model_class(
    our_class: type[AliceMindModel], config_class: type[PreTrainedConfig], task: str
) -> type[PreTrainedModel]:
    """A transformers model class for ``task`` around ``our_class`` (same class name, our weights and outputs)."""
    body = {
        "config_class": config_class,
        "alicemind_class": our_class,
        "alicemind_task": task,
        "base_model_prefix": "alicemind",
        "main_input_name": "input_ids",
        # The family's interop module (alicemind.<family>.interop), not our class's: the names are the same.
        "__module__": our_class.__module__.rpartition(".")[0] + ".interop",
        "__qualname__": our_class.__name__,
        "__doc__": f"transformers view of :class:`{our_class.__module__}.{our_class.__name__}` ({task}).",
    }
    bases: tuple[type, ...] = (AliceMindHFModel,)
    if hasattr(our_class, "decode_step"):
        bases = (AliceMindHFSeq2Seq,)
    elif callable(getattr(our_class, "generate", None)):
        bases = (AliceMindHFGenerates,)
    return type(our_class.__name__, bases, body)


class AliceMindHFModel(PreTrainedModel):
    """Base of the generated wrappers: owns our model as ``self.alicemind`` and translates the interface."""

    alicemind_class: type[AliceMindModel]
    alicemind_task: str = "base"

    def __init__(self, config: PreTrainedConfig, *, alicemind_model: AliceMindModel | None = None):
        super().__init__(config)
        self.alicemind = alicemind_model if alicemind_model is not None else self.alicemind_class(config.to_alicemind())
        self.post_init()

    def _init_weights(self, module) -> None:
        """Nothing: our model initialised its own weights (or they were loaded) when it was built."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs):
        """Load ``pretrained_model_name_or_path`` (a local folder) strictly with our ``from_pretrained``.

        A ``config`` passed by an Auto class or a caller overrides the folder's fields where it differs.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes no positional model arguments")
        config = kwargs.pop("config", None)
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        device_map = kwargs.pop("device_map", None)
        unknown = sorted(set(kwargs) - _HUB_KWARGS)
        if unknown:
            raise TypeError(f"{cls.__name__}.from_pretrained does not support {unknown}")
        path = Path(pretrained_model_name_or_path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a local model folder (alicemind models load from folders)")
        if config is None:
            config = cls.config_class.from_pretrained(path)
        folder_config = cls.config_class.from_pretrained(path).to_alicemind()
        wanted = config.to_alicemind()
        overrides = {
            name: getattr(wanted, name)
            for name in our_field_names(type(wanted))
            if getattr(wanted, name) != getattr(folder_config, name)
        }
        ours = cls.alicemind_class.from_pretrained(path, **overrides)
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        if isinstance(dtype, torch.dtype):
            ours = ours.to(dtype)
        if device_map is not None:
            if not isinstance(device_map, (str, torch.device)):
                raise TypeError(f"{cls.__name__} places the whole model on one device; device_map={device_map!r}")
            ours = ours.to(device_map)
        config.name_or_path = str(path)
        model = cls(config, alicemind_model=ours)
        model.eval()
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> Path:
        """Write our folder layout (config.json, model.safetensors with our keys, a README.md model card); a folder
        holding files no save writes is refused, as our own save does; hub arguments are refused."""
        if kwargs.pop("push_to_hub", False):
            raise ValueError("push_to_hub is not supported: save the folder, then upload it")
        kwargs.pop("safe_serialization", None)
        if kwargs:
            raise TypeError(f"save_pretrained does not support {sorted(kwargs)}")
        return self.alicemind.save_pretrained(save_directory, model_card=True)

    def get_input_embeddings(self):
        for module in self.alicemind.modules():
            if hasattr(module, "word_embeddings"):
                return module.word_embeddings
        return None

    def forward(self, *args, return_dict: bool | None = None, output_attentions: bool | None = None, **kwargs):
        """Our forward, its output as a transformers ``ModelOutput`` (``return_dict=False``: a tuple)."""
        if output_attentions:
            raise ValueError(f"{type(self).__name__} does not return attention probabilities (SDPA kernels)")
        if not kwargs.get("output_hidden_states"):
            kwargs.pop("output_hidden_states", None)
        out = self.alicemind(*args, **kwargs)
        converted = to_model_output(out, self.alicemind_task)
        use_dict = return_dict if return_dict is not None else self.config.return_dict
        return converted if use_dict else converted.to_tuple()


def to_model_output(out: Any, task: str) -> ModelOutput:
    """Our model's output as the transformers output class of ``task`` (a generic ``ModelOutput`` otherwise)."""
    values = output_values(out, task, with_loss=True)
    if not isinstance(out, torch.Tensor) and (OUTPUT_CLASSES[task] is ModelOutput or _has_more_states(out, task)):
        # Our own field names (the usual ones where they exist): a task output class would drop the others.
        return _generic_output_class(type(out))(**output_values(out, "pretraining"))
    if task == "base" and isinstance(out, torch.Tensor):
        return outs.BaseModelOutput(**values)
    hidden = getattr(out, "hidden_states", None)
    if hidden is not None and "hidden_states" in OUTPUT_CLASSES[task].__dataclass_fields__:
        values["hidden_states"] = hidden
    return OUTPUT_CLASSES[task](**values)


def _has_more_states(out: Any, task: str) -> bool:
    """Whether ``out`` holds tensors the task's transformers output has no field for (StructVBERT's visual states)."""
    known = set(OUTPUT_CLASSES[task].__dataclass_fields__)
    sources = {s[0] if isinstance(s, tuple) else s for s in TASK_OUTPUTS[task].values()}
    return any(
        isinstance(getattr(out, f.name), torch.Tensor) and f.name not in known | sources
        for f in dataclasses.fields(out)
    )


@functools.cache
def _generic_output_class(our_output: type) -> type[ModelOutput]:
    """A ``ModelOutput`` dataclass with the same fields as one of our output dataclasses."""
    fields = [(f.name, Any, dataclasses.field(default=None)) for f in dataclasses.fields(our_output)]
    cls = dataclasses.make_dataclass(our_output.__name__, fields, bases=(ModelOutput,))
    cls.__module__ = our_output.__module__
    return cls


class AliceMindHFSeq2Seq(AliceMindHFModel):
    """An encoder-decoder wrapper: ``generate`` runs :func:`alicemind.core.generation.generate` on our model."""

    @classmethod
    def can_generate(cls) -> bool:
        return True

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Token ids ``[B, T]`` (decoder start token first, as transformers returns them) from core.generation.

        Accepts transformers' ``generation_config`` and the usual keyword settings (max_new_tokens, num_beams,
        do_sample, top_k, top_p, temperature, length_penalty, no_repeat_ngram_size, min_length, ...).
        """
        from alicemind.core.generation import GenerationConfig, generate

        settings = generation_settings(self.alicemind, kwargs.pop("generation_config", None), kwargs)
        return generate(self.alicemind, input_ids, attention_mask, GenerationConfig(**settings)).sequences


class AliceMindHFGenerates(AliceMindHFModel):
    """A wrapper around a model with its own ``generate`` (mPLUG captioning): transformers' call reaches it."""

    @classmethod
    def can_generate(cls) -> bool:
        return True

    @torch.no_grad()
    def generate(self, *args, **kwargs):
        """Our model's ``generate`` (its own arguments and return value; see the family's documentation)."""
        return self.alicemind.generate(*args, **kwargs)


def generation_settings(model: AliceMindModel, hf_config: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword settings for our ``GenerationConfig``: the model's defaults, then the fields of a transformers
    ``GenerationConfig`` that our engine knows and that differ from transformers' defaults, then ``kwargs``."""
    from alicemind.core.generation import GenerationConfig

    known = {f.name for f in dataclasses.fields(GenerationConfig)}
    settings = dict(model.generation_defaults()) if hasattr(model, "generation_defaults") else {}
    if hf_config is not None:
        default = type(hf_config)().to_dict()
        for name, value in hf_config.to_dict().items():
            if name in known and value is not None and value != default.get(name):
                settings[name] = value
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"generate() got setting(s) core.generation does not have: {unknown}")
    settings.update(kwargs)
    return {k: v for k, v in settings.items() if k in known}
