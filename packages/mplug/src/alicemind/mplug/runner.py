"""Recipe-driven runs behind ``alicemind mplug pretrain|finetune|evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from alicemind.core.cli import CliError
from alicemind.core.cli.compiling import maybe_optimize
from alicemind.core.io import FolderNotReplaceableError
from alicemind.mplug.data import pair_records, read_records

TASKS = {"pretrain": "MPlugForPreTraining", "caption": "MPlugForCaption", "vqa": "MPlugForVQA",
         "retrieval": "MPlugForRetrieval", "grounding": "MPlugForGrounding"}  # fmt: skip


def _tokenizer(source: str | None):
    from alicemind.core.tokenization import WordPieceTokenizer

    if not source:
        raise CliError("give tokenizer=FOLDER (vocab.txt or a saved tokenizer) or model=FOLDER")
    path = Path(source)
    if (path / "vocab.txt").is_file() and not (path / "tokenizer.json").is_file():
        return WordPieceTokenizer.from_vocab_file(path / "vocab.txt")
    try:
        return WordPieceTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise CliError(f"cannot read a tokenizer from {path}: {err}") from None


def build(recipe: dict[str, Any]):
    """The task model, its processor and the task name from a recipe."""
    import alicemind.mplug as mp
    from alicemind.mplug.processor import MPlugProcessor

    task = recipe.get("task")
    if task not in TASKS:
        raise CliError(f"recipe task {task!r} is not one of {sorted(TASKS)}")
    cls = getattr(mp, TASKS[task])
    overrides = dict(recipe.get("model_config") or {})
    if recipe.get("image_size"):
        overrides["image_size"] = int(recipe["image_size"])
    tokenizer = _tokenizer(recipe.get("tokenizer") or recipe.get("model"))
    if recipe.get("model"):
        try:
            model = cls.from_pretrained(recipe["model"], **overrides)
        except (FileNotFoundError, ValueError) as err:
            raise CliError(str(err)) from None
    else:
        preset = recipe.get("scratch_config") or "mplug.test"
        model = cls(mp.MPlugConfig.from_preset(preset, **{"vocab_size": tokenizer.vocab_size, **overrides}))
    if model.config.vocab_size < tokenizer.vocab_size:
        raise CliError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    processor = MPlugProcessor(tokenizer, model.config.image_size, scale=tuple(recipe.get("crop_scale", (0.5, 1.0))))
    if task == "grounding":
        bins = tokenizer.convert_tokens_to_ids([f"[unused{i}]" for i in range(340, 677)])
        model.set_box_vocabulary(tokenizer.convert_tokens_to_ids("[unused339]"), bins)
    return model, processor, task


def _records(recipe, key: str, task: str):
    if task == "grounding" and recipe.get("split_root"):
        return _transvg_records(recipe, "train_split" if key == "train_file" else "eval_split")
    if not recipe.get(key):
        raise CliError(f"give {key}=FILE.json")
    records = read_records(recipe[key], recipe.get("image_root"))
    return pair_records(records) if task in ("pretrain", "retrieval") else _flatten_captions(records, task)


def _transvg_records(recipe, split_key: str):
    """Grounding records from the release's TransVG split files (``split_root``, ``dataset``, ``data_root``)."""
    from alicemind.mplug.grounding_data import read_transvg_split

    if not recipe.get("data_root"):
        raise CliError("give data_root=FOLDER (the images, as the release lays them out) with split_root=")
    return read_transvg_split(recipe["split_root"], str(recipe.get("dataset") or "unc"),
                              str(recipe.get(split_key) or "val"), recipe["data_root"])  # fmt: skip


def has_eval_data(recipe) -> bool:
    return bool(recipe.get("eval_file") or (recipe.get("task") == "grounding" and recipe.get("split_root")))


def eval_records(recipe, task: str):
    """The evaluation records: ``eval_file`` (JSON), or a TransVG ``eval_split`` for grounding."""
    if task == "grounding" and recipe.get("split_root"):
        return _transvg_records(recipe, "eval_split")
    if not recipe.get("eval_file"):
        raise CliError("give eval_file=FILE.json")
    return read_records(recipe["eval_file"], recipe.get("image_root"))


def _flatten_captions(records, task):
    if task != "caption":
        return records
    return [{"image": r["image"], "caption": c} for r in records for c in (r["caption"] if isinstance(r["caption"], list) else [r["caption"]])]  # fmt: skip


def run_train(recipe: dict[str, Any], *, progress_bar: bool = True, recipe_name: str | None = None) -> dict[str, Any]:
    """Pre-train or fine-tune as the recipe says; evaluates on ``eval_file`` when given (``metrics.json`` in the
    run's folder, named by ``recipe_name`` for ``reproduce``). ``scst: true`` runs self-critical training."""
    from alicemind.mplug.training import train

    if recipe.get("scst") and recipe.get("task") != "caption":
        raise CliError(f"scst is a caption option; recipe task is {recipe.get('task')!r}")
    model, processor, task = build(recipe)
    records = _records(recipe, "train_file", task)
    training = {"progress_bar": progress_bar, **dict(recipe.get("training") or {})}
    training["output_dir"] = str(recipe.get("output_dir") or f"runs/mplug-{task}")
    if recipe.get("scst"):
        records = _image_references(records)
        task = "scst"
    try:
        train(model, records, processor, task, training, vision_lr=recipe.get("vision_lr"),
              augment=bool(recipe.get("augment", True)), max_words=int(recipe.get("max_words", 30)), recipe=recipe,
              scst=dict(recipe.get("scst_options") or {}))  # fmt: skip
    except FolderNotReplaceableError as err:
        raise CliError(str(err)) from None
    task = "caption" if task == "scst" else task
    result = {"model_dir": str(Path(training["output_dir"]) / "model")}
    if has_eval_data(recipe) and task != "pretrain":
        records = eval_records(recipe, task)
        result["metrics"] = evaluate(model.eval(), processor, task, records, recipe.get("generation") or {})
        write_metrics(Path(training["output_dir"]), recipe, task, result["metrics"], recipe_name, overwrite=True)
    return result


def _image_references(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Caption records grouped per image: ``{"image", "references": [captions]}`` (SCST rewards against all)."""
    refs: dict[str, list[str]] = {}
    for r in records:
        refs.setdefault(r["image"], []).append(r["caption"])
    return [{"image": image, "references": captions} for image, captions in refs.items()]


def _check_metrics_free(folder: Path, overwrite: bool) -> Path:
    path = folder / "metrics.json"
    if path.exists() and not overwrite:
        raise CliError(f"{path} already holds an evaluation; pass --overwrite or another output_dir=")
    return path


def write_metrics(folder: Path, recipe: dict[str, Any], task: str, metrics: dict[str, Any], recipe_name: str | None,
                  *, overwrite: bool) -> Path:  # fmt: skip
    """``folder/metrics.json``: the metrics with the recipe, task, dataset, model and eval file they came from.
    An existing file is replaced only with ``overwrite`` (another evaluation's result is never lost silently)."""
    path = _check_metrics_free(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"recipe": recipe_name, "task": task, "dataset": recipe.get("dataset"), "model": recipe.get("model"),
              "eval_file": Path(recipe["eval_file"]).name if recipe.get("eval_file") else recipe.get("eval_split"),
              "metrics": metrics}  # fmt: skip
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


@torch.no_grad()
def evaluate(model, processor, task: str, records: list[dict[str, Any]], generation: dict[str, Any]) -> dict:
    """The task's metrics on evaluation records (see ``evaluation.py``)."""
    from alicemind.mplug import evaluation as ev

    pixels = processor.images([r["image"] for r in records])
    if task == "caption":
        refs = [r["caption"] if isinstance(r["caption"], list) else [r["caption"]] for r in records]
        got = processor.decode(model.generate(pixels, **{"num_beams": 5, **generation}))
        return {"CIDEr": ev.cider_d(got, refs), "BLEU-4": ev.bleu4(got, refs), "captions": got}
    if task == "vqa":
        ids, mask = processor.text([r["question"] for r in records])
        got = processor.decode(model.generate(pixels, ids, mask, **generation))
        answers = [r["answer"] if isinstance(r["answer"], list) else [r["answer"]] for r in records]
        return {"vqa_accuracy": ev.vqa_accuracy(got, answers), "answers": got}
    if task == "retrieval":
        texts, owner = [], []
        for i, r in enumerate(records):
            for c in r["caption"] if isinstance(r["caption"], list) else [r["caption"]]:
                texts.append(c)
                owner.append(i)
        ids, mask = processor.text(texts)
        i2t, t2i = ev.retrieval_scores(model, pixels, ids, mask, k_test=int(generation.get("k_test", 256)))
        tr = ev.recall_at_k(i2t, [{t for t, o in enumerate(owner) if o == i} for i in range(len(records))])
        ir = ev.recall_at_k(t2i, [{o} for o in owner])
        return {**{f"txt_r{k}": v for k, v in tr.items()}, **{f"img_r{k}": v for k, v in ir.items()}}
    if task == "grounding":
        from alicemind.mplug.grounding import cxcywh_to_corners
        from alicemind.mplug.processor import GROUNDING_BINS, load_image

        ids, mask = processor.text([r["text"] for r in records])
        bins = model.predict_bins(pixels, ids, mask).float() / (GROUNDING_BINS - 1)
        sizes = torch.tensor([load_image(r["image"]).size for r in records], dtype=torch.float)
        boxes = cxcywh_to_corners(bins * sizes.repeat(1, 2))  # (cx, cy, w, h) x (width, height, width, height)
        return {"accuracy@0.5": ev.grounding_accuracy(boxes, torch.tensor([r["bbox"] for r in records]).float())}
    raise CliError(f"task {task!r} has no evaluation")


def run_evaluate(recipe: dict[str, Any], *, recipe_name: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate ``model`` on ``eval_file`` (or a grounding ``eval_split``); writes ``metrics.json`` into
    ``output_dir`` when given (see :func:`write_metrics`)."""
    if not has_eval_data(recipe):
        raise CliError("give eval_file=FILE.json")
    out = Path(recipe["output_dir"]) if recipe.get("output_dir") else None
    if out is not None:
        _check_metrics_free(out, overwrite)  # before the evaluation, not after it
    model, processor, task = build(recipe)
    model = maybe_optimize(model.eval())  # under --compile the model compiles its own parts
    metrics = evaluate(model, processor, task, eval_records(recipe, task), recipe.get("generation") or {})
    if out is not None:
        write_metrics(out, recipe, task, metrics, recipe_name, overwrite=overwrite)
    return metrics
