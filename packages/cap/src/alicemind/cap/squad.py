"""``squad*`` recipes: CAP on SQuAD v1.1 (extractive QA) with core's SQuAD reader and metrics; the student and teacher
load through transformers as ``AutoModelForQuestionAnswering`` (the ``[transformers]`` extra).

Features are the original's sliding windows (max_seq_length 384, doc_stride 128): question + context window,
start/end at the answer's pieces, or at [CLS] (index 0) when the window does not hold it, as the Hugging Face
example scripts the original builds on. The two halves of the original read ``doc_stride`` differently:
``StructuredPruning/run_squad.py`` (HF ``run_qa``) passes it as the overlap of two windows, the unstructured
``masked_run_squad.py`` (HF's legacy ``squad_convert_examples_to_features``) as the step between window starts;
``doc_stride_mode: overlap | step`` says which, and each recipe sets its script's. The contrastive term is unsupervised only (QA has no labels);
the representation is the raw h_CLS the QA head sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.cap.glue import RECIPE_KEYS, cap_config_of, model_folder, prune_and_record, require_transformers
from alicemind.core.cli import CliError
from alicemind.core.data import DataCollatorWithPadding
from alicemind.core.data.own_spans import QAExample, read_squad
from alicemind.core.metrics import best_span, squad_metrics
from alicemind.core.training import move_to_device

SQUAD_KEYS = RECIPE_KEYS | {"train_file", "dev_file", "doc_stride", "doc_stride_mode", "max_query_length",
                            "max_answer_length"}  # fmt: skip
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions")


def _windows(tokenizer, questions, contexts, max_length: int, overlap: int):
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=overlap,
                    return_overflowing_tokens=True, return_offsets_mapping=True)  # fmt: skip
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    for i, owner in enumerate(enc["overflow_to_sample_mapping"]):
        yield owner, {k: enc[k][i] for k in keys}, enc["offset_mapping"][i], enc.sequence_ids(i)


def encode_windows(tokenizer, examples: Sequence[QAExample], *, max_length: int, doc_stride: int,
                   max_query_length: int = 64, doc_stride_mode: str = "overlap") -> list[dict[str, Any]]:  # fmt: skip
    """One feature per window of each context; ``example`` (its index), ``offsets`` and ``context_mask`` map a
    window back to characters and are not model inputs. ``doc_stride_mode``: ``overlap`` (two windows share
    ``doc_stride`` pieces) or ``step`` (windows start ``doc_stride`` pieces apart)."""
    if doc_stride_mode not in ("overlap", "step"):
        raise ValueError(f"doc_stride_mode must be 'overlap' or 'step', got {doc_stride_mode!r}")
    questions = [tokenizer.convert_tokens_to_string(tokenizer.tokenize(e.question)[:max_query_length])
                 for e in examples]  # fmt: skip
    contexts = [e.context for e in examples]
    if doc_stride_mode == "overlap":
        windows = list(_windows(tokenizer, questions, contexts, max_length, doc_stride))
    else:  # the overlap that makes consecutive window starts doc_stride apart depends on the question's length
        special = tokenizer.num_special_tokens_to_add(pair=True)
        windows = []
        for owner, (question, context) in enumerate(zip(questions, contexts)):
            room = max_length - len(tokenizer.tokenize(question)) - special
            if room <= doc_stride:
                raise ValueError(f"max_length {max_length} leaves {room} context pieces, not more than doc_stride")
            windows += [(owner, *rest[1:]) for rest in _windows(tokenizer, [question], [context], max_length,
                                                                 room - doc_stride)]  # fmt: skip
    features = []
    for owner, row, offsets, sequence_ids in windows:
        example = examples[owner]
        in_context = [s == 1 for s in sequence_ids]
        start = end = 0  # [CLS]: the answer is not in this window
        if example.answers:
            text, begin = example.answers[0]
            finish = begin + len(text)
            covered = [j for j, ok in enumerate(in_context) if ok and offsets[j][0] < finish and offsets[j][1] > begin]
            if covered and offsets[covered[0]][0] <= begin and offsets[covered[-1]][1] >= finish:
                start, end = covered[0], covered[-1]
        features.append({**row, "start_positions": start, "end_positions": end, "example": owner,
                         "offsets": offsets, "context_mask": in_context})  # fmt: skip
    return features


def model_rows(features: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The features without the window bookkeeping (what the model and the banks see)."""
    return [{k: v for k, v in f.items() if k in MODEL_INPUTS} for f in features]


def best_answers(examples: Sequence[QAExample], features: Sequence[dict[str, Any]], starts, ends,
                 max_answer_length: int = 30) -> dict[str, str]:  # fmt: skip
    """Per question: the context span with the highest start + end logit over all its windows (start <= end,
    at most ``max_answer_length`` pieces, inside the context)."""
    best: dict[int, tuple[float, str]] = {}
    for feature, start, end in zip(features, starts, ends):
        n = len(feature["input_ids"])
        span = best_span(start[:n], end[:n], feature["context_mask"][:n], max_answer_length)
        if span is None:
            continue
        i, j, score = span
        owner = feature["example"]
        if owner not in best or score > best[owner][0]:
            offsets = feature["offsets"]
            best[owner] = (score, examples[owner].context[offsets[i][0] : offsets[j][1]])
    return {e.id: best.get(k, (0.0, ""))[1] for k, e in enumerate(examples)}


def make_squad_eval_fn(examples, features, collate, batch_size: int, max_answer_length: int = 30):
    """``model -> {"exact_match", "f1"}`` (SQuAD v1.1 official normalisation, fractions as core's squad_metrics)."""
    loader = DataLoader(model_rows(features), batch_size=batch_size, collate_fn=collate)
    references = {e.id: [a for a, _ in e.answers] for e in examples}

    @torch.no_grad()
    def evaluate(model) -> dict[str, float]:
        device = next(model.parameters()).device
        starts, ends = [], []
        for batch in loader:
            batch = {k: v for k, v in move_to_device(batch, device).items() if not k.endswith("_positions")}
            out = model(**batch)
            starts += list(out.start_logits.float().cpu().numpy())
            ends += list(out.end_logits.float().cpu().numpy())
        predictions = best_answers(examples, features, starts, ends, max_answer_length)
        return squad_metrics(predictions, references)

    return evaluate


def _squad_file(recipe: dict[str, Any], key: str, default: str) -> Path:
    base = recipe.get("data_dir")
    if base is None:
        raise CliError("no data directory given: add data_dir=PATH (holding train-v1.1.json and dev-v1.1.json)")
    path = Path(base) / str(recipe.get(key) or default)
    if not path.is_file():
        raise CliError(f"{path} does not exist: give data_dir (and {key}=NAME) of a SQuAD v1.1 folder")
    return path


def load_qa_model(path, role: str):
    return require_transformers().AutoModelForQuestionAnswering.from_pretrained(str(model_folder(path, role)))


def run_squad_recipe(recipe: dict[str, Any], *, progress_bar: bool = True) -> dict[str, Any]:
    """Prune on SQuAD as the recipe says; writes ``output_dir`` and returns the results (EM / F1 per step)."""
    unknown = sorted(set(recipe) - SQUAD_KEYS)
    if unknown:
        raise CliError(f"unknown recipe key(s) {', '.join(unknown)}; known: {', '.join(sorted(SQUAD_KEYS))}")
    cap = cap_config_of(recipe)
    if cap.supervised:
        raise CliError("cap.supervised must be false for SQuAD: QA has no labels to contrast")
    train_path, dev_path = _squad_file(recipe, "train_file", "train-v1.1.json"), _squad_file(recipe, "dev_file",
                                                                                             "dev-v1.1.json")  # fmt: skip
    transformers = require_transformers()
    needs_teacher = cap.use_distill or cap.use_fic
    if needs_teacher:
        model_folder(recipe.get("teacher"), "teacher")
    student = load_qa_model(recipe.get("model"), "model")
    teacher = load_qa_model(recipe.get("teacher"), "teacher") if needs_teacher else None
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(recipe.get("tokenizer") or recipe["model"]))
    if not getattr(tokenizer, "is_fast", False):
        raise CliError("the SQuAD recipes need a fast tokenizer (tokenizer.json) for character offsets")
    windows = dict(max_length=int(recipe.get("max_seq_length", 384)), doc_stride=int(recipe.get("doc_stride", 128)),
                   max_query_length=int(recipe.get("max_query_length", 64)),
                   doc_stride_mode=str(recipe.get("doc_stride_mode", "overlap")))  # fmt: skip
    try:
        train = model_rows(encode_windows(tokenizer, read_squad(train_path), **windows))
        dev_examples = read_squad(dev_path)
        dev = encode_windows(tokenizer, dev_examples, **windows)
    except ValueError as err:
        raise CliError(str(err)) from None
    collate = DataCollatorWithPadding(pad_token_id=tokenizer.pad_token_id or 0)
    eval_fn = make_squad_eval_fn(dev_examples, dev, collate, int(recipe.get("eval_batch_size", 64)),
                                 int(recipe.get("max_answer_length", 30)))  # fmt: skip
    return prune_and_record(recipe, "squad", cap, student, teacher, train, collate, eval_fn, progress_bar)
