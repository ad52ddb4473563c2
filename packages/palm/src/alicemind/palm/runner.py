"""What the ``alicemind palm`` verbs do, as plain functions over recipe dicts (see ``recipes/*.yaml``)."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from alicemind.core.cli import CliError
from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.io import register_saved_files
from alicemind.core.metrics import corpus_bleu, ngram_bleu, rouge
from alicemind.core.tokenization import BaseTokenizer
from alicemind.core.training import Trainer, TrainingConfig
from alicemind.palm.config import PalmConfig
from alicemind.palm.convert import load_model, locate_checkpoint
from alicemind.palm.data import encode_pairs, encode_sources, read_pairs, seq2seq_collator
from alicemind.palm.model import PalmForConditionalGeneration
from alicemind.palm.tokenization import detokenize, load_tokenizer

logger = logging.getLogger(__name__)
# finetune writes these beside the model: a later save into that folder may replace them.
register_saved_files("eval_predictions.txt", "eval_metrics.json")


def resolve_checkpoint(spec: str | Path) -> Path:
    """A local path, or a registered checkpoint name (downloaded and extracted on first use)."""
    path = Path(spec)
    if path.exists():
        return path
    import alicemind.palm.hub  # noqa: F401  (registers the releases)
    from alicemind.core.hub import fetch_checkpoint, get_checkpoint

    try:
        get_checkpoint(str(spec))
    except KeyError as err:
        raise FileNotFoundError(f"{spec!r} is neither a path nor a registered checkpoint ({err.args[0]})") from None
    return fetch_checkpoint(str(spec))


def load_model_and_tokenizer(spec: str | Path, tokenizer: str | Path | None = None, **overrides: Any):
    """(model, tokenizer, folder) from a checkpoint path or name; the tokenizer defaults to the checkpoint's."""
    folder, _ = locate_checkpoint(resolve_checkpoint(spec))
    model = load_model(folder, **overrides)
    tok = load_tokenizer(tokenizer or (folder if folder.is_dir() else folder.parent))
    return model, tok, folder


def generation_config(model: PalmForConditionalGeneration, values: dict[str, Any] | None) -> GenerationConfig:
    """The recipe's ``generation`` section over the model's special-token defaults."""
    return GenerationConfig.from_dict({**model.generation_defaults(), **(values or {})})


def generate_texts(
    model: PalmForConditionalGeneration,
    tokenizer: BaseTokenizer,
    sources: Sequence[str],
    config: GenerationConfig,
    *,
    max_source_length: int,
    batch_size: int = 32,
    progress: bool = True,
) -> list[str]:
    """The best output for each of ``sources``, in their order.

    Sources are decoded in batches of similar length, longest first, so little work goes to padding and memory
    peaks at the start; a progress bar counts sources. Chinese outputs lose the spaces WordPiece decoding puts
    between characters.
    """
    model.eval()
    device = next(model.parameters()).device
    outputs: list[str] = [""] * len(sources)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]), reverse=True)
    with tqdm(total=len(sources), desc="generate", unit="text", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = encode_sources(tokenizer, [sources[i] for i in rows], max_source_length=max_source_length)
            result = generate(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), config)
            step = config.num_return_sequences  # the best sequence of each source comes first
            for row, index in zip(range(0, result.sequences.shape[0], step), rows):
                ids = result.sequences[row, 1 : 1 + int(result.lengths[row])].tolist()
                text = tokenizer.decode(ids, skip_special_tokens=True)
                outputs[index] = detokenize(text) if model.config.architecture == "sofa-zh" else text.strip()
            bar.update(len(rows))
    return outputs


def evaluate_texts(predictions: Sequence[str], references: Sequence[str], *, lang: str) -> dict[str, float]:
    """BLEU-1..4 and ROUGE-1/2/L: characters for Chinese (as sofa's DuReader evaluation), words for English."""
    if lang == "zh":
        scores = ngram_bleu(predictions, references, tokenize="char")
        scores["bleu"] = corpus_bleu(predictions, references, tokenize="zh")
    else:
        scores = ngram_bleu(predictions, references, tokenize="whitespace")
        scores["bleu"] = corpus_bleu(predictions, references)
    r = rouge(predictions, references, lang=lang, use_stemmer=lang == "en")
    scores.update({"rouge-1": r["rouge1"], "rouge-2": r["rouge2"], "rouge-l": r["rougeL"]})
    return scores


def _training_config(values: dict[str, Any]) -> TrainingConfig:
    return TrainingConfig.from_dict(dict(values))


def _child_tuning(recipe: dict[str, Any]) -> list:
    """ChildTuning from the recipe's ``child_tuning`` (F or D) and ``reserve_p`` keys (alicemind-childtuning)."""
    if not recipe.get("child_tuning") and recipe.get("reserve_p") is None:
        return []
    try:
        from alicemind.childtuning import child_tuning_from_recipe
    except ImportError:
        raise CliError("child_tuning needs alicemind-childtuning (pip install alicemind-childtuning)") from None
    try:
        # No published p exists for generation tasks, so reserve_p must be given.
        return [child_tuning_from_recipe(recipe)]
    except ValueError as err:
        raise CliError(f"child_tuning: {err}") from None


def _data_files(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's ``data`` section with ``train``/``valid`` filled from ``data_dir`` (``train.*``, ``dev.*``)
    when the recipe names a folder (the generic ``seq2seq`` recipe)."""
    data = dict(recipe["data"])
    if recipe.get("data_dir") or data.get("columns") is not None:
        from alicemind.core.data import split_files

        files = split_files(recipe.get("data_dir"), {"train": data.get("train"), "dev": data.get("valid")})
        data["train"], data["valid"] = files["train"], files.get("dev")
    return data


def _pairs(data: dict[str, Any], split: str, limit: int | None) -> list[tuple[str, str]]:
    """(source, target) pairs: core's generic column reader when the recipe names ``columns`` (TSV, CSV or
    JSONL, by header name or index), else the release formats of :func:`read_pairs`."""
    if data.get("columns") is None:
        return read_pairs(data[split], limit=limit)
    from alicemind.core.data import read_columns
    from alicemind.core.data.own_data import SOURCE_NAMES, TARGET_NAMES

    columns = data["columns"]
    wanted = {"source": columns.get("source"), "target": columns.get("target")}
    rows = read_columns(data[split], wanted, {"source": SOURCE_NAMES, "target": TARGET_NAMES},
                        header=data.get("header", "auto"), format=data.get("format") or "auto",
                        positions={"source": 0, "target": 1})  # fmt: skip
    return [(r["source"], r["target"]) for _, r in rows][:limit]


def finetune(recipe: dict[str, Any], *, load=None) -> dict[str, Any]:
    """Fine-tune on ``data.train``; evaluate generation on ``data.valid`` (if given); save to the output folder.

    ``load(model, tokenizer, **config)`` returns ``(model, tokenizer, folder)``; default
    :func:`load_model_and_tokenizer` (a family built on PALM, e.g. PLUG, passes its own loader).
    Returns ``{"output_dir", "train_loss", "metrics"}``.
    """
    from alicemind.palm.pretraining import run_identity

    data, training = _data_files(recipe), dict(recipe["training"])
    if not data.get("train"):
        raise FileNotFoundError("the recipe has no training data: set data.train=PATH (and data.valid=PATH)")
    load = load or load_model_and_tokenizer
    model, tokenizer, _ = load(recipe["model"], recipe.get("tokenizer"), **recipe.get("config", {}))
    limit = data.get("limit")
    features = encode_pairs(
        tokenizer,
        _pairs(data, "train", limit),
        max_source_length=data["max_source_length"],
        max_target_length=data["max_target_length"],
    )
    loader = DataLoader(
        features,
        batch_size=training.get("per_device_batch_size") or 16,
        shuffle=True,
        collate_fn=seq2seq_collator(model.config.pad_token_id),
        generator=torch.Generator().manual_seed(training.get("seed", 42)),
    )
    smoothing = float(recipe.get("label_smoothing", 0.0))
    optimizer = scheduler = None
    if (recipe.get("optim") or {}).get("style") == "presumm-noam":
        optimizer, scheduler = presumm_optimizer(model, recipe["optim"])
    trainer = Trainer(
        model,
        _training_config(training),
        loader,
        compute_loss=lambda m, batch: m(**batch, label_smoothing=smoothing),
        optimizer=optimizer,
        scheduler=scheduler,
        callbacks=_child_tuning(recipe),
        run_identity=run_identity(recipe, tokenizer, {"train": data["train"]}),
    )
    state = trainer.train()
    out = Path(training.get("output_dir") or "runs/palm-finetune") / "final"
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    trainer.finalize()
    metrics = {}
    if data.get("valid"):
        pairs = _pairs(data, "valid", data.get("eval_limit"))
        predictions = generate_texts(
            trainer.model,
            tokenizer,
            [s for s, _ in pairs],
            generation_config(trainer.model, recipe.get("generation")),
            max_source_length=data["max_source_length"],
        )
        metrics = evaluate_texts(predictions, [t for _, t in pairs], lang=recipe.get("lang", "zh"))
        (out / "eval_predictions.txt").write_text("\n".join(predictions) + "\n", encoding="utf-8")
        (out / "eval_metrics.json").write_text(json.dumps(metrics, indent=1))
    return {"output_dir": str(out), "train_loss": state.loss, "metrics": metrics}


def pretrain(recipe: dict[str, Any]) -> dict[str, Any]:
    """Joint PALM pre-training (MLM on the context + generation of the continuation) on a raw-text corpus.

    The loss is ``mlm_weight * mlm_loss + lm_loss`` (recipe key ``mlm_weight``, default 1.0); 0 keeps the masked
    encoder input but trains the decoder objective only (the paper's autoregressive-only ablation).
    """
    from alicemind.core.data import read_documents
    from alicemind.palm.pretraining import (
        PalmForPreTraining,
        PretrainingCollator,
        PretrainingDataConfig,
        build_instances,
        run_identity,
    )

    if not recipe.get("corpus"):
        raise FileNotFoundError("the recipe has no corpus: set corpus=PATH (text, blank line between documents)")
    mlm_weight = recipe.get("mlm_weight", 1.0)
    if isinstance(mlm_weight, bool) or not isinstance(mlm_weight, (int, float)) or not mlm_weight >= 0:
        raise CliError(f"mlm_weight must be a number >= 0, got {mlm_weight!r}")
    tokenizer = load_tokenizer(recipe["tokenizer"])
    model_spec = recipe["model"]
    if model_spec.get("init"):  # continue from a checkpoint (its MLM head is random if it has none)
        model = PalmForPreTraining.from_pretrained(locate_checkpoint(resolve_checkpoint(model_spec["init"]))[0])
    else:
        specials = dict(
            vocab_size=len(tokenizer),
            real_vocab_size=None,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id,
            eos_token_id=tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id,
        )
        config = PalmConfig.from_preset(model_spec["preset"], **{**specials, **model_spec.get("config", {})})
        model = PalmForPreTraining(config)
    data = PretrainingDataConfig(**recipe["data"])
    texts = [" ".join(doc) for doc in read_documents(recipe["corpus"])]
    docs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    c = model.config
    instances = build_instances(docs, data, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
                                rng=random.Random(recipe["training"].get("seed", 42)))  # fmt: skip
    collate = PretrainingCollator(
        pad_token_id=c.pad_token_id,
        mask_token_id=tokenizer.mask_token_id,
        vocab_size=c.real_vocab_size or c.vocab_size,
        special_ids=tokenizer.all_special_ids,
        mlm_probability=data.mlm_probability,
    )
    training = dict(recipe["training"])
    loader = DataLoader(instances, batch_size=training.get("per_device_batch_size") or 32, shuffle=True,
                        collate_fn=collate)  # fmt: skip
    weight = float(mlm_weight)
    identity = run_identity(recipe, tokenizer, {"corpus": recipe["corpus"]})
    trainer = Trainer(model, _training_config(training), loader, run_identity=identity,
                      compute_loss=lambda m, batch: m(**batch, mlm_weight=weight))  # fmt: skip
    state = trainer.train()
    out = Path(training.get("output_dir") or "runs/palm-pretrain") / "final"
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    trainer.finalize()
    return {"output_dir": str(out), "instances": len(instances), "history": state.log_history}


def presumm_optimizer(model: torch.nn.Module, values: dict[str, Any]):
    """PreSumm's two Adams as one optimizer with two groups (encoder = ``embeddings``/``encoder``, decoder = the
    rest), each with the Noam schedule ``lr * min(step^-0.5, step * warmup^-1.5)`` (peak ``lr / sqrt(warmup)``)."""
    encoder, decoder = [], []
    for name, param in model.named_parameters():
        (encoder if name.startswith(("embeddings.", "encoder.")) else decoder).append(param)
    groups = [
        {"params": encoder, "lr": float(values["lr_encoder"]), "warmup": int(values["warmup_encoder"])},
        {"params": decoder, "lr": float(values["lr_decoder"]), "warmup": int(values["warmup_decoder"])},
    ]
    betas = tuple(values.get("betas", (0.9, 0.999)))
    optimizer = torch.optim.Adam(groups, betas=betas, eps=float(values.get("eps", 1e-9)))

    def noam(warmup: int):
        return lambda step: min((step + 1) ** -0.5, (step + 1) * warmup**-1.5)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [noam(g["warmup"]) for g in groups])
    return optimizer, scheduler


def reproduce(recipe: dict[str, Any], *, only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Fine-tune and evaluate every task of the published table; rows of ours beside published."""
    from alicemind.core.cli import apply_overrides, load_recipe

    data_dir = Path(recipe.get("data_dir") or ".")
    rows = []
    for name, task in recipe["tasks"].items():
        if only and name not in only:
            continue
        task_recipe = load_recipe("palm", task["recipe"])
        task_recipe = apply_overrides(task_recipe, list(recipe.get("overrides") or []))
        task_recipe["data"]["train"] = str(data_dir / task["train"])
        task_recipe["data"]["valid"] = str(data_dir / task["valid"])
        # One folder per task: tasks sharing an output_dir would otherwise be taken for one run.
        base = task_recipe["training"].get("output_dir") or "runs/palm-reproduce"
        task_recipe["training"] = {**task_recipe["training"], "output_dir": str(Path(base) / name)}
        result = finetune(task_recipe)
        published = task_recipe.get("published", {})
        for metric, value in published.items():
            rows.append({"task": name, "metric": metric, "ours": result["metrics"].get(metric), "published": value})
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`reproduce` rows."""
    lines = ["| task | metric | ours | published |", "|---|---|---|---|"]
    for r in rows:
        ours = "-" if r["ours"] is None else f"{r['ours']:.4f}"
        lines.append(f"| {r['task']} | {r['metric']} | {ours} | {r['published']:.4f} |")
    return "\n".join(lines)
