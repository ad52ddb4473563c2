"""CAP-f export: eval-forward time of the masked model (the original's form: heads and neurons gated, no FLOP
saving) against the physically smaller model ``export_pruned`` writes, at 50% and 90% structured sparsity.

BERT-shaped encoder with all-MiniLM-L6-v2's shape (hidden 384, 6 layers, 12 heads, FFN 1536), transformers
``BertForSequenceClassification`` with random weights (speed does not depend on the values), masks from random
importance scores. Medians of ``--repeats`` forwards, variants alternated.

    python benchmarks/bench_cap.py            # table -> benchmarks/results/cap_bench.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from alicemind.cap import StructuredPruner, count_parameters
from alicemind.cap.export import pruned_copy

RESULTS = Path(__file__).parent / "results" / "cap_bench.md"


def _model():
    import transformers

    transformers.logging.set_verbosity_error()
    cfg = transformers.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                  intermediate_size=1536, vocab_size=30522, num_labels=3)  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg).eval()


def _time(model, batch, repeats: int) -> list[float]:
    out = []
    with torch.no_grad():
        model(**batch)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(**batch)
            out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_cap", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gen = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 30000, (args.batch, args.seq), generator=gen)}
    rows = []
    for sparsity in (0.5, 0.9):
        model = _model()
        pruner = StructuredPruner(model)
        pruner.prune_to(sparsity, torch.rand(6, 12, generator=gen), torch.rand(6, 1536, generator=gen))
        small = pruned_copy(model, pruner).eval()
        with torch.no_grad():
            diff = float((small(**batch).logits - model(**batch).logits).abs().max())
        masked_t, small_t = [], []
        for _ in range(args.repeats):  # alternate so load changes hit both
            masked_t += _time(model, batch, 1)
            small_t += _time(small, batch, 1)
        m, s = statistics.median(masked_t), statistics.median(small_t)
        rows.append((sparsity, count_parameters(model), count_parameters(small), m, s, diff))
        print(
            f"{sparsity:.0%}: masked {1000 * m:.1f} ms, exported {1000 * s:.1f} ms, x{m / s:.2f}, max diff {diff:.1e}"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# CAP-f export: masked model vs physically smaller model (eval forward)",
        "",
        f"BertForSequenceClassification with all-MiniLM-L6-v2's shape (hidden 384, 6 layers, 12 heads, FFN 1536), "
        f"random weights, batch {args.batch} x {args.seq} tokens, heads and FFN neurons pruned to the same fraction "
        f"(random scores). Medians of {args.repeats} forwards, alternated. python {platform.python_version()}, torch "
        f"{torch.__version__}, {os.cpu_count()} CPUs, {args.threads} threads, 1-min load average {load_start:.1f} at "
        f"the start and {load:.1f} at the end (a shared machine: absolute times are noisy, the ratio less so). "
        f"Command: python benchmarks/bench_cap.py --threads {args.threads} --repeats {args.repeats}.",
        "",
        "| sparsity | parameters masked -> exported | masked | exported | speed-up | max logit diff |",
        "|---|---|---|---|---|---|",
    ]
    for sparsity, before, after, m, s, diff in rows:
        lines.append(f"| {sparsity:.0%} | {before:,} -> {after:,} | {1000 * m:.1f} ms | {1000 * s:.1f} ms | "
                     f"{m / s:.2f}x | {diff:.1e} |")  # fmt: skip
    lines += ["", "Embeddings (11.7M of the parameters) and the classifier are not pruned by CAP-f."]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
