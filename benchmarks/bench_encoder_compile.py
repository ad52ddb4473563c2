"""Encoder forward: ours (eager, padding-free, optimize_for_inference) against transformers' BertModel (eager and
with the same torch.compile settings) and ONNX Runtime, on full and ragged batches.

Same config, same weights (ours saved, loaded by transformers), same inputs. Every measurement runs in its own
process (peers' thread pools and caches never share a process), the processes alternate over ``--rounds``, and the
table gives the median over rounds of each round's median with the spread (min-max of the round medians).

    python benchmarks/bench_encoder_compile.py [--device cpu|cuda] [--rounds 2] [--layers 6 --hidden 512 ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import reset_peak, status_mb  # benchmarks/memory.py (these files run as scripts)

RESULTS = Path(__file__).parent / "results"
IMPLS = ("hf-eager", "hf-compiled", "ort", "ours-eager", "ours-packed", "ours-compiled", "ours-compiled-packed")


def _inputs(args, torch):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 20000, (args.batch, args.seq), generator=g)
    mask = torch.ones_like(ids)
    if args.scenario == "ragged":
        lengths = torch.randint(args.seq // 8, args.seq + 1, (args.batch,), generator=g)
        mask = (torch.arange(args.seq)[None] < lengths[:, None]).long()
        ids = ids * mask
    return ids, mask


def _runner(args, torch, ids, mask):
    """A no-argument callable doing one forward of the chosen implementation, and the compile seconds spent."""
    import torch.nn.functional  # noqa: F401

    if args.impl == "ort":
        import onnxruntime as ort
        import transformers

        hf = transformers.BertModel.from_pretrained(args.ckpt, attn_implementation="eager").eval()

        class Wrapper(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask):
                return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        path = Path(args.ckpt) / "model.onnx"
        axes = {"input_ids": {0: "b", 1: "l"}, "attention_mask": {0: "b", 1: "l"}, "out": {0: "b", 1: "l"}}
        start = time.perf_counter()
        torch.onnx.export(Wrapper(hf), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["out"], dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        return (lambda: session.run(None, feed)), time.perf_counter() - start
    device = torch.device(args.device)
    ids, mask = ids.to(device), mask.to(device)
    if args.impl.startswith("hf"):
        import transformers

        model = transformers.BertModel.from_pretrained(args.ckpt, attn_implementation="sdpa").to(device).eval()
    else:
        from alicemind.structbert import StructBertModel

        model = StructBertModel.from_pretrained(args.ckpt).to(device).eval()
        model.encoder.padding_free = args.impl.endswith("-packed")
    if args.impl.startswith("ours-compiled"):
        from alicemind.core.ops import optimize_for_inference

        model = optimize_for_inference(model, report=None)
    elif args.impl == "hf-compiled":  # the same settings optimize_for_inference uses
        if device.type == "cuda":
            model = torch.compile(model, mode="reduce-overhead")
        else:  # freezing set as optimize_for_inference sets it (torch.compile's options= does not reach it)
            torch._inductor.config.freezing = True
            model = torch.compile(model)
    start = time.perf_counter()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    first = time.perf_counter() - start

    def call():
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)

    return call, (first if "compiled" in args.impl else 0.0)


def worker(args) -> dict:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    ids, mask = _inputs(args, torch)
    call, compile_s = _runner(args, torch, ids, mask)
    for _ in range(args.warmup):
        call()
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    sync()
    base = status_mb("VmRSS")
    reset_peak()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else status_mb("VmHWM") - base
    median = statistics.median(times)
    return {"tokens_per_s": int(mask.sum()) / median, "peak_mb": peak, "compile_s": compile_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated subset of {','.join(IMPLS)}")
    for hidden in ("--worker", "--impl", "--scenario", "--ckpt"):
        p.add_argument(hidden, **({"action": "store_true"} if hidden == "--worker" else {}), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import torch

    from alicemind.structbert import StructBertConfig, StructBertModel

    impls = [i for i in args.impls.split(",") if not (args.device == "cuda" and i == "ort")]
    config = StructBertConfig(vocab_size=30522, hidden_size=args.hidden, num_hidden_layers=args.layers,
                              num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as ckpt:
        torch.manual_seed(0)
        StructBertModel(config).save_pretrained(ckpt)
        for round_ in range(args.rounds):
            for scenario in ("full", "ragged"):
                for impl in impls:
                    if scenario == "full" and impl.endswith("-packed"):
                        continue  # nothing to unpad
                    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--scenario", scenario,
                           "--ckpt", ckpt, *sys.argv[1:]]  # fmt: skip
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode:
                        print(f"{impl} {scenario} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
                        continue
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    runs.setdefault((scenario, impl), []).append(result)
                    print(round_, scenario, impl, result, flush=True)
    _write_table(args, impls, runs, torch)


def _write_table(args, impls, runs, torch) -> None:
    import os

    device = (torch.cuda.get_device_name() if args.device == "cuda"
              else f"CPU ({platform.processor() or platform.machine()}, {args.threads} threads)")  # fmt: skip
    versions = [f"torch {torch.__version__}"]
    for name in ("transformers", "onnxruntime"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            pass
    lines = [
        "# Encoder forward: ours vs transformers (eager, compiled) vs ONNX Runtime",
        "",
        f"Device: {device}. {', '.join(versions)}. Load average at the end: {os.getloadavg()[0]:.1f} (a shared "
        f"machine: absolute figures move with the load; compare ratios within a run). Config: {args.layers} "
        f"layers, hidden {args.hidden}, batch {args.batch} x {args.seq}, fp32. Ragged: lengths uniform in "
        f"[seq/8, seq]. tok/s counts real tokens; median of {args.iters} iterations per process, then the median "
        f"(min-max) over {args.rounds} alternated rounds, each implementation in its own process. Ratios are "
        "against transformers eager.",
        "",
        "| batch | implementation | tok/s (min-max) | vs hf-eager | vs ort | compile s | peak MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in ("full", "ragged"):
        medians = {i: statistics.median(r["tokens_per_s"] for r in runs[(scenario, i)])
                   for i in impls if (scenario, i) in runs}  # fmt: skip
        for impl, med in medians.items():
            rs = runs[(scenario, impl)]
            lo, hi = min(r["tokens_per_s"] for r in rs), max(r["tokens_per_s"] for r in rs)
            vs_hf = f"{med / medians['hf-eager']:.2f}x" if "hf-eager" in medians else "-"
            vs_ort = f"{med / medians['ort']:.2f}x" if "ort" in medians else "-"
            compile_s = statistics.median(r["compile_s"] for r in rs)
            lines.append(f"| {scenario} | {impl} | {med:.0f} ({lo:.0f}-{hi:.0f}) | {vs_hf} | {vs_ort} | "
                         f"{compile_s:.0f} | {statistics.median(r['peak_mb'] for r in rs):.0f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    (RESULTS / f"encoder_compile{suffix}.md").write_text(text)


if __name__ == "__main__":
    main()
