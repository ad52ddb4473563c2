"""``alicemind structbert demo``: pre-train a small StructBERT on a laptop CPU, fine-tune it, compare with scratch.

What the data is, honestly:
- The pre-training corpus (``data/demo_corpus.txt``) is *generated* by :func:`generate_demo_corpus` from small
  hand-written lexicons of four topics (cooking, garden, football, computers). Each document follows one person
  through ordered steps ("first ... then ... finally"), so it has what StructBERT's objectives need: word order
  inside sentences (MLM, WSO), sentence order inside a document and document identity (SSO).
- The classification task (``data/demo_topics/``) is 80 real sentences written by hand for this demo, four
  topics, 20 each: 32 for training and 48 for evaluation. It uses the same everyday vocabulary as the corpus
  in natural phrasing; none of its sentences occur in the corpus.
Nothing is downloaded. Numbers from a few minutes of CPU are illustrative, not a benchmark.
"""

from __future__ import annotations

import copy
import importlib.resources
import time
from pathlib import Path
from typing import Any

import numpy as np

from alicemind.core.cli import load_recipe
from alicemind.core.data import Columns, TaskSpec, register_task

DATA_DIR = importlib.resources.files("alicemind.structbert") / "data"
# The hand-written topic task, registered so that every verb (finetune, evaluate, predict) can use it.
DEMO_TASK = register_task(
    TaskSpec(
        name="demo-topics",
        format="tsv",
        files={"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"},
        columns=Columns(text_a=0, label=1),
        split_columns={"test": Columns(text_a=1, guid=0)},
        labels=("cooking", "garden", "football", "computers"),
        metrics=("accuracy",),
    )
)
QUICK_PRETRAINING = {"max_steps": 150, "lr": 2e-3, "eval_every": 0}  # --quick: about 20 s on 2 cores

NAMES = (
    "anna ben carla david emma felix grace henry iris jack kate leo maria nick olga paul rosa sam tina victor "
    "wendy yusuf zoe omar lena marco nina peter sara tom"
).split()
# Markers sit at a fixed rank: the order of two segments is readable from them (what SSO has to learn).
STEPS = ("first", "next", "then", "after that", "later", "soon after", "towards the end", "finally")
TOPICS: dict[str, dict[str, list[str]]] = {
    "cooking": {
        "verb": "chops stirs boils bakes tastes slices mixes pours fries roasts grates simmers".split(),
        "adj": "fresh hot sweet salty warm thin golden spicy".split(),
        "noun": "onions soup bread pasta sauce carrots dough rice eggs cheese beans herbs butter milk".split(),
        "place": ["in the kitchen", "on the stove", "in the oven", "in a pan", "in the pot", "on the board"],
    },
    "garden": {
        "verb": "waters plants digs prunes picks trims mows rakes repots weeds".split(),
        "adj": "young ripe tall green wet dry small old".split(),
        "noun": "tomatoes roses seeds lettuce bulbs hedge lawn leaves herbs beans sunflowers pumpkins".split(),
        "place": ["in the garden", "along the fence", "in the greenhouse", "by the shed", "in the yard", "in a pot"],
    },
    "football": {
        "verb": "kicks passes heads shoots saves crosses tackles chases blocks catches".split(),
        "adj": "long quick high low hard late clever wild".split(),
        "noun": "ball corner penalty cross shot pass free kick header tackle goal".split(),
        "place": ["on the pitch", "in the box", "near the goal", "at the stadium", "in the final", "on the wing"],
    },
    "computers": {
        "verb": "restarts installs debugs copies saves compiles types downloads deletes updates".split(),
        "adj": "new old slow fast broken shared large small".split(),
        "noun": "laptop script files program server code database printer drive keyboard update password".split(),
        "place": ["on the server", "at the desk", "in the office", "on the laptop", "in the terminal", "at home"],
    },
}


def generate_demo_corpus(num_documents: int = 400, seed: int = 0) -> str:
    """The demo corpus as text (one sentence per line, a blank line between documents); deterministic."""
    rng = np.random.default_rng(seed)
    topics = sorted(TOPICS)
    docs = []
    for _ in range(num_documents):
        lex = TOPICS[topics[int(rng.integers(len(topics)))]]
        name = NAMES[int(rng.integers(len(NAMES)))]
        length = int(rng.integers(5, len(STEPS) + 1))
        ranks = sorted(rng.choice(len(STEPS) - 1, size=length - 1, replace=False).tolist()) + [len(STEPS) - 1]
        sentences = []
        for rank in ranks:
            pick = {k: v[int(rng.integers(len(v)))] for k, v in lex.items()}
            sentences.append(f"{STEPS[rank]} {name} {pick['verb']} the {pick['adj']} {pick['noun']} {pick['place']}.")
        docs.append("\n".join(s[0].upper() + s[1:] for s in sentences))
    return "\n\n".join(docs) + "\n"


def demo_corpus_path() -> Path:
    """The shipped corpus file (``generate_demo_corpus()`` written out)."""
    return Path(str(DATA_DIR / "demo_corpus.txt"))


def demo_task_dir() -> Path:
    """The folder of the hand-written topic task (train.tsv, dev.tsv, test.tsv)."""
    return Path(str(DATA_DIR / "demo_topics"))


def run_demo(output_dir: str | Path = "runs/demo", *, quick: bool = False, progress_bar: bool = True) -> dict[str, Any]:
    """Pre-train on the demo corpus, fine-tune the result and a from-scratch twin, print and return the table."""
    from alicemind.structbert.finetuning import run_finetune
    from alicemind.structbert.pretraining import run_pretraining

    output_dir = Path(output_dir)
    started = time.perf_counter()
    pre = load_recipe("structbert", "pretrain-demo")
    pre.update(corpus=str(demo_corpus_path()), output_dir=str(output_dir / "pretrain"))
    if quick:
        pre["training"].update(QUICK_PRETRAINING)
    print(f"[1/3] pre-training StructBERT (MLM + WSO + SSO) on {demo_corpus_path().name} ...")
    pretrained = run_pretraining(pre, progress_bar=progress_bar)

    fine = load_recipe("structbert", "demo")
    fine.update(data_dir=str(demo_task_dir()))
    results = {}
    for label, init in (("pre-trained", str(pretrained.model_dir)), ("from scratch", None)):
        print(f"[{2 if init else 3}/3] fine-tuning the {label} model on the hand-written topic task ...")
        recipe = copy.deepcopy(fine)
        recipe.update(model=init, tokenizer=str(pretrained.model_dir), output_dir=str(output_dir / label.split()[-1]))
        if init is None:
            recipe["scratch_config"] = str(pretrained.model_dir / "config.json")
        results[label] = run_finetune(recipe, progress_bar=progress_bar)
    table = {
        "pretrain_steps": pretrained.log_history[-1]["step"] if pretrained.log_history else 0,
        "initial": pretrained.initial,
        "final": pretrained.final,
        "accuracy_pretrained": results["pre-trained"].metrics["demo-topics"]["accuracy"],
        "accuracy_scratch": results["from scratch"].metrics["demo-topics"]["accuracy"],
        "seconds": time.perf_counter() - started,
    }
    print(format_table(table))
    return table


def format_table(t: dict[str, Any]) -> str:
    """The demo's results as a small text table."""
    i, f = t["initial"], t["final"]
    rows = [
        ("held-out MLM loss", f"{i.get('mlm_loss', float('nan')):.3f}", f"{f.get('mlm_loss', float('nan')):.3f}"),
        ("held-out WSO loss", f"{i.get('wso_loss', float('nan')):.3f}", f"{f.get('wso_loss', float('nan')):.3f}"),
        ("held-out SSO loss", f"{i.get('sso_loss', float('nan')):.3f}", f"{f.get('sso_loss', float('nan')):.3f}"),
        ("held-out SSO accuracy (chance 0.333)", f"{i.get('sso_acc', 0):.3f}", f"{f.get('sso_acc', 0):.3f}"),
    ]
    lines = [f"pre-training: {t['pretrain_steps']} steps", f"{'':40s}{'start':>10s}{'end':>10s}"]
    lines += [f"{name:40s}{a:>10s}{b:>10s}" for name, a, b in rows]
    lines += [
        "topic classification (4 classes, 32 train / 48 dev sentences, dev accuracy):",
        f"  {'pre-trained StructBERT':38s}{t['accuracy_pretrained']:>10.3f}",
        f"  {'same model from scratch':38s}{t['accuracy_scratch']:>10.3f}",
        f"total {t['seconds']:.0f} s",
    ]
    return "\n".join(lines)
