"""PALM generation against CTranslate2 (fp32 and int8, built from the same weights) and transformers BART.

palm.ch.base shape (12 + 12 layers, hidden 768, 12 heads, FFN 3072, vocabulary 21504), random weights, batch 4,
source 64 tokens (``--ragged``: lengths uniform in 16-64, padded and masked), exactly ``--new`` (32) new tokens per
output (EOS banned until the limit), greedy and beam 4.

Every peer lives in its own process for the whole run: it builds its model, warms up (compiles, for the compiled
peers; that cost is reported apart), then answers "time one call" requests. The driver asks the peers in turn,
rotating the order every round and pausing between calls so one process's spinning OpenMP threads do not slow the
next, and reports per peer the median tokens/s over the rounds and its spread (min-max). tokens/s counts returned
tokens (batch x new tokens, encoder included). CTranslate2 runs from its own venv (``--ct2-python``; it is a
benchmark-only dependency: ``python -m venv /tmp/ct2venv && /tmp/ct2venv/bin/pip install ctranslate2 numpy``).
Its model is assembled with ``ctranslate2.specs`` from our PALM weights (benchmarks/ct2_palm_spec.py), so CT2
and ours compute the same function; BART (post-LN, same sizes) is transformers' nearest model of that shape.

    python benchmarks/bench_generation_ct2.py [--rounds 7 --peers ours,ours-compiled,hf,ct2,ct2-int8]
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

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SHAPE = dict(layers=12, hidden=768, heads=12, ffn=3072, vocab=21504)  # palm.ch.base
MODES = {"greedy": 1, "beam4": 4}
# "ours": eager; "-compiled": optimize_for_inference; "-int8": int8 linears and output projection (core.ops.int8).
PEERS = ("ours", "ours-compiled", "ours-int8", "ours-int8-compiled", "hf", "ct2", "ct2-int8")


def _palm(args):
    import torch

    from alicemind.palm import PalmConfig, PalmForConditionalGeneration

    torch.manual_seed(0)
    config = PalmConfig.from_preset(
        "palm.ch.base", vocab_size=SHAPE["vocab"], hidden_size=SHAPE["hidden"], num_hidden_layers=SHAPE["layers"],
        dec_hidden_layers=SHAPE["layers"], num_attention_heads=SHAPE["heads"], intermediate_size=SHAPE["ffn"],
        real_vocab_size=None,
    )  # fmt: skip
    return PalmForConditionalGeneration(config).eval()


def _torch_runner(peer: str, args, sources):
    """``run(beams) -> token rows`` for one of our peers or transformers."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # Ragged sources are right-padded with 0 and masked; CTranslate2 takes the rows as they are.
    width = max(len(row) for row in sources)
    ids = torch.tensor([row + [0] * (width - len(row)) for row in sources], device=device)
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in sources], device=device)
    new = args.new
    if peer == "hf":
        from transformers import BartConfig, BartForConditionalGeneration
        from transformers import GenerationConfig as HFConfig

        torch.manual_seed(0)
        config = BartConfig(
            vocab_size=SHAPE["vocab"], d_model=SHAPE["hidden"], encoder_layers=SHAPE["layers"],
            decoder_layers=SHAPE["layers"], encoder_attention_heads=SHAPE["heads"],
            decoder_attention_heads=SHAPE["heads"], encoder_ffn_dim=SHAPE["ffn"], decoder_ffn_dim=SHAPE["ffn"],
            max_position_embeddings=1024, pad_token_id=0, bos_token_id=101, eos_token_id=102,
            decoder_start_token_id=101, forced_bos_token_id=None, forced_eos_token_id=None,
        )  # fmt: skip
        model = BartForConditionalGeneration(config).to(device).eval()

        def run(beams):
            hf = HFConfig(
                max_new_tokens=new, min_new_tokens=new, num_beams=beams, do_sample=False, early_stopping=True,
                length_penalty=1.0, eos_token_id=102, pad_token_id=0, decoder_start_token_id=101,
            )  # fmt: skip
            with torch.inference_mode():
                return model.generate(input_ids=ids, attention_mask=mask, generation_config=hf)[:, 1:].tolist()

        return run

    from alicemind.core.generation import GenerationConfig, generate

    model = _palm(args).to(device)
    if peer.startswith("ours-int8"):
        from alicemind.core.ops.int8 import quantize_linear_weights

        quantize_linear_weights(model)
    if peer.endswith("-compiled"):
        from alicemind.core.ops import optimize_for_inference

        model = optimize_for_inference(model, report=lambda msg: print(msg, file=sys.stderr, flush=True))

    def run(beams):
        config = GenerationConfig(**model.generation_defaults(), max_new_tokens=new, min_length=new, num_beams=beams)
        with torch.inference_mode():
            return generate(model, ids, mask, config).sequences[:, 1:].tolist()

    return run


def _ct2_runner(peer: str, args, sources):
    import ctranslate2

    translator = ctranslate2.Translator(
        args.ct2_model, device=args.device, inter_threads=1, intra_threads=args.threads,
        compute_type="int8" if peer == "ct2-int8" else "float32",
    )  # fmt: skip
    tokens = [[str(t) for t in row] for row in sources]

    def run(beams):
        results = translator.translate_batch(
            tokens, beam_size=beams, max_decoding_length=args.new, min_decoding_length=args.new
        )
        return [[int(t) for t in r.hypotheses[0]] for r in results]

    return run


def worker(args) -> None:
    """Build one peer, warm both modes up, then time one call per ``run MODE`` line read from stdin."""
    sources = json.loads(Path(args.sources).read_text())
    start = time.perf_counter()
    run = (_ct2_runner if args.peer.startswith("ct2") else _torch_runner)(args.peer, args, sources)
    # Warm-up: compiled peers at the timed length (its cache capacity is part of the compiled shapes); the others
    # need only their first-call set-up, so a few tokens do.
    full, args.new = args.new, args.new if args.peer.endswith("-compiled") else min(args.new, 4)
    for beams in MODES.values():
        run(beams)
    args.new = full
    print(json.dumps({"ready_s": time.perf_counter() - start}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "quit":
            break
        began = time.perf_counter()
        rows = run(MODES[command[1]])
        seconds = time.perf_counter() - began
        if any(len(r) != args.new for r in rows) or len(rows) != len(sources):
            raise RuntimeError(f"{args.peer} returned rows of {sorted({len(r) for r in rows})} tokens")
        print(json.dumps({"s": seconds, "tokens": rows}), flush=True)
    peak = next((ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines() if "VmHWM" in ln), "0")
    print(json.dumps({"peak_mb": int(peak) / 1024}), flush=True)


def _versions(ct2_python: str) -> dict:
    import torch
    import transformers

    ct2 = subprocess.run([ct2_python, "-c", "import ctranslate2; print(ctranslate2.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    return {"torch": torch.__version__, "transformers": transformers.__version__, "ctranslate2": ct2}


def _prepare(args, work: Path) -> None:
    """The shared source batch and the CTranslate2 model (built once per work folder)."""
    import torch

    g = torch.Generator().manual_seed(1)
    sources = torch.randint(1000, SHAPE["vocab"], (args.batch, args.src), generator=g).tolist()
    if args.ragged:  # lengths uniform in [src/4, src], the longest row at src
        lengths = torch.randint(args.src // 4, args.src + 1, (args.batch,), generator=g).tolist()
        lengths[0] = args.src
        sources = [row[:n] for row, n in zip(sources, lengths, strict=True)]
    (work / "sources.json").write_text(json.dumps(sources))
    if (Path(args.ct2_model) / "model.bin").exists():
        return
    from ct2_palm_spec import export_arrays

    export_arrays(_palm(args), work / "palm_arrays.npz")
    script = f"import sys; sys.path.insert(0, {str(HERE)!r}); from ct2_palm_spec import build_ct2_model; "
    script += f"build_ct2_model({str(work / 'palm_arrays.npz')!r}, {args.ct2_model!r})"
    subprocess.run([args.ct2_python, "-c", script], check=True)
    (work / "palm_arrays.npz").unlink()


def _spawn(peer: str, args, work: Path) -> subprocess.Popen:
    python = args.ct2_python if peer.startswith("ct2") else sys.executable
    cmd = [python, __file__, "--worker", "--peer", peer, "--sources", str(work / "sources.json"),
           "--new", str(args.new), "--threads", str(args.threads), "--ct2-model", args.ct2_model,
           "--device", args.device]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _ask(proc: subprocess.Popen, line: str | None) -> dict:
    if line is not None:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    reply = proc.stdout.readline()
    if not reply:
        raise RuntimeError(f"a worker died (exit {proc.wait()}): see its stderr above")
    return json.loads(reply)


def _agreement(a: list, b: list) -> float:
    same = sum(x == y for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))
    return same / sum(len(r) for r in a)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--peer", help=argparse.SUPPRESS)
    p.add_argument("--sources", help=argparse.SUPPRESS)
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {','.join(PEERS)}")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--src", type=int, default=64)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--ragged", action="store_true", help="source lengths uniform in [src/4, src] (padded + masked)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: our int8 peers are CPU-only")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {','.join(MODES)}")
    p.add_argument("--gap", type=float, default=0.5, help="seconds between calls (lets OpenMP threads go idle)")
    p.add_argument("--ct2-python", default="/tmp/ct2venv/bin/python")
    p.add_argument("--ct2-model", default="/tmp/alicemind_ct2_palm_base")
    p.add_argument("--work", default="/tmp/alicemind_bench_generation")
    p.add_argument("--out", default="generation_ct2", help="results file stem under benchmarks/results/")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    _prepare(args, work)
    peers = args.peers.split(",")
    if args.device == "cuda" and any(peer.startswith("ours-int8") for peer in peers):
        p.error("the ours-int8 peers run on CPU only (torch's quantized engine); leave them out with --device cuda")
    load_start = os.getloadavg()
    procs, ready = {}, {}
    for peer in peers:  # one warm-up (compilation) at a time: together they would slow each other for minutes
        procs[peer] = _spawn(peer, args, work)
        ready[peer] = _ask(procs[peer], None)
        print(f"{peer} ready in {ready[peer]['ready_s']:.0f} s", file=sys.stderr, flush=True)
    seconds: dict[tuple[str, str], list[float]] = {(peer, mode): [] for peer in peers for mode in MODES}
    for r in range(args.rounds):
        order = peers[r % len(peers) :] + peers[: r % len(peers)]
        for mode in args.modes.split(","):
            for peer in order:
                time.sleep(args.gap)
                reply = _ask(procs[peer], f"run {mode}")
                seconds[peer, mode].append(reply["s"])
                ready[peer].setdefault("tokens", {})[mode] = reply["tokens"]
    peaks = {peer: _ask(proc, "quit")["peak_mb"] for peer, proc in procs.items()}
    for proc in procs.values():
        proc.wait()
    load_end = os.getloadavg()
    report(args, peers, ready, seconds, peaks, (load_start, load_end))


def report(args, peers, ready, seconds, peaks, loads) -> None:
    tokens = args.batch * args.new
    modes = args.modes.split(",")
    rate = {key: statistics.median(tokens / s for s in times) for key, times in seconds.items() if times}
    spread = {key: (min(tokens / s for s in t), max(tokens / s for s in t)) for key, t in seconds.items() if t}
    ref = peers[0]
    versions = _versions(args.ct2_python)
    lines = [
        f"torch {versions['torch']}, transformers {versions['transformers']}, ctranslate2 {versions['ctranslate2']}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads per peer"
        + (f"; device {args.device}." if args.device != "cpu" else "."),
        f"Batch {args.batch}, source {'ragged, lengths uniform in ' + str(args.src // 4) + '-' if args.ragged else ''}"
        f"{args.src}, exactly {args.new} new tokens; {args.rounds} rounds, peers "
        f"alternated (order rotated each round), each in its own process; median tokens/s (min-max).",
        f"Load average at start {', '.join(f'{x:.2f}' for x in loads[0])}; at end "
        f"{', '.join(f'{x:.2f}' for x in loads[1])}.",
        "",
        "| peer | greedy tok/s | beam 4 tok/s | greedy vs ct2 / hf | beam vs ct2 / hf | warm-up s | peak MB "
        f"| {modes[0]} tokens = {ref}'s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for peer in peers:
        cells = [peer]
        for mode in MODES:
            if mode not in modes:
                cells.append("-")
                continue
            lo, hi = spread[peer, mode]
            cells.append(f"{rate[peer, mode]:.1f} ({lo:.0f}-{hi:.0f})")
        for mode in MODES:
            vs = [f"{rate[peer, mode] / rate[o, mode]:.2f}x" if o in peers and mode in modes else "-"
                  for o in ("ct2", "hf")]  # fmt: skip
            cells.append(" / ".join(vs))
        agree = _agreement(ready[ref]["tokens"][modes[0]], ready[peer]["tokens"][modes[0]])
        cells += [f"{ready[peer]['ready_s']:.0f}", f"{peaks[peer]:.0f}", f"{100 * agree:.0f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        command = "python benchmarks/bench_generation_ct2.py " + " ".join(sys.argv[1:])
        (RESULTS / f"{args.out}.md").write_text(
            f"# PALM generation vs CTranslate2 and transformers\n\n`{command}`\n\n{text}"
        )
        raw = {"versions": versions, "loads": loads, "seconds": {f"{p}|{m}": s for (p, m), s in seconds.items()}}
        (RESULTS / f"{args.out}.json").write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
