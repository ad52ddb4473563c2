"""PALM generation vs Hugging Face BartForConditionalGeneration of the same shape: tokens/s and peak memory.

Both models are randomly initialised with the same shape (palm.ch.base by default: 12 + 12 layers, hidden 768,
12 heads, FFN 3072, vocabulary 21504), get the same source batch and generate exactly the same number of tokens:
EOS is banned until the length limit (ours: ``min_length = max_new_tokens``; transformers: ``min_new_tokens =
max_new_tokens``). Greedy and beam search (4 beams) are measured. Speed: both models in one subprocess, one
warm-up call each, then ``--repeats`` rounds alternating the two (so drifting load on a shared machine hits both
alike); the median is reported. tokens/s counts the returned tokens (batch x new tokens, encoder included), not the
beams explored. Peak memory: each implementation alone in its own subprocess (a warm-up and one timed call),
VmHWM, and in brackets its rise over the resident size once the model is built.

The matmul floor (``_matmul_floor``) times the same call's matrix products alone (the encoder's on real tokens
only), alternated with the two models: any implementation doing that arithmetic in that dtype on this machine
runs slower than it. The table gives ours, HF and 1.5x HF as a share of it, so a target above 100% is one that no
implementation can reach at that shape. ``--ragged`` gives the sources different lengths (padding), ``--device``
and ``--dtype`` move all three to a GPU or to bf16.

    python benchmarks/bench_palm_generation.py [--batch 4 --src 64 --new 32 --threads 2 --repeats 3 --shapes base,small]
    python benchmarks/bench_palm_generation.py --ragged --batch 16 --src 128 --shapes base
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

from memory import reset_peak, status_mb  # benchmarks/memory.py (these files run as scripts)

RESULTS = Path(__file__).parent / "results"
# name -> (layers per stack, hidden, heads, FFN, vocabulary)
SHAPES = {
    "base": (12, 768, 12, 3072, 21504),  # palm.ch.base
    "small": (4, 256, 4, 1024, 21504),  # where per-step framework overhead, not weight traffic, dominates
}


def _build(impl: str, args):
    import torch

    torch.manual_seed(0)
    if impl == "hf":
        from transformers import BartConfig, BartForConditionalGeneration

        config = BartConfig(
            vocab_size=args.vocab, d_model=args.hidden, encoder_layers=args.layers, decoder_layers=args.layers,
            encoder_attention_heads=args.heads, decoder_attention_heads=args.heads, encoder_ffn_dim=args.ffn,
            decoder_ffn_dim=args.ffn, max_position_embeddings=1024, pad_token_id=0, bos_token_id=101,
            eos_token_id=102, decoder_start_token_id=101, forced_bos_token_id=None, forced_eos_token_id=None,
        )  # fmt: skip
        return BartForConditionalGeneration(config).eval().to(args.device, _dtype(args))
    from alicemind.palm import PalmConfig, PalmForConditionalGeneration

    config = PalmConfig.from_preset(
        "palm.ch.base", vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        dec_hidden_layers=args.layers, num_attention_heads=args.heads, intermediate_size=args.ffn,
        real_vocab_size=None,
    )  # fmt: skip
    return PalmForConditionalGeneration(config).eval().to(args.device, _dtype(args))


def _dtype(args):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]


def _sources(args):
    """The source batch ``(ids, mask)``, the same for every implementation."""
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, args.vocab, (args.batch, args.src), generator=g)
    mask = torch.ones_like(ids)
    if args.ragged:  # source lengths uniform in [src/4, src], the longest exactly src; padding id 0 for both
        lengths = torch.randint(args.src // 4, args.src + 1, (args.batch,), generator=g)
        lengths[0] = args.src
        mask = (torch.arange(args.src) < lengths[:, None]).long()
        ids = ids * mask
    return ids.to(args.device), mask.to(args.device)


def _runner(impl: str, args, beams: int):
    """A model of ``impl`` and a function generating exactly ``args.new`` tokens per source with it."""

    model = _build(impl, args)
    ids, mask = _sources(args)
    new = args.new
    if impl == "hf":
        from transformers import GenerationConfig as HFConfig

        hf_config = HFConfig(
            max_new_tokens=new, min_new_tokens=new, num_beams=beams, do_sample=False, early_stopping=True,
            length_penalty=1.0, eos_token_id=102, pad_token_id=0, decoder_start_token_id=101,
        )  # fmt: skip
        return lambda: model.generate(input_ids=ids, attention_mask=mask, generation_config=hf_config)

    from alicemind.core.generation import GenerationConfig, generate

    config = GenerationConfig(**model.generation_defaults(), max_new_tokens=new, min_length=new, num_beams=beams)
    return lambda: generate(model, ids, mask, config).sequences


def _matmul_floor(args, beams: int):
    """The same call reduced to its fp32 matrix products, and nothing else.

    The encoder's (QKV, output, FFN) on every source token, the cross-attention keys/values once, then per new
    token the decoder's (fused QKV, output, cross query and output, FFN) and the vocabulary projection on one row
    per beam. No attention, norms, activations or search: a bound that no implementation doing these products
    with torch's kernels can beat. At batch 4 a decode step streams every decoder weight from memory for a few
    rows, so this floor is set by memory bandwidth.
    """
    import torch
    import torch.nn.functional as F

    h, f, n = args.hidden, args.ffn, args.layers
    like = dict(device=args.device, dtype=_dtype(args))

    def layer(shapes):
        return [(torch.randn(out, inp, **like) * 0.02, torch.zeros(out, **like)) for inp, out in shapes]

    encoder = [layer([(h, 3 * h), (h, h), (h, f), (f, h)]) for _ in range(n)]
    decoder = [layer([(h, 3 * h), (h, h), (h, h), (h, h), (h, f), (f, h)]) for _ in range(n)]
    cross_kv = layer([(h, 2 * h)] * n)
    head = torch.randn(args.vocab, h, **like) * 0.02
    real = int(_sources(args)[1].sum())  # the encoder's work is its real tokens: padding is not needed work
    tokens, rows = torch.randn(real, h, **like), torch.randn(args.batch * beams, h, **like)
    wide_tokens, wide_rows = torch.randn(real, f, **like), torch.randn(args.batch * beams, f, **like)

    def run():
        for weights in encoder:
            for w, b in weights:
                F.linear(tokens if w.shape[1] == h else wide_tokens, w, b)
        for w, b in cross_kv:
            F.linear(tokens, w, b)
        for _ in range(args.new):
            for weights in decoder:
                for w, b in weights:
                    F.linear(rows if w.shape[1] == h else wide_rows, w, b)
            F.linear(rows, head)

    return run


def worker(args) -> dict:
    """``--impl both``: time the two alternately in this process (drifting machine load hits both alike);
    ``--impl ours|hf``: one warm-up and one timed call alone, for its peak memory."""
    import torch

    torch.set_num_threads(int(args.threads))
    impls = ("hf", "ours", "floor") if args.impl == "both" else (args.impl,)
    runs = {
        impl: _runner(impl, args, args.beams) if impl != "floor" else _matmul_floor(args, args.beams) for impl in impls
    }
    times = {impl: [] for impl in impls}
    cuda = args.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if cuda:  # device memory, not the host process's
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = status_mb("VmRSS")
        reset_peak()
    with torch.inference_mode():
        for impl, run in runs.items():
            out = run()  # warm-up
            assert impl == "floor" or out.shape == (args.batch, args.new + 1), f"{impl} returned {tuple(out.shape)}"
        for _ in range(args.repeats if args.impl == "both" else 1):
            for impl, run in runs.items():
                sync()
                start = time.perf_counter()
                run()
                sync()
                times[impl].append(time.perf_counter() - start)
    result = {f"{impl}_tokens_per_s": args.batch * args.new / statistics.median(t) for impl, t in times.items()}
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else status_mb("VmHWM")
    result.update(peak_mb=peak, peak_over_model_mb=peak - base)
    return result


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def measure(args, impl: str, beams: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--beams", str(beams)]
    keys = ("batch", "src", "new", "threads", "repeats", "layers", "hidden", "heads", "ffn", "vocab", "device", "dtype")
    for key in keys:
        cmd += [f"--{key}", str(getattr(args, key))]
    cmd += ["--ragged"] if args.ragged else []
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"worker {impl} beams={beams} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=("ours", "hf", "both"), help=argparse.SUPPRESS)
    p.add_argument("--beams", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--src", type=int, default=64, help="source tokens")
    p.add_argument("--new", type=int, default=32, help="generated tokens per output")
    p.add_argument("--threads", default="2", help="torch threads; a comma-separated list gives one table each")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shapes", default="base,small", help=f"comma-separated, from {sorted(SHAPES)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]; peak memory is then the device's")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="weights and activations of all three")
    p.add_argument("--ragged", action="store_true", help="source lengths uniform in [src/4, src] instead of all src")
    p.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, help=argparse.SUPPRESS)
    p.add_argument("--heads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ffn", type=int, help=argparse.SUPPRESS)
    p.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import torch
    import transformers

    mode = {1: "greedy", 4: "beam 4"}
    sources = f"lengths uniform in [{args.src // 4}, {args.src}] tokens" if args.ragged else f"{args.src} tokens"
    lines = [
        f"PALM generation vs transformers {transformers.__version__} BartForConditionalGeneration (same shape, random "
        f"weights), torch {torch.__version__}, {platform.processor() or platform.machine()}, CPU "
        f"({os.cpu_count()} cores), torch threads as listed per row; device {_device_name(args.device)}, "
        f"{args.dtype}.",
        f"Batch {args.batch}, source {sources}, exactly {args.new} new tokens per output; median of "
        f"{args.repeats} alternating runs after a warm-up; peak memory of each alone in its own process.",
        "",
        "| shape | decoding | ours tokens/s | HF tokens/s | speed-up | matmul floor tokens/s | ours, HF, 1.5x HF "
        "as % of floor | ours peak MB (over model) | HF peak MB (over model) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = [(shape, int(t)) for t in str(args.threads).split(",") for shape in args.shapes.split(",")]
    for shape, threads in runs:
        args.threads = threads
        args.layers, args.hidden, args.heads, args.ffn, args.vocab = SHAPES[shape]
        label = f"{shape}: {args.layers}+{args.layers} x {args.hidden}, {args.heads} heads, FFN {args.ffn}"
        label += f"; {threads} thread{'s' if threads > 1 else ''}"
        for beams in (1, 4):
            speed = measure(args, "both", beams)
            hf, ours = measure(args, "hf", beams), measure(args, "ours", beams)
            ours_tps, hf_tps, floor = (speed[f"{k}_tokens_per_s"] for k in ("ours", "hf", "floor"))
            shares = ", ".join(f"{100 * x / floor:.0f}%" for x in (ours_tps, hf_tps, 1.5 * hf_tps))
            lines.append(
                f"| {label} | {mode[beams]} | {ours_tps:.1f} | {hf_tps:.1f} | {ours_tps / hf_tps:.2f}x | {floor:.1f} | "
                f"{shares} | {ours['peak_mb']:.0f} ({ours['peak_over_model_mb']:.0f}) | {hf['peak_mb']:.0f} "
                f"({hf['peak_over_model_mb']:.0f}) |"
            )
            print(lines[-1], flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines.append(f"\nLoad average at the end of the run: {load} (on a shared machine, timings vary with it).")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        command = "python benchmarks/bench_palm_generation.py " + " ".join(sys.argv[1:])
        suffix = "" if args.device == "cpu" and args.dtype == "fp32" else f"_{args.device.split(':')[0]}_{args.dtype}"
        name = f"palm_generation{suffix}{'_ragged' if args.ragged else ''}.md"
        (RESULTS / name).write_text(f"# PALM generation throughput\n\n`{command.strip()}`\n\n{text}")


if __name__ == "__main__":
    main()
