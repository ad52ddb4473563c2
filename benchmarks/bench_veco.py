"""VECO vs its Hugging Face peers in one run: the NLU encoder against ``XLMRobertaModel`` (sdpa; forward and a
training step) and NLG generation (greedy, beam 5) against ``BartForConditionalGeneration`` of the same shape.

Both sides get the same weights (ours saved and read by transformers; the NLG weights mapped with
``alicemind.veco.convert.to_bart_state_dict``) and the same inputs. Encoder batches are padded (lengths uniform in
[seq/4, seq]); throughput counts real tokens. Generation produces exactly ``--new`` tokens per output (EOS banned
until then: ours ``min_length``, transformers ``min_new_tokens``); tokens/s counts returned tokens. Each
memory measurement runs in its own subprocess, so peak resident memory (VmHWM, reset once the model is built; CUDA: max
allocated) belongs to it alone. Speed is measured with both sides built in one process and called alternately
(median of ``--iters`` calls after a warm-up), so load drifting on a shared machine hits both alike.

    python benchmarks/bench_veco.py [--device cpu|cuda] [--layers 4 --hidden 256 --heads 4 --batch 8 --seq 128 --new 24]
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

from memory import reset_peak, status_mb  # benchmarks/memory.py (these files run as scripts)

RESULTS = Path(__file__).parent / "results"


def _config(args, nlg: bool):
    from alicemind.veco import VecoConfig

    return VecoConfig.from_preset(
        "veco.large.nlg" if nlg else "veco.large", vocab_size=args.vocab, hidden_size=args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
        decoder_layers=args.layers, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip


def _encoder(args, impl, device):
    import torch

    if impl == "hf":
        import transformers

        return transformers.XLMRobertaModel.from_pretrained(args.ckpt, attn_implementation="sdpa").to(device)
    from alicemind.veco import VecoModel

    return VecoModel.from_pretrained(args.ckpt).to(device, torch.float32)


def _seq2seq(args, impl, device):
    import torch

    from alicemind.veco import VecoForConditionalGeneration

    torch.manual_seed(0)
    ours = VecoForConditionalGeneration(_config(args, nlg=True)).eval()
    if impl == "ours":
        return ours.to(device)
    import transformers

    from alicemind.veco.convert import bart_config_dict, to_bart_state_dict

    bart = transformers.BartForConditionalGeneration(transformers.BartConfig(**bart_config_dict(ours.config)))
    bart.load_state_dict(to_bart_state_dict(ours), strict=True)
    return bart.eval().to(device)


def _setup(args, impl):
    """The timed call of ``args.task`` for ``impl`` and the tokens it produces or reads."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(1)
    if args.task in ("forward", "train"):
        model = _encoder(args, impl, device)
        ids = torch.randint(4, args.vocab, (args.batch, args.seq), generator=g)
        lengths = torch.randint(args.seq // 4, args.seq + 1, (args.batch,), generator=g)
        mask = (torch.arange(args.seq)[None] < lengths[:, None]).long()
        ids = torch.where(mask.bool(), ids, torch.ones_like(ids))  # pad id 1
        ids, mask = ids.to(device), mask.to(device)
        count = int(mask.sum())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def call():
            if args.task == "forward":
                with torch.no_grad():
                    model(input_ids=ids, attention_mask=mask)
                return
            out = model(input_ids=ids, attention_mask=mask)
            (out.last_hidden_state.float().pow(2) * mask[..., None]).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        model.train(args.task == "train")
    else:
        model = _seq2seq(args, impl, device)
        ids = torch.randint(4, args.vocab, (args.batch, args.src), generator=g).to(device)
        mask = torch.ones_like(ids)
        beams = 1 if args.task == "greedy" else 5
        count = args.batch * args.new
        if impl == "hf":
            import transformers

            gen = transformers.GenerationConfig(
                decoder_start_token_id=2, eos_token_id=2, pad_token_id=1, num_beams=beams, do_sample=False,
                max_new_tokens=args.new, min_new_tokens=args.new, forced_bos_token_id=None, forced_eos_token_id=None,
                length_penalty=1.0, early_stopping=True,
            )  # fmt: skip

            def call():
                with torch.no_grad():
                    model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
        else:
            from alicemind.core.generation import GenerationConfig, generate

            gen = GenerationConfig(decoder_start_token_id=2, eos_token_id=2, pad_token_id=1, num_beams=beams,
                                   max_new_tokens=args.new, min_length=args.new, length_penalty=1.0,
                                   length_penalty_style="plain")  # fmt: skip

            def call():
                generate(model, ids, mask, gen)

    return call, count, sync, device


def worker(args) -> dict:
    """Memory: ``args.impl`` alone (a warm-up and one call). Speed: both sides built in this process and called
    alternately ``args.iters`` times, so load drifting on a shared machine hits both alike."""
    import torch

    torch.set_num_threads(args.threads)
    if args.impl != "both":
        call, count, sync, device = _setup(args, args.impl)
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        base = status_mb("VmRSS")  # the model and inputs built; the peak below is what the calls add
        reset_peak()
        call()
        call()
        sync()
        if device.type == "cuda":
            peak = total = torch.cuda.max_memory_allocated() / 2**20
        else:
            total = status_mb("VmHWM")
            peak = total - base
        return {"peak_mb": peak, "total_peak_mb": total}
    sides = {impl: _setup(args, impl) for impl in ("hf", "ours")}
    times = {impl: [] for impl in sides}
    for call, _, sync, _ in sides.values():
        call()  # warm-up
        sync()
    for _ in range(args.iters):
        for impl, (call, _, sync, _) in sides.items():
            t0 = time.perf_counter()
            call()
            sync()
            times[impl].append(time.perf_counter() - t0)
    out = {}
    for impl, (_, count, _, _) in sides.items():
        median = statistics.median(times[impl])
        out[impl] = {"seconds": median, "tokens_per_s": count / median}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128, help="encoder benchmark sequence length")
    p.add_argument("--src", type=int, default=32, help="generation source length")
    p.add_argument("--new", type=int, default=24, help="tokens generated per output")
    p.add_argument("--iters", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", default="veco", help="results/<output>.md and .json")
    for hidden in ("--worker", "--impl", "--task", "--ckpt"):
        p.add_argument(hidden, action="store_true" if hidden == "--worker" else None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import torch
    import transformers

    from alicemind.veco import VecoModel

    shape = ("device", "layers", "hidden", "heads", "vocab", "batch", "seq", "src", "new", "iters", "threads")
    passthrough = [str(v) for k in shape for v in (f"--{k}", getattr(args, k))]
    rows = {}
    with tempfile.TemporaryDirectory() as ckpt:
        torch.manual_seed(0)
        VecoModel(_config(args, nlg=False)).save_pretrained(ckpt)
        for task in ("forward", "train", "greedy", "beam5"):
            rows[task] = {}

            def run(impl, task=task):
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    "--impl",
                    impl,
                    "--task",
                    task,
                    "--ckpt",
                    ckpt,
                    *passthrough,
                ]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                return json.loads(out.strip().splitlines()[-1])

            speed = run("both")
            for impl in ("hf", "ours"):
                rows[task][impl] = {**speed[impl], **run(impl)}
                print(task, impl, rows[task][impl], flush=True)
    device = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({platform.machine()}, {args.threads} threads)"
    )
    peers = {"forward": "XLMRobertaModel", "train": "XLMRobertaModel", "greedy": "BART", "beam5": "BART"}
    lines = [
        "# VECO vs Hugging Face (XLMRobertaModel encoder; BartForConditionalGeneration generation)",
        "",
        f"`python benchmarks/bench_veco.py {' '.join(passthrough)}`".replace(" `", "`"),
        "",
        f"Device: {device}. torch {torch.__version__}, transformers {transformers.__version__}, fp32. Shape: "
        f"{args.layers} layers (NLG: {args.layers} + {args.layers}), hidden {args.hidden}, {args.heads} heads, FFN "
        f"{4 * args.hidden}, vocabulary {args.vocab}. Encoder: batch {args.batch} x {args.seq}, padded (lengths in "
        f"[seq/4, seq]), real tokens counted. Generation: batch {args.batch}, source {args.src}, exactly {args.new} new "
        f"tokens. Speed: both sides in one process, called alternately, median of {args.iters} after a warm-up; peak "
        "memory (VmHWM) of each alone in its own process, in brackets its rise over the built model. Ratio > 1: ours "
        "faster.",
        "",
        "| step | peer | HF tok/s | ours tok/s | ours/HF speed | HF peak MB (added by the calls) "
        "| ours peak MB (added by the calls) |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, r in rows.items():
        hf, ours = r["hf"], r["ours"]
        speed = ours["tokens_per_s"] / hf["tokens_per_s"]
        lines.append(f"| {task} | {peers[task]} | {hf['tokens_per_s']:.0f} | {ours['tokens_per_s']:.0f} | {speed:.2f}x "
                     f"| {hf['total_peak_mb']:.0f} ({hf['peak_mb']:.0f}) | {ours['total_peak_mb']:.0f} ({ours['peak_mb']:.0f}) |")  # fmt: skip
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines += ["", f"Load average at the end of the run: {load} (a shared machine: timings vary with it)."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.output}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{args.output}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
