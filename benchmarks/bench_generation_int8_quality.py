"""How much the int8 path (``palm generate --int8-weights``, core.ops.int8) changes PALM's outputs.

A fixed set of sources decoded by the same model in fp32 and with int8 linears, greedy and beam 4, exactly
``--new`` tokens (EOS banned): the share of outputs that are identical, of tokens that agree position by position,
and ROUGE-1/2/L F1 of the int8 outputs scored against the fp32 outputs (token ids as words). The model is the
palm.ch.base shape with random weights (the benchmarks' model; there is no trained checkpoint offline), so these
figures are a bound on the change rather than a task score: random weights give near-flat next-token
distributions, where a small perturbation flips the argmax far more often than in a trained model.

It then measures a trained model, where the argmax is confident: a small PALM trained (in the script, a few
minutes) to reverse its source, decoded greedily on held-out sources in fp32 and in int8, exact match against
the references for both.

    python benchmarks/bench_generation_int8_quality.py [--sources 32 --src 64 --new 32 --threads 2]
                                                      [--trained-steps 600 --trained-hidden 256]
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


def _reverse_task(g: torch.Generator, n: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` random sources of 8-16 tokens in ``[3, vocab)`` (0 pad, 1 start, 2 EOS), their mask, and targets: the
    source reversed, then EOS."""
    lengths = torch.randint(8, 17, (n,), generator=g)
    mask = (torch.arange(16)[None] < lengths[:, None]).long()
    sources = torch.randint(3, vocab, (n, 16), generator=g) * mask
    targets = torch.zeros(n, 17, dtype=torch.long)
    for i, length in enumerate(lengths.tolist()):  # data preparation, not the model's hot path
        targets[i, :length] = sources[i, :length].flip(0)
        targets[i, length] = 2
    return sources, mask, targets


def _trained(args) -> tuple[list[str], dict]:
    """A small PALM trained to reverse its source, decoded greedily in fp32 and in int8 on a held-out set: exact
    match against the references for both, and how far int8 moves from fp32."""
    from alicemind.palm import PalmConfig, PalmForConditionalGeneration

    start = time.perf_counter()
    vocab = 64
    torch.manual_seed(0)
    config = PalmConfig.from_preset(
        "palm.ch.base", vocab_size=vocab, real_vocab_size=None, hidden_size=args.trained_hidden,
        num_hidden_layers=2, dec_hidden_layers=2, num_attention_heads=4, intermediate_size=4 * args.trained_hidden,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = PalmForConditionalGeneration(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(3)
    for _ in range(args.trained_steps):
        sources, mask, targets = _reverse_task(g, 32, vocab)
        loss = model(sources, attention_mask=mask, labels=targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    sources, mask, targets = _reverse_task(torch.Generator().manual_seed(4), 256, vocab)
    gen = GenerationConfig(**model.generation_defaults(), max_new_tokens=17)
    outputs = {}
    for precision in ("fp32", "int8"):
        if precision == "int8":
            count = quantize_linear_weights(model)
        with torch.inference_mode():
            result = generate(model, sources, mask, gen)
        outputs[precision] = [row[1 : 1 + n].tolist() for row, n in zip(result.sequences, result.lengths.tolist())]
    references = [row[: int((row != 0).sum())].tolist() for row in targets]
    exact = {p: 100 * sum(a == b for a, b in zip(o, references, strict=True)) / len(references)
             for p, o in outputs.items()}  # fmt: skip
    same = 100 * sum(a == b for a, b in zip(outputs["fp32"], outputs["int8"], strict=True)) / len(references)
    lines = [
        "## Trained model: a small PALM that reverses its source",
        "",
        f"hidden {args.trained_hidden}, 2 + 2 layers, vocabulary {vocab}; {args.trained_steps} steps of batch 32 "
        f"(AdamW 1e-3, final loss {float(loss.detach()):.3f}); 256 held-out sources of 8-16 tokens (seed 4), greedy, "
        f"{count} maps in int8; {time.perf_counter() - start:.0f} s.",
        "",
        "| weights | exact match with the reference % |",
        "|---|---|",
        f"| fp32 | {exact['fp32']:.1f} |",
        f"| int8 | {exact['int8']:.1f} |",
        "",
        f"int8 outputs identical to fp32's: {same:.1f}%.",
    ]
    return lines, {"exact_match": exact, "identical_to_fp32": same, "final_loss": float(loss.detach())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=32)
    p.add_argument("--src", type=int, default=64)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trained-steps", type=int, default=600, help="training steps of the reverse-task model")
    p.add_argument("--trained-hidden", type=int, default=256)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lines, results = _random_weights(args)
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
