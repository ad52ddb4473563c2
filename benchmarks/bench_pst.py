"""PST step time: alicemind-pst (cached kthvalue masks, fused backward) against the original's algorithm (a full
argsort of every weight matrix in every forward, autograd through the score), on the same BERT-shaped encoder.

Each measurement runs in its own process; the two variants alternate for ``--rounds`` rounds and the table reports
medians. The "original" variant is re-written here from the reference's description (techniques.md 4.1), not copied.

    python benchmarks/bench_pst.py            # table -> benchmarks/results/pst_bench.md
    python benchmarks/bench_pst.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RESULTS = Path(__file__).parent / "results" / "pst_bench.md"


class _SortMask(torch.autograd.Function):
    """The original's binariser: argsort the scores, zero the smallest fraction; gradient passes straight through."""

    @staticmethod
    def forward(ctx, scores, sparsity):
        mask = torch.ones_like(scores)
        mask.view(-1)[torch.argsort(scores.reshape(-1))[: int(scores.numel() * sparsity)]] = 0.0
        return mask

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class OriginalStyleLinear(nn.Module):
    """W = W0 + U V, S = |W| + A B + R 1^T + 1 C^T, mask by argsort in every forward (training and eval alike)."""

    def __init__(self, linear: nn.Linear, rank: int = 8):
        super().__init__()
        out_f, in_f = linear.weight.shape
        self.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.u, self.v = nn.Parameter(torch.randn(out_f, rank)), nn.Parameter(torch.zeros(rank, in_f))
        self.a, self.b = nn.Parameter(torch.randn(out_f, rank)), nn.Parameter(torch.zeros(rank, in_f))
        self.r, self.c = nn.Parameter(torch.zeros(out_f)), nn.Parameter(torch.zeros(in_f))
        self.sparsity = 0.0

    def forward(self, x):
        w = self.weight + self.u @ self.v
        scores = w.abs() + self.a @ self.b + (self.r.unsqueeze(1) + self.c.unsqueeze(0))
        return F.linear(x, _SortMask.apply(scores, self.sparsity) * w, self.bias)


def _build(variant: str, hidden: int, layers: int):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=8000, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                     intermediate_size=4 * hidden, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    model = BertModel(cfg, add_pooling_layer=False)
    if variant == "alicemind":
        from alicemind.pst import convert_to_pst, set_sparsity

        convert_to_pst(model, "encoder")
        set_sparsity(model, 0.9)
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.Linear) and name.startswith("encoder"):
                parent, _, child = name.rpartition(".")
                layer = OriginalStyleLinear(module)
                layer.sparsity = 0.9
                setattr(model.get_submodule(parent), child, layer)
    return model


def worker(variant: str, mode: str, hidden: int, layers: int, batch: int, seq: int, steps: int) -> float:
    """Median seconds of one training step (forward, backward, AdamW) or one eval forward."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model = _build(variant, hidden, layers)
    ids = torch.randint(0, 8000, (batch, seq), generator=torch.Generator().manual_seed(1))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    times = []
    for i in range(steps + 2):  # two warm-up iterations
        t0 = time.perf_counter()
        if mode == "train":
            model.train()
            model(input_ids=ids).last_hidden_state.pow(2).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            model.eval()
            with torch.no_grad():
                model(input_ids=ids)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    steps = args.steps or (3 if args.quick else 6)
    rounds = args.rounds or (2 if args.quick else 3)
    shape = [str(v) for v in (args.hidden, args.layers, args.batch, args.seq, steps)]
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], *map(int, shape))))
        return
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for mode in ("train", "eval"):
            for variant in ("alicemind", "original"):  # alternated, each in a fresh process
                cmd = [sys.executable, __file__, "--worker", variant, mode, "--hidden", shape[0], "--layers", shape[1],
                       "--batch", shape[2], "--seq", shape[3], "--steps", shape[4]]  # fmt: skip
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                results.setdefault((variant, mode), []).append(json.loads(out.strip().splitlines()[-1]))
    rows = ["| step | original (argsort every forward) | alicemind-pst | speed-up |", "|---|---|---|---|"]
    for mode in ("train", "eval"):
        orig = statistics.median(results[("original", mode)])
        ours = statistics.median(results[("alicemind", mode)])
        label = "training step (fwd + bwd + AdamW)" if mode == "train" else "eval forward (no grad)"
        rows.append(f"| {label} | {1000 * orig:.1f} ms | {1000 * ours:.1f} ms | {orig / ours:.2f}x |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = "\n".join([
        "# PST step time: alicemind-pst against the original's every-forward argsort",
        "",
        f"BERT-shaped encoder, hidden {args.hidden}, {args.layers} layers, FFN {4 * args.hidden}, batch {args.batch} x "
        f"{args.seq} tokens, 90% sparsity, all 6 encoder linears per layer converted, rank 8 / 8. Medians of "
        f"{steps} steps per process, {rounds} processes per cell, variants alternated. "
        f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"{os.environ.get('BENCH_THREADS', '2')} threads, 1-min load average {load:.1f} at the end.",
        "",
        *rows,
        "",
        "Training: both recompute the mask every optimizer step (the scores change every step); ours selects with "
        "kthvalue instead of a full sort and computes the score gradients in one fused backward. Eval: ours reuses "
        "the cached mask and masked weight; the original re-sorts every matrix in every forward.",
        "",
    ])  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
