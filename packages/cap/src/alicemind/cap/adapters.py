"""Adapters: where a model's attention heads, FFN neurons and sentence representation are.

CAP needs, per transformer layer, the Q/K/V projections, the attention output projection (whose input is the
concatenation of the heads' context vectors), the FFN input and output projections (whose input is the
activation output), and one module whose input is the sentence representation. Two adapters ship: core's
``TransformerBlock`` (any family built on alicemind-core) and Hugging Face BERT-style layers (BERT, RoBERTa,
XLM-R: ``attention.self.query`` ...). For anything else subclass :class:`EncoderAdapter`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class AdapterNotFoundError(ValueError):
    """No adapter recognises the model."""


@dataclass
class LayerHandles:
    """The modules of one transformer layer that CAP touches."""

    attention: nn.Module
    query: nn.Linear | None
    key: nn.Linear | None
    value: nn.Linear | None
    attn_out: nn.Linear
    ffn_in: nn.Linear
    ffn_out: nn.Linear
    num_heads: int
    head_dim: int
    fused_qkv: nn.Linear | None = None  # core blocks with fused q|k|v

    @property
    def intermediate_size(self) -> int:
        return self.ffn_in.out_features

    def attention_linears(self) -> list[nn.Linear]:
        qkv = [self.fused_qkv] if self.fused_qkv is not None else [self.query, self.key, self.value]
        return [*qkv, self.attn_out]

    def linears(self) -> dict[str, nn.Linear]:
        """The six matrices movement pruning masks (the original's MaskedLinear set), by short name."""
        names = ("qkv",) if self.fused_qkv is not None else ("query", "key", "value")
        mats = dict(zip(names, self.attention_linears()[:-1]))
        return {**mats, "attn_out": self.attn_out, "ffn_in": self.ffn_in, "ffn_out": self.ffn_out}


class EncoderAdapter(abc.ABC):
    """Base adapter: subclass with :meth:`layers`, :meth:`representation_module` and :meth:`set_num_heads`."""

    name = "custom"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return False

    @abc.abstractmethod
    def layers(self, model: nn.Module) -> list[LayerHandles]:
        """The handles of every encoder layer, bottom first."""

    @abc.abstractmethod
    def representation_module(self, model: nn.Module) -> tuple[nn.Module, bool]:
        """(module whose first input is the representation, whether to take its first token)."""

    def set_num_heads(self, handles: LayerHandles, count: int) -> None:
        """Record that the layer now has ``count`` heads (after physical pruning); nothing to record by default."""
        return None


def _classifier_input(model: nn.Module) -> tuple[nn.Module, bool] | None:
    """The module whose input is the representation: dropout(pooled) for sequence classification, h_CLS for QA."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):  # HF BERT: classifier(dropout(pooler_output))
        return head, False
    if head is not None and isinstance(getattr(head, "classifiers", None), nn.ModuleList):  # core ClassificationHead
        return head.classifiers[0], False
    if head is not None and isinstance(getattr(head, "dense", None), nn.Linear):  # HF RoBERTa head: dropout(h_CLS)
        return head.dense, False
    for name in ("qa_outputs", "qa"):  # QA: raw h_CLS, no dropout (the original's QA models)
        qa = getattr(model, name, None)
        if isinstance(qa, nn.Linear):
            return qa, True
        if qa is not None and isinstance(getattr(qa, "qa_outputs", None), nn.Linear):
            return qa.qa_outputs, True
    return None


class CoreBlockAdapter(EncoderAdapter):
    """Every ``alicemind.core.layers.TransformerBlock`` without cross-attention (StructBERT, VECO encoder, ...)."""

    name = "alicemind-core"

    @staticmethod
    def _blocks(model: nn.Module) -> list[nn.Module]:
        from alicemind.core.layers import TransformerBlock

        return [m for m in model.modules() if isinstance(m, TransformerBlock) and not m.spec.cross_attention]

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return bool(cls._blocks(model))

    def layers(self, model: nn.Module) -> list[LayerHandles]:
        out = []
        for block in self._blocks(model):
            attn = block.self_attn
            out.append(
                LayerHandles(
                    attention=attn,
                    query=getattr(attn, "q_proj", None),
                    key=getattr(attn, "k_proj", None),
                    value=getattr(attn, "v_proj", None),
                    attn_out=attn.out_proj,
                    ffn_in=block.ffn.fc_in,
                    ffn_out=block.ffn.fc_out,
                    num_heads=attn.num_heads,
                    head_dim=attn.head_dim,
                    fused_qkv=getattr(attn, "qkv_proj", None),
                )  # fmt: skip
            )
        return out

    def representation_module(self, model: nn.Module) -> tuple[nn.Module, bool]:
        found = _classifier_input(model)
        if found is None:
            raise AdapterNotFoundError(
                f"{type(model).__name__} has no 'classifier' or 'qa' head: pass representation=MODULE_NAME"
            )
        return found

    def set_num_heads(self, handles: LayerHandles, count: int) -> None:
        handles.attention.num_heads = count


class HFBertAdapter(EncoderAdapter):
    """Hugging Face BERT-style layers: BERT, RoBERTa, XLM-R, ELECTRA... (``attention.self.query`` etc.)."""

    name = "huggingface-bert"

    @staticmethod
    def _layers(model: nn.Module) -> list[nn.Module]:
        found = []
        for module in model.modules():
            att = getattr(module, "attention", None)
            if (
                att is not None
                and hasattr(getattr(att, "self", None), "query")
                and hasattr(getattr(att, "output", None), "dense")
                and hasattr(getattr(module, "intermediate", None), "dense")
                and hasattr(getattr(module, "output", None), "dense")
                and not getattr(module, "is_decoder", False)
            ):
                found.append(module)
        return found

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return bool(cls._layers(model))

    def layers(self, model: nn.Module) -> list[LayerHandles]:
        out = []
        for layer in self._layers(model):
            sa = layer.attention.self
            out.append(
                LayerHandles(
                    attention=sa,
                    query=sa.query,
                    key=sa.key,
                    value=sa.value,
                    attn_out=layer.attention.output.dense,
                    ffn_in=layer.intermediate.dense,
                    ffn_out=layer.output.dense,
                    num_heads=sa.query.out_features // sa.attention_head_size,
                    head_dim=sa.attention_head_size,
                )  # fmt: skip
            )
        return out

    def representation_module(self, model: nn.Module) -> tuple[nn.Module, bool]:
        found = _classifier_input(model)
        if found is None:
            raise AdapterNotFoundError(
                f"{type(model).__name__} has no 'classifier' or 'qa_outputs' head: pass representation=MODULE_NAME"
            )
        return found

    def set_num_heads(self, handles: LayerHandles, count: int) -> None:
        sa = handles.attention
        sa.num_attention_heads = count
        sa.all_head_size = count * sa.attention_head_size


ADAPTERS: list[type[EncoderAdapter]] = [CoreBlockAdapter, HFBertAdapter]


def find_adapter(model: nn.Module, adapter: EncoderAdapter | None = None) -> EncoderAdapter:
    """``adapter`` if given, else the first shipped adapter that recognises ``model``."""
    if adapter is not None:
        return adapter
    for cls in ADAPTERS:
        if cls.matches(model):
            return cls()
    raise AdapterNotFoundError(
        f"no CAP adapter recognises {type(model).__name__}: it has no alicemind-core TransformerBlock and no "
        "Hugging Face BERT-style layer (attention.self.query, attention.output.dense, intermediate.dense, "
        "output.dense); pass adapter=<an EncoderAdapter subclass giving layers() and representation_module()>"
    )


class RepresentationCapture:
    """Keeps the last representation a model computed and takes the ``idx`` column out of its call.

    A forward pre-hook on the representation module stores its input (first token if asked); a forward pre-hook on
    the model pops ``idx`` from the keyword arguments, so ``model(**batch)`` works with the bank's index column.
    """

    def __init__(self, model: nn.Module, adapter: EncoderAdapter, representation: str | None = None) -> None:
        if representation is not None:
            module, first = model.get_submodule(representation), False
        else:
            module, first = adapter.representation_module(model)
        self.first_token = first
        self.value: torch.Tensor | None = None
        self.last_idx: torch.Tensor | None = None
        self._handles = [
            module.register_forward_pre_hook(self._store),
            model.register_forward_pre_hook(self._pop_idx, with_kwargs=True),
        ]

    def _store(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        self.value = x[:, 0] if self.first_token and x.dim() == 3 else x  # [B, T, H] -> the first token

    def _pop_idx(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        if "idx" in kwargs:
            kwargs = dict(kwargs)
            self.last_idx = kwargs.pop("idx")
            return args, kwargs
        return None

    def take(self) -> torch.Tensor:
        """The representation of the last forward call (raises if none was seen)."""
        if self.value is None:
            raise RuntimeError("the model has not produced a representation since the last take()")
        value, self.value = self.value, None
        return value

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
