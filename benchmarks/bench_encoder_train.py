"""Encoder training step: StructBERT padded, padding-free (``padding_free=True``) and compiled (padded, through
``torch.compile`` as ``TrainingConfig(compile=True)`` runs it) against transformers' eager
``BertForSequenceClassification``, on full and ragged batches.

The same classifier weights (ours saved, loaded by transformers), dropout 0 so no mode draws random masks and the
losses must agree, the same batches (ragged: lengths uniform in [seq/8, seq]), fused AdamW for every mode; one
step = forward + backward + optimizer step. Each (scenario, mode) runs in its own process, the processes alternate
over ``--rounds``; the table gives the median over rounds of each round's median step time with the spread, the
share of the matmul peak measured in the same process (a large fp32 ``torch.mm``), and the largest loss difference
against our padded mode over the timed steps.

    python benchmarks/bench_encoder_train.py [--rounds 3 --steps 6 --layers 4 --hidden 256 --batch 16 --seq 128]
                                             [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODES = ("hf-eager", "padded", "padding-free", "compiled")
SCENARIOS = ("full", "ragged")


def _matmul_peak(torch, device, size: int = 2048) -> float:
    """FLOP/s of a large fp32 square ``torch.mm`` on this device and thread count (best of 5)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _batches(args, torch):
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(args.warmup + args.steps):
        if args.scenario == "ragged":
            lengths = torch.randint(args.seq // 8, args.seq + 1, (args.batch,), generator=g)
        else:
            lengths = torch.full((args.batch,), args.seq)
        mask = (torch.arange(args.seq)[None] < lengths[:, None]).long()
        ids = torch.randint(5, 8000, (args.batch, args.seq), generator=g) * mask
        batches.append((ids, mask, torch.randint(0, 3, (args.batch,), generator=g)))
    return batches


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.mode == "hf-eager":
        import transformers

        model = transformers.BertForSequenceClassification.from_pretrained(args.ckpt, attn_implementation="sdpa")
    else:
        from alicemind.structbert import StructBertForSequenceClassification

        model = StructBertForSequenceClassification.from_pretrained(args.ckpt, padding_free=args.mode == "padding-free")
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step_model = torch.compile(model) if args.mode == "compiled" else model  # as TrainingConfig(compile=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batches = [tuple(t.to(device) for t in b) for b in _batches(args, torch)]
    times, losses = [], []
    for i, (ids, mask, labels) in enumerate(batches):
        sync()
        start = time.perf_counter()
        loss = step_model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
        losses.append(float(loss))
    timed = batches[args.warmup :]
    real = sum(int(m.sum()) for _, m, _ in timed)
    # Matmul work of a step: forward + backward = 3 x 2 x (tokens run) x (encoder linear weights), plus attention.
    linear = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embeddings" not in n)
    run_tokens = real if args.mode == "padding-free" else sum(m.numel() for _, m, _ in timed)
    flops = 6 * linear * run_tokens / len(timed)
    step = statistics.median(times)
    return {"step_s": step, "tokens_per_s": real / sum(times), "losses": losses,
            "peak_share": flops / step / _matmul_peak(torch, device)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    for hidden in ("--worker", "--mode", "--scenario", "--ckpt"):
        p.add_argument(hidden, **({"action": "store_true"} if hidden == "--worker" else {}), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    import torch

    from alicemind.structbert import StructBertConfig, StructBertForSequenceClassification

    config = StructBertConfig(vocab_size=8000, hidden_size=args.hidden, num_hidden_layers=args.layers,
                              num_attention_heads=max(args.hidden // 64, 2), intermediate_size=4 * args.hidden,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)  # fmt: skip
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as ckpt:
        torch.manual_seed(0)
        StructBertForSequenceClassification(config).save_pretrained(ckpt)
        for round_ in range(args.rounds):
            for scenario in SCENARIOS:
                for mode in MODES if round_ % 2 == 0 else reversed(MODES):
                    cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--scenario", scenario,
                           "--ckpt", ckpt, *sys.argv[1:]]  # fmt: skip
                    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    runs.setdefault((scenario, mode), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
                    shown = {k: v for k, v in runs[scenario, mode][-1].items() if k != "losses"}
                    print(round_, scenario, mode, shown, flush=True)
    text = _table(args, runs, torch.__version__)
    print(text)
    if not args.no_write:
        suffix = "" if args.device == "cpu" else f"_{args.device}"
        (RESULTS / f"encoder_train{suffix}.md").write_text(text)


def _table(args, runs, torch_version: str) -> str:
    import transformers

    device = "CUDA" if args.device == "cuda" else f"CPU ({platform.processor() or platform.machine()}"
    device += "" if args.device == "cuda" else f", {args.threads} threads)"
    lines = [
        "# Encoder training step: ours (padded, padding-free, compiled) vs transformers eager (StructBERT classifier)",
        "",
        f"{device}, torch {torch_version}, transformers {transformers.__version__}. Load average at the end: "
        f"{os.getloadavg()[0]:.1f}. Config: {args.layers} layers, hidden {args.hidden}, batch {args.batch} x "
        f"{args.seq}; ragged lengths uniform in [seq/8, seq]; fp32, fused AdamW, dropout 0. Median of {args.steps} "
        f"steps per process, then the median (min-max) over {args.rounds} alternated rounds, each mode in its own "
        "process. Peak share: the step's linear-layer FLOPs (6 x weights x tokens run) over the step time, against "
        "a 2048^3 fp32 matmul timed in the same process.",
        "",
        "| batch | mode | step ms (min-max) | real tok/s | vs hf-eager | share of matmul peak | max loss diff vs padded |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        medians = {m: statistics.median(r["step_s"] for r in runs[scenario, m]) for m in MODES}
        for mode in MODES:
            rs = runs[scenario, mode]
            steps = [r["step_s"] * 1000 for r in rs]
            gap = max(abs(a - b) for ra, rb in zip(rs, runs[scenario, "padded"])
                      for a, b in zip(ra["losses"], rb["losses"]))  # fmt: skip
            lines.append(
                f"| {scenario} | {mode} | {statistics.median(steps):.0f} ({min(steps):.0f}-{max(steps):.0f}) | "
                f"{statistics.median(r['tokens_per_s'] for r in rs):.0f} | "
                f"{medians['hf-eager'] / medians[mode]:.2f}x | "
                f"{100 * statistics.median(r['peak_share'] for r in rs):.0f}% | {gap:.1e} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
