"""Encoder-decoders in ONNX: ``encoder.onnx`` and ``decoder_step.onnx`` with the KV cache as inputs and outputs.

``encoder.onnx``: source ids and mask -> the cross-attention keys/values of every decoder layer. ``decoder_step.onnx``:
one new decoder token per row, the source mask, the past self-attention keys/values and the cross keys/values ->
logits and the grown self-attention keys/values. :func:`greedy_decode_onnx` runs a whole decode in ONNX Runtime.
Works for models built on core's decoder stack (``model.decoder.layers``, ``LayerCache``) with the
``EncoderDecoderLM`` protocol of :mod:`alicemind.core.generation`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alicemind.core.interop.onnx_graphs import (
    CHECK_SHAPES,
    EXPORT_SHAPE,
    OnnxUnsupportedError,
    compare_outputs,
    export_graph,
    ort_session,
    random_encoder_inputs,
    run_session,
)


class _GrowingKVCache:
    """A self-attention cache that is a graph input: ``append`` concatenates, so the grown tensors can be outputs.

    Quacks like core's caches (``length``, ``append``, ``static``, ``visible``). It says ``static`` so that the
    attention takes its mask from :meth:`visible` instead of comparing sequence lengths in Python (a traced
    length is a tensor, and those comparisons would freeze into the graph); the step graph takes one new token,
    which sees every cached position.
    """

    static = True

    def __init__(self, key: torch.Tensor, value: torch.Tensor):
        self.key, self.value = key, value

    @property
    def length(self) -> int:
        return self.key.shape[2]

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.key, self.value = torch.cat([self.key, key], 2), torch.cat([self.value, value], 2)
        return self.key, self.value

    def visible(self, q_len: int) -> torch.Tensor:
        """Bool ``[1, 1, q_len, keys]``, all True: the one new token attends to every position so far."""
        return torch.ones((1, 1, q_len, self.key.shape[2]), dtype=torch.bool, device=self.key.device)


def _layer_count(model: nn.Module) -> int:
    return len(model.decoder.layers)


def _cache_from_tensors(template: Any, past: Sequence[torch.Tensor], cross: Sequence[torch.Tensor], mask):
    """A decoder cache of ``template``'s type whose layers read the given tensors (core's LayerCache layout)."""
    from alicemind.core.layers.block import LayerCache

    layers = [
        LayerCache(_GrowingKVCache(past[2 * i], past[2 * i + 1]), (cross[2 * i], cross[2 * i + 1]))
        for i in range(len(past) // 2)
    ]
    rows = torch.arange(mask.shape[0], device=mask.device)
    changes: dict[str, Any] = {"layers": layers, "encoder_mask": mask.bool()}
    for field in dataclasses.fields(template):
        if field.name.endswith("_source"):  # which cross-attention row each row reads: its own, here
            changes[field.name] = rows
    return dataclasses.replace(template, **changes)


class _Seq2SeqEncoderGraph(nn.Module):
    """``(input_ids, attention_mask)`` -> cross-attention key and value of every decoder layer."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.model.encode(input_ids, attention_mask)
        cache = self.model.init_decoder_cache(hidden, attention_mask, 1)
        return tuple(t for layer in cache.layers for t in layer.cross_kv)


class _DecoderStepGraph(nn.Module):
    """``(decoder_input_ids, encoder_attention_mask, past k/v..., cross k/v...)`` -> logits, present k/v..."""

    def __init__(self, model: nn.Module, template: Any):
        super().__init__()
        self.model, self.template, self.layers = model, template, _layer_count(model)

    def forward(self, decoder_input_ids, encoder_attention_mask, *kv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = 2 * self.layers
        cache = _cache_from_tensors(self.template, kv[:n], kv[n:], encoder_attention_mask)
        logits = self.model.decode_step(decoder_input_ids, cache)
        return (logits, *[t for layer in cache.layers for t in (layer.self_kv.key, layer.self_kv.value)])


def _names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}_{kind}.{i}" for i in range(layers) for kind in ("key", "value")]


def _empty_past(model: nn.Module, batch: int, length: int = 0) -> list[torch.Tensor]:
    attn = model.decoder.layers[0].self_attn
    shape = (batch, attn.num_heads, length, attn.head_dim)
    return [torch.zeros(shape) for _ in range(2 * _layer_count(model))]


def export_seq2seq(model: nn.Module, out_dir: Path, atol: float) -> tuple[list[Path], dict[str, float]]:
    """Export ``encoder.onnx`` and ``decoder_step.onnx`` and check both in ONNX Runtime, step by step."""
    if getattr(model, "copy_gate", None) is not None:
        raise OnnxUnsupportedError("ONNX export of a pointer-generator model is not supported (its copy state)")
    layers = _layer_count(model)
    cross_names, past_names = _names("cross", layers), _names("past", layers)
    example = random_encoder_inputs(model, *EXPORT_SHAPE, seed=0)
    ids, mask = example["input_ids"], example["attention_mask"]
    enc_path, step_path = out_dir / "encoder.onnx", out_dir / "decoder_step.onnx"
    enc_axes = {"input_ids": {0: "batch", 1: "source"}, "attention_mask": {0: "batch", 1: "source"}}
    enc_axes.update({n: {0: "batch", 2: "source"} for n in cross_names})
    export_graph(_Seq2SeqEncoderGraph(model).eval(), (ids, mask), enc_path, ["input_ids", "attention_mask"],
            cross_names, enc_axes)  # fmt: skip
    with torch.no_grad():
        cross = _Seq2SeqEncoderGraph(model)(ids, mask)
        template = model.init_decoder_cache(model.encode(ids, mask), mask, 1)
    step = _DecoderStepGraph(model, template).eval()
    dec_ids = torch.full((ids.shape[0], 1), 7)
    inputs = ["decoder_input_ids", "encoder_attention_mask", *past_names, *cross_names]
    present_names = _names("present", layers)
    # One new token per step (greedy and beam decoding feed one): the new-token axis is fixed at 1.
    step_axes = {"decoder_input_ids": {0: "batch"}, "encoder_attention_mask": {0: "batch", 1: "source"}}
    step_axes.update({n: {0: "batch", 2: "past"} for n in past_names})
    step_axes.update({n: {0: "batch", 2: "source"} for n in cross_names})
    step_axes.update({n: {0: "batch", 2: "total"} for n in present_names})
    step_axes["logits"] = {0: "batch"}
    export_graph(step, (dec_ids, mask, *_empty_past(model, ids.shape[0], 3), *cross), step_path, inputs,
            ["logits", *present_names], step_axes)  # fmt: skip
    return [enc_path, step_path], _check_seq2seq(model, enc_path, step_path, atol)


def _check_seq2seq(model: nn.Module, enc_path: Path, step_path: Path, atol: float, steps: int = 4) -> dict[str, float]:
    """Teacher-forced steps in ONNX Runtime against PyTorch's decode_step on the same tokens."""
    encoder, decoder = ort_session(enc_path), ort_session(step_path)
    layers = _layer_count(model)
    worst = {enc_path.name: 0.0, step_path.name: 0.0}
    for i, (batch, length) in enumerate(CHECK_SHAPES):
        feeds = random_encoder_inputs(model, batch, length, seed=1 + i)
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        with torch.no_grad():
            hidden = model.encode(ids, mask)
            cache = model.init_decoder_cache(hidden, mask, steps + 1)
        expected_cross = {
            n: t for n, t in zip(_names("cross", layers), (t for lc in cache.layers for t in lc.cross_kv))
        }
        got_cross = run_session(encoder, feeds)
        where = f"{enc_path.name} at {batch}x{length}"
        worst[enc_path.name] = max(worst[enc_path.name], compare_outputs(expected_cross, got_cross, where, atol))
        past = dict(zip(_names("past", layers), _empty_past(model, batch)))
        g = torch.Generator().manual_seed(100 + i)
        for t in range(steps):
            token = torch.randint(5, model.config.vocab_size, (batch, 1), generator=g)
            with torch.no_grad():
                expected = model.decode_step(token, cache)
            got = run_session(
                decoder, {"decoder_input_ids": token, "encoder_attention_mask": mask, **past, **got_cross}
            )
            where = f"{step_path.name} at {batch}x{length}, step {t}"
            worst[step_path.name] = max(worst[step_path.name], compare_outputs({"logits": expected}, got, where, atol))
            past = {n.replace("present", "past"): got[n] for n in got if n.startswith("present")}
    return worst


def greedy_decode_onnx(
    encoder, decoder, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, start_id: int, eos_id: int,
    pad_id: int, max_new_tokens: int,
) -> torch.Tensor:  # fmt: skip
    """Greedy decoding run entirely in ONNX Runtime sessions of ``encoder.onnx`` / ``decoder_step.onnx``.

    Returns ``[B, 1 + T]``: the start token, then the tokens (a finished row continues with ``pad_id``).
    """
    cross = run_session(encoder, {"input_ids": input_ids, "attention_mask": attention_mask})
    past_inputs = [i for i in decoder.get_inputs() if i.name.startswith("past_")]
    batch = input_ids.shape[0]
    past = {}
    for info in past_inputs:
        layer_cross = cross[info.name.replace("past", "cross")]
        past[info.name] = torch.zeros((batch, layer_cross.shape[1], 0, layer_cross.shape[3]))
    tokens = torch.full((batch, 1), start_id, dtype=torch.long)
    done = torch.zeros(batch, dtype=torch.bool)
    for _ in range(max_new_tokens):
        feeds = {"decoder_input_ids": tokens[:, -1:], "encoder_attention_mask": attention_mask, **past, **cross}
        out = run_session(decoder, feeds)
        step = out["logits"][:, -1].argmax(-1)
        step = torch.where(done, torch.full_like(step, pad_id), step)
        tokens = torch.cat([tokens, step[:, None]], 1)
        done |= step == eos_id
        past = {n.replace("present", "past"): v for n, v in out.items() if n.startswith("present")}
        if bool(done.all()):
            break
    return tokens
