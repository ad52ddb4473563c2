"""Memory plans: what one GPU holds for PLUG inference and fine-tuning at each TP x FSDP layout.

Parameter counts come from the model itself, built on the meta device (no memory). Activation sizes follow
Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", eq. 2 with tensor
parallelism): per layer and 16-bit activations, ``s*b*h*(10 + 24/t + 5*a*s/(h*t))`` bytes; with activation
checkpointing only each layer's input (``2*s*b*h``) is kept, plus one layer's full activations during recompute.
These are estimates of the dominant terms (no allocator slack, no communication buffers beyond FSDP's gathered
block): keep 10-20% headroom.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from alicemind.plug.config import PlugConfig

GIB = 1 << 30


@dataclass
class LayoutPlan:
    """Per-GPU bytes of one layout; ``fits`` compares the total with the GPU's memory."""

    mode: str
    tp: int
    dp: int
    weights: float
    gradients: float
    optimizer: float
    activations: float
    total: float
    fits: bool

    def row(self) -> dict:
        return {k: (round(v / GIB, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def count_parameters(config: PlugConfig) -> tuple[int, int]:
    """(all parameters, the largest block's parameters) of the generation model, counted on the meta device."""
    from alicemind.plug.model import PlugForConditionalGeneration

    with torch.device("meta"):
        model = PlugForConditionalGeneration(config)
    block = max(sum(p.numel() for p in b.parameters()) for b in model.decoder.layers)
    return model.num_parameters(), block


def _layer_activations(config: PlugConfig, batch: int, seq: int, tp: int) -> float:
    h, a = config.hidden_size, config.num_attention_heads
    return seq * batch * h * (10 + 24 / tp + 5 * a * seq / (h * tp))


def memory_plan(
    config: PlugConfig,
    gpus: int,
    gpu_memory_gb: float,
    *,
    batch_size: int = 1,
    source_length: int = 512,
    target_length: int = 128,
    num_beams: int = 1,
    activation_checkpointing: bool = True,
    max_tp: int = 8,
) -> list[LayoutPlan]:
    """Every TP x DP layout of ``gpus`` GPUs (TP dividing the heads and the vocabulary, at most ``max_tp``, one
    node) for inference (16-bit weights, KV caches) and fine-tuning (16-bit weights and gradients sharded by TP
    and FSDP, AdamW's fp32 master copy and two moments, ``batch_size`` sequences per data-parallel rank)."""
    params, block = count_parameters(config)
    layers = config.num_hidden_layers + config.dec_hidden_layers
    h = config.hidden_size
    capacity = gpu_memory_gb * GIB
    plans = []
    for tp in range(1, min(gpus, max_tp) + 1):
        if gpus % tp or config.num_attention_heads % tp or config.vocab_size % tp:
            continue
        dp = gpus // tp
        # Inference: weights split by TP only (each DP group is a replica); self- and cross-attention KV caches.
        rows = batch_size * num_beams
        kv = config.dec_hidden_layers * 2 * rows * (target_length + source_length) * h * 2 / tp
        encoder = _layer_activations(config, batch_size, source_length, tp)
        weights = params * 2 / tp
        total = weights + kv + encoder
        plans.append(LayoutPlan("inference", tp, dp, weights, 0.0, 0.0, kv + encoder, total, total <= capacity))
        # Fine-tuning: everything sharded over tp*dp; FSDP gathers one block (and prefetches the next).
        shards = tp * dp
        weights = params * 2 / shards + 2 * block * 2 / tp
        grads = params * 2 / shards
        optim = params * 12 / shards
        seq = source_length + target_length
        per_layer = _layer_activations(config, batch_size, seq, tp)
        acts = layers * 2 * seq * batch_size * h + per_layer if activation_checkpointing else layers * per_layer
        total = weights + grads + optim + acts
        plans.append(LayoutPlan("finetune", tp, dp, weights, grads, optim, acts, total, total <= capacity))
    return plans


def format_plan(plans: list[LayoutPlan], gpu_memory_gb: float) -> str:
    """A fixed-width table in GiB per GPU."""
    head = f"{'mode':<10}{'tp':>4}{'dp':>4}{'weights':>10}{'grads':>9}{'optim':>9}{'activ':>9}{'total':>9}  fits {gpu_memory_gb:g} GiB"
    lines = [head]
    for p in plans:
        r = p.row()
        lines.append(
            f"{p.mode:<10}{p.tp:>4}{p.dp:>4}{r['weights']:>10}{r['gradients']:>9}{r['optimizer']:>9}"
            f"{r['activations']:>9}{r['total']:>9}  {'yes' if p.fits else 'no'}"
        )
    return "\n".join(lines)
