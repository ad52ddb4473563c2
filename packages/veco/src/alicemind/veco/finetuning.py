"""What ``alicemind veco finetune`` / ``evaluate`` do, as plain functions over recipe dicts (``recipes/*.yaml``).

Task kinds: ``classification`` (XNLI, PAWS-X), ``qa`` (XQuAD, MLQA, TyDiQA-GoldP; doc stride), ``tagging``
(PAN-X, UDPOS; seqeval-style entity F1 / token accuracy), ``retrieval`` (Tatoeba, BUCC; zero-shot, mean-pooled
layer states, cosine) and ``translation`` (WMT14; label-smoothed CE, polynomial decay, checkpoint averaging,
beam search, sacrebleu). Cross-lingual evaluation runs every test language of the recipe and returns one row
per language plus the average.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from alicemind.core.cli.compiling import inference_buckets
from alicemind.core.data import DataCollatorWithPadding
from alicemind.core.io import register_saved_files
from alicemind.core.metrics import accuracy, corpus_bleu, span_f1, squad_metrics
from alicemind.core.training import Trainer, TrainingConfig
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.veco import data as task_data
from alicemind.veco.convert import find_fairseq_file
from alicemind.veco.tokenization import VecoTokenizer

logger = logging.getLogger(__name__)
register_saved_files("eval_results.json")
KINDS = ("classification", "qa", "tagging", "retrieval", "translation")


# -- models and tokenizers ----------------------------------------------------------------------------------------
def resolve_checkpoint(spec: str | Path) -> Path:
    """A local folder, or a registered checkpoint name (downloaded and extracted on first use) -> the model folder."""
    path = Path(spec)
    if not path.exists():
        import alicemind.veco.hub  # noqa: F401  (registers the releases)
        from alicemind.core.hub import fetch_checkpoint, get_checkpoint

        try:
            get_checkpoint(str(spec))
        except KeyError as err:
            raise FileNotFoundError(f"{spec!r} is neither a path nor a registered checkpoint ({err.args[0]})") from None
        path = Path(fetch_checkpoint(str(spec)))
    return find_model_folder(path)


def find_model_folder(path: Path) -> Path:
    """The folder holding the weights: ``path`` itself or its one model sub-folder (an extracted release tarball)."""
    markers = ("config.json", "model.pt", "model.safetensors", "pytorch_model.bin")
    if path.is_file() or any((path / m).is_file() for m in markers):
        return path
    found = sorted({p.parent for m in markers for p in path.rglob(m)})
    if len(found) != 1:
        raise FileNotFoundError(f"{path} holds {len(found)} model folders {[str(f) for f in found]}; name one")
    return found[0]


def load_tokenizer(folder: Path, spec: str | Path | None = None) -> VecoTokenizer:
    """The recipe's tokenizer folder, else the checkpoint's (``sentencepiece.bpe.model`` [+ ``dict.txt``])."""
    source = Path(spec) if spec else folder
    if source.is_file():
        return VecoTokenizer(source)
    if (source / "tokenizer_config.json").is_file():
        return VecoTokenizer.from_pretrained(source)
    model_file = source / "sentencepiece.bpe.model"
    if not model_file.is_file():
        raise FileNotFoundError(f"no tokenizer in {source}: it needs sentencepiece.bpe.model (and dict.txt for NLG)")
    dictionary = source / "dict.txt"
    return VecoTokenizer(model_file, dictionary=dictionary if dictionary.is_file() else None)


def model_class(kind: str):
    from alicemind.veco import model as nlu
    from alicemind.veco.seq2seq import VecoForConditionalGeneration

    classes = {"classification": nlu.VecoForSequenceClassification, "qa": nlu.VecoForQuestionAnswering,
               "tagging": nlu.VecoForTokenClassification, "retrieval": nlu.VecoModel,
               "translation": VecoForConditionalGeneration}  # fmt: skip
    if kind not in classes:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {KINDS}")
    return classes[kind]


def load_model(recipe: dict[str, Any]):
    """(model, tokenizer, folder) of the recipe's ``model`` for its task kind."""
    kind = recipe["kind"]
    folder = resolve_checkpoint(recipe["model"])
    overrides = dict(recipe.get("config") or {})
    if kind in ("classification", "tagging") and recipe.get("labels") and (folder / "config.json").is_file():
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if not cfg.get("id2label") or len(cfg["id2label"]) != len(recipe["labels"]):
            overrides["num_labels"] = len(recipe["labels"])
    load = {k: v for k, v in (recipe.get("load") or {}).items() if v is not None}
    fairseq_folder = find_fairseq_file(folder) is not None and not (folder / "model.safetensors").is_file()
    if kind == "translation" and fairseq_folder:
        overrides.update(load)  # keep_decoder_layers / resized_dict_map / dictionary: the release's options only
    model = model_class(kind).from_pretrained(folder, **overrides)
    tokenizer = load_tokenizer(folder, recipe.get("tokenizer"))
    if fairseq_folder and load.get("dictionary"):  # a resized language-pair dictionary gives the ids too
        tokenizer = VecoTokenizer(tokenizer._model_bytes, dictionary=load["dictionary"])
    return model, tokenizer, folder


# -- features ---------------------------------------------------------------------------------------------------
def build_features(kind: str, tokenizer, rows, recipe: dict[str, Any]):
    """Model inputs of one file's rows (and what evaluation needs to read predictions back)."""
    max_length = recipe.get("max_length", 128)
    if kind == "classification":
        return task_data.classification_features(tokenizer, rows, recipe["labels"], max_length), None
    if kind == "tagging":
        return task_data.tagging_features(tokenizer, rows, recipe["labels"], max_length)
    if kind == "qa":
        return task_data.qa_features(
            tokenizer, rows, max_length=max_length, doc_stride=recipe.get("doc_stride", 128)
        ), None
    if kind == "translation":
        from alicemind.veco.translation import encode_translation_pairs

        return encode_translation_pairs(tokenizer, rows, recipe["src_lang"], recipe["tgt_lang"],
                                        max_length=recipe.get("max_pieces", 250)), None  # fmt: skip
    raise ValueError(f"task kind {kind!r} has no training features")


def _collate(pad_id: int, bucket_lengths=None):
    pad = DataCollatorWithPadding(pad_id, bucket_lengths=bucket_lengths)
    model_keys = ("input_ids", "labels", "decoder_input_ids", "start_positions", "end_positions")

    def collate(features):
        batch = pad([{k: f[k] for k in model_keys if k in f} for f in features])
        batch.pop("attention_mask", None)  # the models derive it from the pad id
        return batch

    return collate


# -- training ---------------------------------------------------------------------------------------------------
def train(model, tokenizer, features, recipe: dict[str, Any], files: dict[str, str]):
    """Core's Trainer over ``features``; returns the trainer (its model trained, checkpoints in output_dir)."""
    training = dict(recipe["training"])
    loader = DataLoader(
        features,
        batch_size=training.get("per_device_batch_size") or 16,
        shuffle=True,
        collate_fn=_collate(model.config.pad_token_id),
        generator=torch.Generator().manual_seed(training.get("seed", 42)),
    )
    smoothing = float(recipe.get("label_smoothing") or 0.0)
    compute_loss = None
    if recipe["kind"] == "translation":
        compute_loss = lambda m, batch: m(**batch, label_smoothing=smoothing)  # noqa: E731
    identity = recipe_identity(recipe, files=files, vocab=tokenizer.get_vocab(), distributions=("alicemind-veco",))
    trainer = Trainer(model, TrainingConfig.from_dict(training), loader, compute_loss=compute_loss,
                      run_identity=identity)  # fmt: skip
    trainer.train()
    return trainer


def average_checkpoints(model, output_dir: str | Path, last: int) -> list[int]:
    """Load into ``model`` the mean of the weights of the newest ``last`` training checkpoints in ``output_dir``
    (fairseq's ``average_checkpoints.py --num-epoch-checkpoints``); returns the steps averaged."""
    from alicemind.core.checkpoint import load_safetensors
    from alicemind.core.training.checkpoint import list_checkpoints

    found = list_checkpoints(Path(output_dir))[-last:]
    if not found:
        raise FileNotFoundError(f"no training checkpoints in {output_dir} to average")
    total: dict[str, torch.Tensor] = {}
    for _, path in found:
        for key, value in load_safetensors(path / "model.safetensors").items():
            total[key] = total.get(key, 0) + value.double()
    device = next(model.parameters()).device
    averaged = {k: (v / len(found)).to(model.state_dict()[k].dtype).to(device) for k, v in total.items()}
    model.load_state_dict(averaged, strict=True)
    return [step for step, _ in found]


# -- prediction and metrics ----------------------------------------------------------------------------------
@torch.no_grad()
def _forward_batches(model, features, pad_id: int, batch_size: int, desc: str, progress: bool):
    model.eval()
    device = next(model.parameters()).device
    # Under --compile, batch widths fall into a few buckets (one graph each), the longest feature the last one.
    longest = max((len(f["input_ids"]) for f in features), default=1)
    collate = _collate(pad_id, inference_buckets(longest))
    for start in tqdm(range(0, len(features), batch_size), desc=desc, disable=not progress, leave=False):
        batch = collate(features[start : start + batch_size])
        ids = batch["input_ids"].to(device)
        yield start, ids, model(ids)


def evaluate_rows(model, tokenizer, kind: str, rows, recipe: dict[str, Any], *, progress: bool = False):
    """Metrics of ``model`` on one file's rows (fractions in [0, 1])."""
    pad, batch_size = model.config.pad_token_id, recipe.get("eval_batch_size", 64)
    if kind == "retrieval":
        return retrieval_metrics(model, tokenizer, rows, recipe, progress=progress)
    if kind == "translation":
        return translation_metrics(model, tokenizer, rows, recipe)
    features, extra = build_features(kind, tokenizer, rows, recipe)
    if kind == "classification":
        preds = []
        for _, _, out in _forward_batches(model, features, pad, batch_size, "evaluate", progress):
            preds += out.logits.argmax(-1).tolist()
        return {"accuracy": accuracy(preds, [f["labels"] for f in features])}
    if kind == "tagging":
        labels = recipe["labels"]
        gold, pred = [], []
        for start, _, out in _forward_batches(model, features, pad, batch_size, "evaluate", progress):
            best = out.logits.argmax(-1).tolist()
            for i, row in enumerate(best):
                firsts = extra[start + i]
                pred.append([labels[row[p]] for p in firsts])
                gold.append(list(rows[start + i].tags[: len(firsts)]))
        flat_gold, flat_pred = sum(gold, []), sum(pred, [])
        metrics = {"accuracy": accuracy(flat_pred, flat_gold)}
        if recipe.get("metric", "f1") == "f1":
            metrics["f1"] = span_f1(gold, pred)["f1"]
        return metrics
    if kind == "qa":
        return qa_metrics(model, tokenizer, rows, features, recipe, progress=progress)
    raise ValueError(f"unknown task kind {kind!r}")


def qa_metrics(model, tokenizer, examples, features, recipe, *, progress=False) -> dict[str, float]:
    """SQuAD EM / F1: each example's best-scoring span over its windows (``max_answer_length`` tokens at most)."""
    max_answer = recipe.get("max_answer_length", 30)
    best: dict[int, tuple[float, str]] = {}
    for start, _, out in _forward_batches(model, features, model.config.pad_token_id, recipe.get("eval_batch_size", 64),
                                          "evaluate", progress):  # fmt: skip
        starts, ends = (t.float().cpu().numpy() for t in out.logits)
        for i in range(starts.shape[0]):
            f = features[start + i]
            spans = f["spans"]
            valid = [t for t, s in enumerate(spans) if s is not None]
            for s in valid:
                for e in valid:
                    if e < s or e - s + 1 > max_answer:
                        continue
                    score = float(starts[i, s] + ends[i, e])
                    ex = f["example"]
                    if ex not in best or score > best[ex][0]:
                        context = examples[ex].context
                        best[ex] = (score, context[spans[s][0] : spans[e][1]])
    predictions = {examples[i].id: text for i, (_, text) in best.items()}
    references = {ex.id: [a for a, _ in ex.answers] for ex in examples}
    return squad_metrics(predictions, references)


@torch.no_grad()
def sentence_embeddings(model, tokenizer, texts: Sequence[str], *, layer: int, max_length: int, batch_size: int = 100,
                        progress: bool = False) -> np.ndarray:  # fmt: skip
    """Mean-pooled states of block ``layer`` (0-based: Hugging Face ``hidden_states[layer + 1]``, errata 1's reading
    of ``--specific_layer``), ``<s>`` and ``</s>`` included, L2-normalised."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(texts), batch_size), desc="embed", disable=not progress, leave=False):
        enc = tokenizer(list(texts[start : start + batch_size]), truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")  # fmt: skip
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        states = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer + 1]
        mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        out.append(torch.nn.functional.normalize(mean.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size))


def retrieval_metrics(model, tokenizer, pairs, recipe, *, progress=False) -> dict[str, float]:
    """Tatoeba: accuracy of each source's nearest target (by cosine) being its translation. BUCC (``mine: true``):
    F1 of the source->nearest-target pairs above the similarity threshold that maximises F1 (XTREME's
    ``bucc_optimize``); gold pairs are the file's rows, the candidates all its targets."""
    layer = recipe.get("layer", model.config.num_hidden_layers - 1)
    kw = dict(layer=layer, max_length=recipe.get("max_length", 512), batch_size=recipe.get("eval_batch_size", 100),
              progress=progress)  # fmt: skip
    src = sentence_embeddings(model, tokenizer, [s for s, _ in pairs], **kw)
    tgt = sentence_embeddings(model, tokenizer, [t for _, t in pairs], **kw)
    sims = src @ tgt.T
    nearest = sims.argmax(1)
    hits = nearest == np.arange(len(pairs))
    if not recipe.get("mine"):
        return {"accuracy": float(hits.mean()) if len(pairs) else 0.0}
    scores = sims[np.arange(len(pairs)), nearest]
    best_f1 = 0.0
    for threshold in np.unique(scores):
        chosen = scores >= threshold
        tp = int((chosen & hits).sum())
        if tp:
            precision, recall = tp / int(chosen.sum()), tp / len(pairs)
            best_f1 = max(best_f1, 2 * precision * recall / (precision + recall))
    return {"f1": best_f1}


def translation_metrics(model, tokenizer, pairs, recipe) -> dict[str, float]:
    """Beam search (recipe ``generation``), then detokenised sacreBLEU and exact match against the references."""
    from alicemind.veco.translation import source_ids, translate_ids

    src_tag, tgt_tag = tokenizer.lang_id(recipe["src_lang"]), tokenizer.lang_id(recipe["tgt_lang"])
    sources = [source_ids(ids, tokenizer.eos_token_id, src_tag)
               for ids in tokenizer([s for s, _ in pairs], add_special_tokens=False)["input_ids"]]  # fmt: skip
    generation = dict(recipe.get("generation") or {})
    outputs = translate_ids(model, sources, tgt_tag, batch_size=recipe.get("eval_batch_size", 64), **generation)
    hypotheses = [tokenizer.decode(ids) for ids in outputs]
    references = [t for _, t in pairs]
    exact = float(np.mean([h.strip() == r.strip() for h, r in zip(hypotheses, references)])) if pairs else 0.0
    return {"bleu": corpus_bleu(hypotheses, references), "exact_match": exact, "predictions": hypotheses}


# -- the verbs --------------------------------------------------------------------------------------------------
def evaluate_languages(model, tokenizer, recipe: dict[str, Any], *, progress: bool = True) -> dict[str, dict]:
    """Metrics per test language (``eval_file`` with ``{lang}``), plus their ``avg``; one command, one table."""
    kind = recipe["kind"]
    languages = recipe.get("languages") or [None]
    results: dict[str, dict] = {}
    for lang in tqdm(languages, desc="languages", disable=not progress or len(languages) < 2):
        rows = task_data.read_task_rows(kind, task_data.language_file(recipe.get("data_dir"), recipe["eval_file"], lang),
                                        recipe.get("columns"))  # fmt: skip
        metrics = evaluate_rows(model, tokenizer, kind, rows, recipe, progress=progress)
        results[lang or "all"] = {k: v for k, v in metrics.items() if k != "predictions"}
    names = sorted({k for m in results.values() for k in m})
    if len(results) > 1:
        results["avg"] = {n: float(np.mean([m[n] for m in results.values() if n in m])) for n in names}
    return results


def finetune(recipe: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """Train on ``train_file`` (zero-shot tasks skip this), save, evaluate every test language; returns
    ``{"output_dir", "results"}`` and writes ``eval_results.json`` into the saved model folder."""
    kind = recipe["kind"]
    model, tokenizer, _ = load_model(recipe)
    training = recipe.get("training") or {}  # zero-shot retrieval recipes train nothing
    out = Path(training.get("output_dir") or f"runs/veco-{recipe.get('task', kind)}") / "final"
    if kind != "retrieval":
        train_path = task_data.language_file(recipe.get("data_dir"), recipe["train_file"], recipe.get("train_language"))
        rows = task_data.read_task_rows(kind, train_path, recipe.get("columns"))
        features, _ = build_features(kind, tokenizer, rows, recipe)
        if not features:
            raise ValueError(f"{train_path} gave no training examples")
        trainer = train(model, tokenizer, features, recipe, {"train": str(train_path)})
        model = trainer.model
        average = int(recipe.get("average_last_checkpoints") or 0)
        if average > 1:
            logger.info(
                "averaged checkpoints of steps %s",
                average_checkpoints(model, recipe["training"]["output_dir"], average),
            )
        if kind in ("classification", "tagging"):
            labels = list(recipe["labels"])
            model.config.id2label = {str(i): name for i, name in enumerate(labels)}
            model.config.label2id = {name: i for i, name in enumerate(labels)}
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        trainer.finalize()
    results = evaluate_languages(model, tokenizer, recipe, progress=progress)
    if out.is_dir():
        (out / "eval_results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return {"output_dir": str(out), "results": results}


def format_table(results: dict[str, dict], published: dict[str, float] | None = None) -> str:
    """A Markdown table: one row per language (and avg), one column per metric (percent)."""
    names = sorted({k for m in results.values() for k in m})
    lines = ["| language | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for lang, metrics in results.items():
        lines.append(
            f"| {lang} | " + " | ".join(f"{100 * metrics[n]:.1f}" if n in metrics else "-" for n in names) + " |"
        )
    if published:
        lines.append(
            "| paper | " + " | ".join(f"{100 * published[n]:.1f}" if n in published else "-" for n in names) + " |"
        )
    return "\n".join(lines)
