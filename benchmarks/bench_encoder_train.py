"""Encoder training step on ragged batches: StructBERT padded against padding-free (``padding_free=True``).

The same classifier (same weights, dropout 0 so both modes draw no random masks and their losses must agree), the
same ragged batches (lengths uniform in [seq/8, seq]), fp32 AdamW; one step = forward + backward + optimizer step.
Each mode runs in its own process, the processes alternate over ``--rounds``; the table gives the median over
rounds of each round's median step time with the spread, and the largest loss difference between the modes over
the timed steps (they start from the same weights and see the same batches, so their trajectories must match).

    python benchmarks/bench_encoder_train.py [--rounds 3 --steps 6 --layers 4 --hidden 256 --batch 16 --seq 128]
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

RESULTS = Path(__file__).parent / "results"
MODES = ("padded", "padding-free")


def worker(args) -> dict:
    import torch

    from alicemind.structbert import StructBertConfig, StructBertForSequenceClassification

    torch.set_num_threads(args.threads)
    config = StructBertConfig(vocab_size=8000, hidden_size=args.hidden, num_hidden_layers=args.layers,
                              num_attention_heads=max(args.hidden // 64, 2), intermediate_size=4 * args.hidden,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3,
                              padding_free=args.mode == "padding-free")  # fmt: skip
    torch.manual_seed(0)
    model = StructBertForSequenceClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(args.warmup + args.steps):
        lengths = torch.randint(args.seq // 8, args.seq + 1, (args.batch,), generator=g)
        mask = (torch.arange(args.seq)[None] < lengths[:, None]).long()
        ids = torch.randint(5, 8000, (args.batch, args.seq), generator=g) * mask
        batches.append((ids, mask, torch.randint(0, 3, (args.batch,), generator=g)))
    times, losses = [], []
    for i, (ids, mask, labels) in enumerate(batches):
        start = time.perf_counter()
        loss = model(ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
        losses.append(float(loss))
    real = sum(int(m.sum()) for _, m, _ in batches[args.warmup :])
    return {"step_s": statistics.median(times), "tokens_per_s": real / sum(times), "losses": losses}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for round_ in range(args.rounds):
        for mode in MODES if round_ % 2 == 0 else reversed(MODES):
            cmd = [sys.executable, __file__, "--worker", "--mode", mode, *sys.argv[1:]]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(round_, mode, {k: v for k, v in runs[mode][-1].items() if k != "losses"}, flush=True)
    _write_table(args, runs)


def _write_table(args, runs) -> None:
    import torch

    loss_gap = max(abs(a - b) for ra, rb in zip(runs["padded"], runs["padding-free"])
                   for a, b in zip(ra["losses"], rb["losses"]))  # fmt: skip
    medians = {m: statistics.median(r["step_s"] for r in runs[m]) for m in MODES}
    lines = [
        "# Encoder training step, ragged batches: padded vs padding-free (StructBERT classifier)",
        "",
        f"CPU ({platform.processor() or platform.machine()}, {args.threads} threads), torch {torch.__version__}. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} (a shared machine: compare the ratio, not the "
        f"absolute figures). Config: {args.layers} layers, hidden {args.hidden}, batch {args.batch} x {args.seq}, "
        f"lengths uniform in [seq/8, seq], fp32 AdamW, dropout 0. Median of {args.steps} steps per process, then "
        f"the median (min-max) over {args.rounds} alternated rounds, each mode in its own process.",
        "",
        "| mode | step ms (min-max) | real tok/s | vs padded |",
        "|---|---|---|---|",
    ]
    for mode in MODES:
        steps = [r["step_s"] * 1000 for r in runs[mode]]
        tok = statistics.median(r["tokens_per_s"] for r in runs[mode])
        lines.append(f"| {mode} | {statistics.median(steps):.0f} ({min(steps):.0f}-{max(steps):.0f}) | {tok:.0f} | "
                     f"{medians['padded'] / medians[mode]:.2f}x |")  # fmt: skip
    lines += ["", f"Largest loss difference between the modes over every step of every round: {loss_gap:.2e}."]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "encoder_train_padding_free.md").write_text(text)


if __name__ == "__main__":
    main()
