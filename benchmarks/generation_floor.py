"""The fastest any fp32 implementation can generate at the palm.ch.base shape on this machine (a roofline bound).

For the call ``bench_generation_ct2.py`` times (batch 4, source 64, 32 new tokens), the encoder and the
cross-attention keys/values are compute: their matrix-product FLOPs over the peak fp32 matmul rate measured here
(a 2048^3 ``torch.mm``, MKL). Each decode step must read every decoder weight it uses (self-attention, the
cross-attention query and output maps, the FFN, the LM head; 464 MB in fp32, far beyond any cache) from memory:
its time is at least those bytes over the stream bandwidth measured here (a large tensor copy, read + write
bytes), or its FLOPs over the peak rate if that is longer (beam search runs 16 rows). Attention over the cache,
norms and the search itself are left out, so the real floor is higher: the bound is generous.

    python benchmarks/generation_floor.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
LAYERS, HIDDEN, FFN, VOCAB = 12, 768, 3072, 21504
BATCH, SOURCE, NEW = 4, 64, 32


def _best(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(threads: int) -> dict:
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    peak_flops = 2 * 2048**3 / _best(lambda: torch.mm(a, b))
    src, dst = torch.randn(2**27), torch.empty(2**27)  # 512 MB each
    bandwidth = 2 * src.numel() * 4 / _best(lambda: dst.copy_(src), repeats=5)
    return {"peak_gflops": peak_flops / 1e9, "bandwidth_gbs": bandwidth / 1e9}


def bound(peak_gflops: float, bandwidth_gbs: float) -> dict:
    layer = 4 * HIDDEN**2 + 2 * HIDDEN * FFN  # attention q, k, v, o and the FFN
    encoder_flops = 2 * LAYERS * layer * BATCH * SOURCE
    cross_kv_flops = 2 * LAYERS * 2 * HIDDEN**2 * BATCH * SOURCE
    step_weights = LAYERS * (layer + 2 * HIDDEN**2) + HIDDEN * VOCAB  # + cross q, o; the tied LM head
    prefill = (encoder_flops + cross_kv_flops) / (peak_gflops * 1e9)
    out = {"encoder_and_cross_kv_s": prefill, "step_weight_mb": step_weights * 4 / 2**20}
    for mode, rows in (("greedy", BATCH), ("beam4", BATCH * 4)):
        step = max(step_weights * 4 / (bandwidth_gbs * 1e9), 2 * step_weights * rows / (peak_gflops * 1e9))
        # The first token comes from the start token: NEW steps in all, as the timed call runs them.
        out[f"{mode}_step_ms"] = 1e3 * step
        out[f"{mode}_tok_s"] = BATCH * NEW / (prefill + NEW * step)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    machine = measure(args.threads)
    result = {**machine, **bound(**machine), "threads": args.threads, "load": os.getloadavg()}
    print(json.dumps(result, indent=1))
    if not args.no_write:
        (RESULTS / "generation_floor.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
