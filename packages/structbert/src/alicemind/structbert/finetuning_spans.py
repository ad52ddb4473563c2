"""Token tagging (``kind: tag``, CoNLL/BIO files) and extractive QA (``kind: qa``, SQuAD JSON) on your own data.

Core reads the files (``read_conll``, ``read_squad``) and builds the tag set; this module maps them onto
``StructBertForTokenClassification`` / ``StructBertForQuestionAnswering``. A word's tag is learnt and predicted on
its first word piece. QA reads one window per question (``max_seq_length``, the context truncated; an answer
cut off is left out of the loss) and picks the best span of at most ``max_answer_length`` pieces.
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

from alicemind.core.cli import CliError
from alicemind.core.cli.compiling import inference_buckets, maybe_optimize
from alicemind.core.data import (
    DataCollatorWithPadding,
    QAExample,
    TaggedSentence,
    read_conll,
    read_squad,
    split_files,
    tag_set,
)
from alicemind.core.data.own_spans import check_tags
from alicemind.core.metrics import best_span, span_f1, squad_metrics
from alicemind.core.training import Trainer, TrainingConfig, move_to_device, seed_everything
from alicemind.structbert.config import StructBertConfig
from alicemind.structbert.model import StructBertForQuestionAnswering, StructBertForTokenClassification
from alicemind.structbert.predicting import batched, open_stream
from alicemind.structbert.tokenization import StructBertTokenizer

logger = logging.getLogger(__name__)
MAX_ANSWER_LENGTH = 30  # word pieces, as BERT's run_squad.py
_IGNORED = 10**6  # a position past any sequence: the model clamps it to the ignore index


def _read(kind: str, path: Path, with_labels: bool = True) -> list:
    return read_conll(path, with_tags=with_labels) if kind == "tag" else read_squad(path, with_answers=with_labels)


# ----- features ---------------------------------------------------------------------------------------------------


def encode_tagged(
    tokenizer: StructBertTokenizer, sentences: Sequence[TaggedSentence], tags: Sequence[str] | None, max_len: int
) -> list[dict[str, Any]]:
    """``[CLS] pieces [SEP]`` per sentence; ``labels`` hold the tag id on each word's first piece, -100 elsewhere;
    ``word_starts`` (not a model input) the position of each kept word's first piece."""
    words = [w for s in sentences for w in s.tokens]
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
    tag_id = {t: i for i, t in enumerate(tags or ())}
    features, k = [], 0
    for sentence in sentences:
        ids, labels, starts = [tokenizer.cls_token_id], [-100], []
        for w in range(len(sentence.tokens)):
            piece = pieces[k + w] or [tokenizer.unk_token_id]
            if len(ids) + len(piece) > max_len - 1:
                break  # the rest of a long sentence is cut (predicted as the first tag, usually O)
            starts.append(len(ids))
            labels += [tag_id[sentence.tags[w]] if sentence.tags and tags else -100] + [-100] * (len(piece) - 1)
            ids += piece
        k += len(sentence.tokens)
        ids.append(tokenizer.sep_token_id)
        labels.append(-100)
        features.append({"input_ids": ids, "token_type_ids": [0] * len(ids), "labels": labels, "word_starts": starts})
    return features


def encode_questions(
    tokenizer: StructBertTokenizer, examples: Sequence[QAExample], max_len: int
) -> list[dict[str, Any]]:
    """``[CLS] question [SEP] context [SEP]`` with the first answer's piece positions (or an ignored position when
    truncation cut it off); ``offsets`` and ``context_mask`` (not model inputs) map pieces back to characters."""
    enc = tokenizer([e.question for e in examples], [e.context for e in examples], truncation="only_second",
                    max_length=max_len, return_offsets_mapping=True)  # fmt: skip
    features = []
    for i, example in enumerate(examples):
        types, offsets = enc["token_type_ids"][i], enc["offset_mapping"][i]
        in_context = [t == 1 and offsets[j][1] > offsets[j][0] for j, t in enumerate(types)]
        start = end = _IGNORED
        if example.answers:
            text, begin = example.answers[0]
            finish = begin + len(text)
            covered = [j for j, ok in enumerate(in_context) if ok and offsets[j][0] < finish and offsets[j][1] > begin]
            if covered:
                start, end = covered[0], covered[-1]
        features.append({"input_ids": enc["input_ids"][i], "token_type_ids": types, "start_positions": start,
                         "end_positions": end, "offsets": offsets, "context_mask": in_context})  # fmt: skip
    return features


_MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "labels", "start_positions", "end_positions")


def _loader(features, tokenizer, batch_size: int, shuffle: bool, max_length: int | None = None) -> DataLoader:
    # Evaluation batches under --compile fall into a few bucket widths up to max_length (one graph each);
    # training batches are never bucketed.
    buckets = None if shuffle else inference_buckets(max_length)
    collate = DataCollatorWithPadding(tokenizer.pad_token_id, bucket_lengths=buckets)
    rows = [{k: v for k, v in f.items() if k in _MODEL_INPUTS} for f in features]
    return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, collate_fn=collate)


@torch.no_grad()
def _outputs(model, features, tokenizer, batch_size: int) -> list[Any]:
    """Per feature: tag logits ``[L, T]`` or a ``(start, end)`` logit pair, padding removed."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[Any] = []
    for batch in _loader(features, tokenizer, batch_size, shuffle=False,
                         max_length=model.config.max_position_embeddings):  # fmt: skip
        batch = {k: v for k, v in move_to_device(batch, device).items() if k in ("input_ids", "token_type_ids",
                                                                                   "attention_mask")}  # fmt: skip
        logits = model(**batch).logits
        lengths = batch["attention_mask"].sum(1).tolist()
        for row, n in enumerate(lengths):
            if isinstance(logits, tuple):
                out.append((logits[0][row, :n].float().cpu().numpy(), logits[1][row, :n].float().cpu().numpy()))
            else:
                out.append(logits[row, :n].float().cpu().numpy())
    model.train(was_training)
    return out


def predict_tags(model, tokenizer, sentences, tags: Sequence[str], max_len: int, batch_size: int) -> list[list[str]]:
    """The tag of every word (words cut off by ``max_len`` get the first tag)."""
    features = encode_tagged(tokenizer, sentences, None, max_len)
    result = []
    for sentence, feature, logits in zip(sentences, features, _outputs(model, features, tokenizer, batch_size)):
        predicted = [tags[int(logits[p].argmax())] for p in feature["word_starts"]]
        result.append(predicted + [tags[0]] * (len(sentence.tokens) - len(predicted)))
    return result


def predict_answers(model, tokenizer, examples, max_len: int, batch_size: int) -> list[str]:
    """The best context span of each question (start <= end, at most MAX_ANSWER_LENGTH pieces)."""
    features = encode_questions(tokenizer, examples, max_len)
    answers = []
    for example, feature, (start, end) in zip(examples, features, _outputs(model, features, tokenizer, batch_size)):
        span = best_span(start, end, feature["context_mask"][: len(start)], MAX_ANSWER_LENGTH)
        if span is None:
            answers.append("")
            continue
        i, j, _ = span
        offsets = feature["offsets"]
        answers.append(example.context[offsets[i][0] : offsets[j][1]])
    return answers


def span_metrics(kind: str, model, tokenizer, items, tags, max_len: int, batch_size: int):
    """``(metrics, predictions)``: entity P/R/F1 + word accuracy for tags, exact match + F1 for QA."""
    if kind == "tag":
        predicted = predict_tags(model, tokenizer, items, tags, max_len, batch_size)
        gold = [list(s.tags) for s in items]
        metrics = span_f1(gold, predicted)
        flat = [(p == g) for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs)]
        metrics["accuracy"] = float(np.mean(flat))
        metrics["score"] = metrics["f1"]
        return metrics, predicted
    predicted = predict_answers(model, tokenizer, items, max_len, batch_size)
    metrics = squad_metrics(
        {e.id: p for e, p in zip(items, predicted)}, {e.id: [a for a, _ in e.answers] for e in items}
    )
    metrics["score"] = metrics["f1"]
    return metrics, predicted


# ----- verbs ------------------------------------------------------------------------------------------------------


def _model_class(kind: str):
    return StructBertForTokenClassification if kind == "tag" else StructBertForQuestionAnswering


def _build(recipe: dict[str, Any], kind: str, tags: Sequence[str] | None):
    from alicemind.structbert.finetuning import _build_model_from  # one place that reads model / scratch_config

    heads = {"num_labels": len(tags)} if tags else {}
    return _build_model_from(recipe, _model_class(kind), heads)


def run_span_finetune(recipe: dict[str, Any], *, progress_bar: bool = True):
    """Fine-tune a tagging or QA head on ``data_dir`` / ``train`` / ``dev`` files; save a self-describing folder."""
    from alicemind.structbert.finetuning import FinetuneResult, finetune_identity, load_tokenizer

    kind = recipe["kind"]
    files = split_files(recipe.get("data_dir"), {s: recipe.get(s) for s in ("train", "dev", "test")})
    train_path = Path(str(files["train"]))
    train = _read(kind, train_path)
    tags = tag_set(train, train_path, recipe.get("labels")) if kind == "tag" else None
    if tags:
        logger.warning("task %s: %d tags (%s, from %s): %s", recipe.get("task_name") or "own-tag", len(tags),
                       "as given" if recipe.get("labels") else "sorted, O first", train_path, ", ".join(tags))  # fmt: skip
    eval_split = recipe.get("eval_split") or "dev"
    if eval_split not in files:
        raise CliError(f"no {eval_split} file: add {eval_split}.* beside the training file (or {eval_split}=FILE)")
    dev_path = Path(str(files[eval_split]))
    dev = _read(kind, dev_path)
    if tags:
        check_tags(dev, tags, dev_path, f"the training file {train_path}")
    tokenizer = load_tokenizer(recipe.get("tokenizer"), recipe.get("model"))
    max_len = int(recipe.get("max_seq_length") or 128)
    features = encode_tagged(tokenizer, train, tags, max_len) if tags else encode_questions(tokenizer, train, max_len)
    train_cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    seed_everything(train_cfg.seed)
    model = _build(recipe, kind, tags)
    output_dir = Path(recipe.get("output_dir") or f"runs/{kind}")
    train_cfg.output_dir = str(output_dir)
    loader = _loader(features, tokenizer, train_cfg.per_device_batch_size or 32, shuffle=True)
    eval_batch = int(recipe.get("eval_batch_size") or 32)

    def eval_fn(m) -> dict[str, float]:
        return span_metrics(kind, m, tokenizer, dev, tags, max_len, eval_batch)[0]

    identity = finetune_identity(recipe, {"train": train_path}, tokenizer)
    trainer = Trainer(model, train_cfg, loader, eval_fn=eval_fn, run_identity=identity)
    state = trainer.train()
    name = recipe.get("task_name") or f"own-{kind}"
    metrics = {name: eval_fn(trainer.model)}
    model_dir = output_dir / "model"
    if trainer.dist.is_main:
        config = trainer.model.config
        config.task_specs = [{"name": name, "kind": kind, "labels": list(tags) if tags else None,
                              "max_seq_length": max_len, "trained_on": {k: str(v) for k, v in files.items()}}]  # fmt: skip
        config.id2label = {str(i): t for i, t in enumerate(tags)} if tags else None
        config.label2id = {t: i for i, t in enumerate(tags)} if tags else None
        trainer.model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        (output_dir / "eval_results.json").write_text(json.dumps({"split": eval_split, "metrics": metrics}, indent=1))
    return FinetuneResult(output_dir, model_dir, metrics, list(state.log_history), [])


def load_span_model(model_dir: str | Path):
    """(model, tokenizer, spec) of a folder written by :func:`run_span_finetune`."""
    from alicemind.structbert.finetuning import load_tokenizer

    config = StructBertConfig.from_json_file(Path(model_dir) / "config.json")
    spec = (config.task_specs or [{}])[0]
    model = maybe_optimize(_model_class(spec["kind"]).from_pretrained(Path(model_dir)))  # under --compile
    return model, load_tokenizer(None, model_dir), spec


SPAN_FILES = {"tag": ("{split}.conll", "{split}.txt", "{split}.tsv", "{split}.bio"), "qa": ("{split}.json",)}


def run_span_evaluate(model_dir, data_dir, output, *, split="dev", batch_size=32, input_file=None) -> dict:
    """Metrics of a tagging / QA folder on ``data_dir``'s ``split`` file (or ``input_file``); written as JSON."""
    model, tokenizer, spec = load_span_model(model_dir)
    kind, tags = spec["kind"], spec.get("labels")
    if input_file is None:
        candidates = [Path(data_dir) / p.format(split=split) for p in SPAN_FILES[kind]]
        input_file = next((p for p in candidates if p.is_file()), None)
        if input_file is None:
            raise FileNotFoundError(
                f"no {split} file in {data_dir} (looked for {', '.join(c.name for c in candidates)})"
            )
    items = _read(kind, Path(input_file))
    if tags:
        check_tags(items, tags, Path(input_file), "the tags saved with the model")
    metrics, _ = span_metrics(kind, model, tokenizer, items, tags, spec.get("max_seq_length", 128), batch_size)
    result = {spec["name"]: metrics}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps({"model": str(model_dir), "split": split, "metrics": result}, indent=1))
    return result


def predict_span_rows(model_dir, input_path: str, output_path: str, *, batch_size: int = 32) -> int:
    """Tags per word for one whitespace-tokenised sentence per line (``{"tokens", "tags"}``), or answers for JSON
    lines ``{"question", "context"}`` (``{"answer"}``); ``-`` is stdin/stdout, answered a batch at a time."""
    model, tokenizer, spec = load_span_model(model_dir)
    max_len, count = spec.get("max_seq_length", 128), 0
    with open_stream(input_path, "r") as source, open_stream(output_path, "w") as sink:
        lines = ((n, line) for n, line in enumerate(source, start=1) if line.strip())
        for batch in batched(lines, batch_size):
            if spec["kind"] == "tag":
                sentences = [TaggedSentence(tuple(line.split()), None, n) for n, line in batch]
                predicted = predict_tags(model, tokenizer, sentences, spec["labels"], max_len, batch_size)
                records = [{"tokens": list(s.tokens), "tags": t} for s, t in zip(sentences, predicted)]
            else:
                questions = [_question(n, line, input_path) for n, line in batch]
                answers = predict_answers(model, tokenizer, questions, max_len, batch_size)
                records = [{"id": q.id, "answer": a} for q, a in zip(questions, answers)]
            sink.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            sink.flush()
            count += len(batch)
    return count


def _question(line_no: int, line: str, source: str) -> QAExample:
    from alicemind.core.data import DataFormatError

    try:
        obj = json.loads(line)
        return QAExample(str(obj.get("id", line_no)), str(obj["question"]), str(obj["context"]))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise DataFormatError(f"{source}:{line_no}: expected a JSON object with 'question' and 'context'") from None
