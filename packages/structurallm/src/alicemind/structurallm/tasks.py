"""The three fine-tuning tasks as data: encode documents into training windows, predict, score.

* ``funsd``: entity labelling; a window per ``max_seq_length`` tokens; entity-level P/R/F1 (exact type and
  boundaries, as seqeval) over every word of every page (words are read from the window that owns them).
* ``docvqa``: extractive QA; each row a document with ``question`` and ``answers``; the answer span (the words of
  the first answer found in the page, or ``answer_span`` = [first word, last word]) becomes token start/end, or
  ``<s>`` where the window lacks it; predictions are the best span over all windows; ANLS.
* ``rvl-cdip``: document classification by ``label``; every window trains on the document's label; a document's
  prediction averages its windows' logits; accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alicemind.core.cli.compiling import inference_buckets
from alicemind.core.metrics.spans import span_f1
from alicemind.core.ops.compiling import bucket_length
from alicemind.core.training import move_to_device
from alicemind.structurallm.documents import Document, DocumentError
from alicemind.structurallm.encoder import DocumentEncoder, assemble_word_predictions
from alicemind.structurallm.metrics import anls

FUNSD_LABELS = ["O", "B-HEADER", "I-HEADER", "B-QUESTION", "I-QUESTION", "B-ANSWER", "I-ANSWER"]
KINDS = ("funsd", "docvqa", "rvl-cdip")


def _normal(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def answer_word_span(doc: Document) -> tuple[int, int] | None:
    """The word span of the document's answer: ``answer_span`` if given, else the first place where an answer's
    words (case and punctuation ignored) occur in order; None when no answer occurs."""
    if doc.extra.get("answer_span") is not None:
        start, end = doc.extra["answer_span"]
        if not 0 <= start <= end < len(doc.words):
            raise DocumentError(
                f"document {doc.id!r}: answer_span {[start, end]} is outside its {len(doc.words)} words"
            )
        return int(start), int(end)
    words = [_normal(w) for w in doc.words]
    for answer in doc.extra.get("answers") or []:
        target = [t for t in (_normal(w) for w in str(answer).split()) if t]
        for start in range(len(words) - len(target) + 1) if target else ():
            if words[start : start + len(target)] == target:
                return start, start + len(target) - 1
    return None


def encode_for_training(kind: str, encoder: DocumentEncoder, docs: Sequence[Document],
                        label2id: dict[str, int]) -> list[dict[str, Any]]:  # fmt: skip
    """Training windows with the labels the task's head takes."""
    out = []
    for doc in docs:
        question = doc.extra.get("question") if kind == "docvqa" else None
        if kind == "docvqa" and not question:
            raise DocumentError(f"document {doc.id!r}: a DocVQA row needs a 'question'")
        windows = encoder.encode(doc, question)
        if kind == "docvqa":
            span = answer_word_span(doc)
            for w in windows:
                inside = [] if span is None else [p for p, t in enumerate(w["token_word"]) if span[0] <= t <= span[1]]
                complete = (
                    bool(inside) and w["token_word"][inside[0]] == span[0] and w["token_word"][inside[-1]] == span[1]
                )
                w["start_positions"], w["end_positions"] = (inside[0], inside[-1]) if complete else (0, 0)
        elif kind == "rvl-cdip":
            label = doc.extra.get("label")
            if label not in label2id:
                raise DocumentError(f"document {doc.id!r}: label {label!r} is not one of {sorted(label2id)}")
            for w in windows:
                w["label"] = label2id[label]
        out += windows
    return out


def collator(kind: str, encoder: DocumentEncoder):
    """Windows -> padded batches with the head's label tensors."""

    def collate(windows):
        batch = encoder.pad(windows)
        if kind == "docvqa":
            batch["start_positions"] = torch.tensor([w["start_positions"] for w in windows])
            batch["end_positions"] = torch.tensor([w["end_positions"] for w in windows])
        elif kind == "rvl-cdip":
            batch.pop("labels", None)
            batch["labels"] = torch.tensor([w["label"] for w in windows])
        return batch

    return collate


def _window_outputs(model, encoder: DocumentEncoder, windows, batch_size: int) -> list[Any]:
    device = next(model.parameters()).device
    # Under --compile, batch widths fall into a few buckets (one graph each), the longest window the last one.
    buckets = inference_buckets(max((len(w["input_ids"]) for w in windows), default=1))
    outputs: list[Any] = []
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            width = bucket_length(max(len(w["input_ids"]) for w in chunk), buckets) if buckets else None
            batch = move_to_device(encoder.pad(chunk, length=width), device)
            batch.pop("labels", None)
            logits = model(**batch).logits
            for row, w in enumerate(chunk):
                n = len(w["input_ids"])
                outputs.append(tuple(x[row, :n].float().cpu() for x in logits) if isinstance(logits, tuple)
                               else logits[row, :n].float().cpu() if logits.dim() == 3 else logits[row].float().cpu())  # fmt: skip
    return outputs


def predict(kind: str, model, encoder: DocumentEncoder, doc: Document, id2label: dict[int, str],
            *, batch_size: int = 8, max_answer_words: int = 30) -> Any:  # fmt: skip
    """One document's prediction: per-word labels (funsd), the answer text (docvqa) or the class (rvl-cdip)."""
    model.eval()
    question = doc.extra.get("question") if kind == "docvqa" else None
    windows = encoder.encode(doc, question)
    outputs = _window_outputs(model, encoder, windows, batch_size)
    if kind == "funsd":
        return [id2label[i] for i in assemble_word_predictions(windows, outputs, len(doc.words))]
    if kind == "rvl-cdip":
        return id2label[int(torch.stack(outputs).mean(0).argmax())]
    best, answer = -float("inf"), ""
    for w, (start, end) in zip(windows, outputs):
        words = w["token_word"]
        positions = [p for p, t in enumerate(words) if t >= 0]
        for k, i in enumerate(positions):
            for j in positions[k:]:
                if words[j] >= words[i] + max_answer_words:
                    break
                if float(start[i] + end[j]) > best:
                    best = float(start[i] + end[j])
                    answer = " ".join(doc.words[words[i] : words[j] + 1])
    return answer


def entities_of(words: Sequence[str], tags: Sequence[str]) -> list[dict[str, Any]]:
    """BIO word tags -> ``[{"label", "text", "words": [first, last]}]``."""
    from alicemind.core.metrics.spans import get_entities

    return [{"label": label, "text": " ".join(words[s : e + 1]), "words": [s, e]} for label, s, e in get_entities(tags)]


def evaluate(kind: str, model, encoder: DocumentEncoder, docs: Sequence[Document], id2label: dict[int, str],
             *, batch_size: int = 8) -> dict[str, float]:  # fmt: skip
    """The task's metric over ``docs``: entity P/R/F1, ANLS or accuracy."""
    predictions = [predict(kind, model, encoder, d, id2label, batch_size=batch_size) for d in docs]
    if kind == "funsd":
        return span_f1([d.labels for d in docs], predictions)
    if kind == "docvqa":
        refs = {d.id: list(d.extra.get("answers") or []) for d in docs}
        return anls(dict(zip((d.id for d in docs), predictions)), refs)
    correct = sum(p == d.extra.get("label") for p, d in zip(predictions, docs))
    return {"accuracy": correct / len(docs)}
