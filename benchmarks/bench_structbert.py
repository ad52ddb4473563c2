"""StructBERT encoder vs Hugging Face BertModel (sdpa): forward and training-step throughput and peak memory.

Both models get the same config, the same weights (ours saved, loaded by transformers) and the same inputs, in one
run on this machine. Each measurement runs in its own subprocess so peak resident memory (VmHWM, reset after the
model is built) belongs to that measurement alone.

    python benchmarks/bench_structbert.py [--device cpu|cuda] [--layers 6 --hidden 512 --batch 16 --seq 128]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import reset_peak, status_mb  # benchmarks/memory.py (these files run as scripts)

RESULTS = Path(__file__).parent / "results"


def worker(args) -> dict:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.impl == "hf":
        import transformers

        model = transformers.BertModel.from_pretrained(args.ckpt, attn_implementation="sdpa")
    else:
        from alicemind.structbert import StructBertModel

        model = StructBertModel.from_pretrained(args.ckpt)
        model.encoder.padding_free = args.impl == "ours-packed"
    model.to(device)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 20000, (args.batch, args.seq), generator=g)
    mask = torch.ones_like(ids)
    if args.scenario == "padded":
        lengths = torch.randint(args.seq // 8, args.seq + 1, (args.batch,), generator=g)
        mask = (torch.arange(args.seq)[None] < lengths[:, None]).long()
        ids = ids * mask
    ids, mask = ids.to(device), mask.to(device)
    real_tokens = int(mask.sum())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        if args.mode == "forward":
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)
        else:
            out = model(input_ids=ids, attention_mask=mask)
            (out.last_hidden_state.float().pow(2) * mask[..., None]).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    model.train(args.mode == "train")
    for _ in range(args.warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = status_mb("VmRSS")
    reset_peak()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else status_mb("VmHWM") - base
    per_iter = list(times)
    times.sort()
    median = times[len(times) // 2]
    return {"seconds": median, "tokens_per_s": real_tokens / median, "peak_mb": peak, "per_iter": per_iter}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--iters", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--scenario", help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import torch

    from alicemind.structbert import StructBertConfig, StructBertModel

    torch.manual_seed(0)
    config = StructBertConfig(
        vocab_size=30522,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        # Dropout off so both sides do identical arithmetic in training steps.
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    rows = []
    with tempfile.TemporaryDirectory() as ckpt:
        StructBertModel(config).save_pretrained(ckpt)
        for mode in ("forward", "train"):
            for scenario in ("full", "padded"):
                result = {}
                for impl in ("hf", "ours", "ours-packed"):
                    if scenario == "full" and impl == "ours-packed":
                        continue  # nothing to unpad
                    cmd = [
                        sys.executable,
                        __file__,
                        "--worker",
                        "--impl",
                        impl,
                        "--mode",
                        mode,
                        "--scenario",
                        scenario,
                        "--ckpt",
                        ckpt,
                    ] + sys.argv[1:]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                    result[impl] = json.loads(out.strip().splitlines()[-1])
                    print(mode, scenario, impl, result[impl], flush=True)
                rows.append((mode, scenario, result))
    device_name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {args.threads} threads)"
    )
    lines = [
        "# StructBERT encoder vs Hugging Face BertModel (sdpa)",
        "",
        f"Device: {device_name}. torch {torch.__version__}. Config: {args.layers} layers, hidden {args.hidden}, "
        f"{args.heads} heads, FFN {4 * args.hidden}, batch {args.batch} x {args.seq} tokens; fp32. "
        "Padded batches: lengths uniform in [seq/8, seq]. Median of "
        f"{args.iters} iterations after {args.warmup} warm-up. Throughput counts real (non-pad) tokens. "
        "Ratio > 1 means ours is faster / uses less memory.",
        "",
        "| step | batch | HF tok/s | ours tok/s | ours/HF | ours padding-free tok/s | packed/HF | HF peak MB | ours peak MB | packed peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, scenario, r in rows:
        hf, ours, packed = r["hf"], r["ours"], r.get("ours-packed")
        lines.append(
            f"| {mode} | {scenario} | {hf['tokens_per_s']:.0f} | {ours['tokens_per_s']:.0f} | "
            f"{ours['tokens_per_s'] / hf['tokens_per_s']:.2f}x | "
            + (
                f"{packed['tokens_per_s']:.0f} | {packed['tokens_per_s'] / hf['tokens_per_s']:.2f}x | "
                if packed
                else "- | - | "
            )
            + f"{hf['peak_mb']:.0f} | {ours['peak_mb']:.0f} | "
            + (f"{packed['peak_mb']:.0f} |" if packed else "- |")
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    (RESULTS / f"structbert_encoder{suffix}.md").write_text(text)


if __name__ == "__main__":
    main()
