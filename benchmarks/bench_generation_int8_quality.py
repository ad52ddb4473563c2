"""How much the int8 path (``palm generate --int8-weights``, core.ops.int8) changes PALM's outputs.

A fixed set of sources decoded by the same model in fp32 and with int8 linears, greedy and beam 4, exactly
``--new`` tokens (EOS banned): the share of outputs that are identical, of tokens that agree position by position,
and ROUGE-1/2/L F1 of the int8 outputs scored against the fp32 outputs (token ids as words). The model is the
palm.ch.base shape with random weights (the benchmarks' model; there is no trained checkpoint offline), so these
figures are a bound on the change rather than a task score: random weights give near-flat next-token
distributions, where a small perturbation flips the argmax far more often than in a trained model.

    python benchmarks/bench_generation_int8_quality.py [--sources 32 --src 64 --new 32 --threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.metrics.generation import rouge
from alicemind.core.ops.int8 import quantize_linear_weights

sys.path.insert(0, str(Path(__file__).parent))
from bench_generation_ct2 import RESULTS, _palm  # noqa: E402  (the same model as the speed benchmark)


def _decode(model, sources: torch.Tensor, beams: int, args) -> list[list[int]]:
    config = GenerationConfig(**model.generation_defaults(), max_new_tokens=args.new, min_length=args.new,
                              num_beams=beams)  # fmt: skip
    rows = []
    with torch.inference_mode():
        for batch in sources.split(args.batch):
            rows += generate(model, batch, torch.ones_like(batch), config).sequences[:, 1:].tolist()
    return rows


def compare(fp32: list[list[int]], int8: list[list[int]]) -> dict[str, float]:
    """Exact-match and token-agreement shares and ROUGE F1 (in %) of ``int8`` outputs against ``fp32``'s."""
    same = sum(a == b for a, b in zip(fp32, int8, strict=True))
    agree = sum(x == y for a, b in zip(fp32, int8, strict=True) for x, y in zip(a, b, strict=True))
    scores = rouge([" ".join(map(str, r)) for r in int8], [" ".join(map(str, r)) for r in fp32])
    out = {"exact_match": 100 * same / len(fp32), "token_agreement": 100 * agree / sum(map(len, fp32))}
    out.update({k: 100 * v for k, v in scores.items()})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=32)
    p.add_argument("--src", type=int, default=64)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sources = torch.randint(1000, 21504, (args.sources, args.src), generator=torch.Generator().manual_seed(2))
    start = time.perf_counter()
    model = _palm(args)
    fp32 = {mode: _decode(model, sources, beams, args) for mode, beams in (("greedy", 1), ("beam4", 4))}
    count = quantize_linear_weights(model)
    int8 = {mode: _decode(model, sources, beams, args) for mode, beams in (("greedy", 1), ("beam4", 4))}
    results = {mode: compare(fp32[mode], int8[mode]) for mode in fp32}
    lines = [
        f"torch {torch.__version__}; {args.sources} sources of {args.src} random tokens (seed 2), exactly "
        f"{args.new} new tokens; palm.ch.base shape, random weights (seed 0); {count} linears in int8, the tied "
        f"LM head in fp32; {time.perf_counter() - start:.0f} s; load average at the end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        "| decoding | identical outputs % | tokens agreeing % | ROUGE-1 | ROUGE-2 | ROUGE-L |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in results.items():
        lines.append(f"| {mode} | {r['exact_match']:.1f} | {r['token_agreement']:.1f} | {r['rouge1']:.1f} | "
                     f"{r['rouge2']:.1f} | {r['rougeL']:.1f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        command = "python benchmarks/bench_generation_int8_quality.py " + " ".join(sys.argv[1:])
        (RESULTS / "generation_int8_quality.md").write_text(
            f"# int8 weights vs fp32: output change\n\n`{command.strip()}`\n\n{text}"
        )
        (RESULTS / "generation_int8_quality.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
