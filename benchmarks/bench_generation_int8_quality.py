"""How much the int8 path (``palm generate --int8-weights``, core.ops.int8) changes PALM's outputs.

A fixed set of sources decoded by the same model in fp32 and with int8 linears, greedy and beam 4, exactly
``--new`` tokens (EOS banned): the share of outputs that are identical, of tokens that agree position by position,
and ROUGE-1/2/L F1 of the int8 outputs scored against the fp32 outputs (token ids as words). The model is the
palm.ch.base shape with random weights (the benchmarks' model; there is no trained checkpoint offline), so these
figures are a bound on the change rather than a task score: random weights give near-flat next-token
distributions, where a small perturbation flips the argmax far more often than in a trained model.

With ``--model DIR --data FILE.tsv`` it also measures a trained model: a fine-tuned PALM folder decodes every
source of a ``source<TAB>target`` file in fp32 and in int8 (beam 4, trigram blocking, as palm_repro decodes),
and both are scored against the references (ROUGE-1/2/L, BLEU-4), beside the int8-vs-fp32 agreement.
``benchmarks/palm_repro.py --out DIR`` leaves such a model in ``DIR/palm-s1/final`` and its data in ``DIR/valid.tsv``.

    python benchmarks/bench_generation_int8_quality.py [--sources 32 --src 64 --new 32 --threads 2]
                                                      [--model DIR --data valid.tsv --lang en]
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


def _random_weights(args) -> tuple[list[str], dict]:
    sources = torch.randint(1000, 21504, (args.sources, args.src), generator=torch.Generator().manual_seed(2))
    start = time.perf_counter()
    model = _palm(args)
    fp32 = {mode: _decode(model, sources, beams, args) for mode, beams in (("greedy", 1), ("beam4", 4))}
    count = quantize_linear_weights(model)
    int8 = {mode: _decode(model, sources, beams, args) for mode, beams in (("greedy", 1), ("beam4", 4))}
    results = {mode: compare(fp32[mode], int8[mode]) for mode in fp32}
    lines = [
        "## Random weights, palm.ch.base shape",
        "",
        f"{args.sources} sources of {args.src} random tokens (seed 2), exactly {args.new} new tokens; random "
        f"weights (seed 0); {count} maps in int8 (every linear and the tied output projection); "
        f"{time.perf_counter() - start:.0f} s.",
        "",
        "| decoding | identical outputs % | tokens agreeing % | ROUGE-1 | ROUGE-2 | ROUGE-L |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in results.items():
        lines.append(f"| {mode} | {r['exact_match']:.1f} | {r['token_agreement']:.1f} | {r['rouge1']:.1f} | "
                     f"{r['rouge2']:.1f} | {r['rougeL']:.1f} |")  # fmt: skip
    return lines, results


def _trained(args) -> tuple[list[str], dict]:
    """fp32 and int8 outputs of a fine-tuned PALM on a TSV, each scored against the references."""
    import csv

    from alicemind.palm.runner import evaluate_texts, generate_texts, load_model_and_tokenizer

    with open(args.data, encoding="utf-8", newline="") as f:
        pairs = [(row[0], row[1]) for row in csv.reader(f, delimiter="\t") if len(row) >= 2]
    sources, references = [p[0] for p in pairs], [p[1] for p in pairs]
    start = time.perf_counter()
    model, tokenizer, _ = load_model_and_tokenizer(args.model)
    config = GenerationConfig(**{**model.generation_defaults(), "num_beams": args.beams,
                                 "max_new_tokens": args.trained_new, "no_repeat_ngram_size": 3})  # fmt: skip
    outputs, seconds = {}, {}
    for precision in ("fp32", "int8"):
        if precision == "int8":
            count = quantize_linear_weights(model)
        began = time.perf_counter()
        outputs[precision] = generate_texts(model, tokenizer, sources, config, max_source_length=args.max_source_length,
                                            batch_size=args.batch, progress=False)  # fmt: skip
        seconds[precision] = time.perf_counter() - began
    scores = {p: evaluate_texts(o, references, lang=args.lang) for p, o in outputs.items()}
    same = sum(a == b for a, b in zip(outputs["fp32"], outputs["int8"], strict=True))
    agree = rouge(outputs["int8"], outputs["fp32"], lang=args.lang)
    lines = [
        f"## Trained model: `{args.model}`",
        "",
        f"{len(pairs)} sources of `{args.data}`; beam {args.beams}, at most {args.trained_new} new tokens, trigram "
        f"blocking; {count} maps in int8; {time.perf_counter() - start:.0f} s (decoding: fp32 "
        f"{seconds['fp32']:.1f} s, int8 {seconds['int8']:.1f} s). Scores against the references, in points:",
        "",
        "| weights | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU-4 |",
        "|---|---|---|---|---|",
    ]
    for p, r in scores.items():
        lines.append(f"| {p} | {100 * r['rouge-1']:.2f} | {100 * r['rouge-2']:.2f} | {100 * r['rouge-l']:.2f} | "
                     f"{r['bleu']:.2f} |")  # fmt: skip
    lines += ["", f"int8 against fp32: {100 * same / len(pairs):.1f}% of outputs identical; ROUGE-L of int8 "
              f"against fp32 {100 * agree['rougeL']:.1f}."]  # fmt: skip
    return lines, {"scores": scores, "identical": same / len(pairs), "rougeL_vs_fp32": agree["rougeL"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=32)
    p.add_argument("--src", type=int, default=64)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", help="a fine-tuned PALM folder to measure as well (with --data)")
    p.add_argument("--data", help="source<TAB>target file for --model")
    p.add_argument("--lang", default="en", choices=["en", "zh"])
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--trained-new", type=int, default=24, help="at most this many new tokens for --model")
    p.add_argument("--max-source-length", type=int, default=128)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if bool(args.model) != bool(args.data):
        p.error("--model and --data go together")
    torch.set_num_threads(args.threads)
    lines, results = _random_weights(args)
    if args.model:
        more, results["trained"] = _trained(args)
        lines += ["", *more]
    header = (f"torch {torch.__version__}, {args.threads} threads; load average at the end "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.")  # fmt: skip
    text = "\n".join([header, "", *lines]) + "\n"
    print(text)
    if not args.no_write:
        command = "python benchmarks/bench_generation_int8_quality.py " + " ".join(sys.argv[1:])
        (RESULTS / "generation_int8_quality.md").write_text(
            f"# int8 vs fp32: output change\n\n`{command.strip()}`\n\n{text}"
        )
        (RESULTS / "generation_int8_quality.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
