"""``alicemind structbert predict --model DIR --input FILE|- --output FILE|-``: labels and probabilities per line.

Works from the fine-tuned folder alone (its ``config.json`` names the task, its columns and labels). Input is
read and answered a batch at a time, so ``--input - --output -`` streams stdin to stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from alicemind.core.cli import CliError
from alicemind.core.data import Example
from alicemind.core.data.own_data import stream_texts
from alicemind.core.data.tasks import SUFFIX_FORMATS


@contextlib.contextmanager
def open_stream(path: str, mode: str) -> Iterator[IO[str]]:
    """``-`` is stdin/stdout; anything else a UTF-8 file (a missing input file is a one-line error)."""
    if path == "-":
        yield sys.stdin if "r" in mode else sys.stdout
        return
    if "r" in mode and not Path(path).is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    if "w" in mode:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode, encoding="utf-8", newline="") as f:
        yield f


def input_format(path: str, given: str | None) -> str:
    """``given``, else the format the file's suffix names (stdin: TSV)."""
    if given:
        return given
    return "tsv" if path == "-" else SUFFIX_FORMATS.get(Path(path).suffix.lower(), "tsv")


def batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Lists of up to ``size`` items, without reading ahead further (so a pipe is answered as it comes)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def prediction_record(labels: tuple[str, ...] | None, raw: np.ndarray) -> dict[str, Any]:
    """``{"label", "probs"}`` from a logit row (softmax), or ``{"value"}`` for a regression output."""
    if labels is None:
        return {"value": float(np.asarray(raw).reshape(-1)[0])}
    logits = np.asarray(raw, dtype=np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return {"label": labels[int(probs.argmax())], "probs": {lab: round(float(p), 6) for lab, p in zip(labels, probs)}}


def run_predict_stream(
    model_dir: str | Path,
    input_path: str,
    output_path: str,
    *,
    batch_size: int = 32,
    fmt: str | None = None,
    task_name: str | None = None,
) -> int:
    """Predict every row of ``input_path`` with a fine-tuned folder; write one JSON object per row to
    ``output_path``. Returns the number of rows."""
    from alicemind.structbert.finetuning import (
        SPAN_KINDS,
        _collator,
        encode_examples,
        load_finetuned,
        load_tokenizer,
        predict_task,
        saved_tasks,
    )

    tasks, info = saved_tasks(model_dir)
    if tasks and tasks[0].kind in SPAN_KINDS:
        raise CliError("internal: span tasks are predicted by finetuning_spans")
    names = [t.name for t in tasks]
    if task_name is None and len(tasks) > 1:
        raise CliError(f"this model has {len(tasks)} tasks ({', '.join(names)}); choose one with --task")
    if task_name is not None and task_name not in names:
        raise CliError(f"no task {task_name!r} in this model (tasks: {', '.join(names)})")
    task_id = names.index(task_name) if task_name else 0
    task = tasks[task_id]
    model, _ = load_finetuned(model_dir)
    tokenizer = load_tokenizer(None, model_dir)
    max_len = info.get("max_seq_length", 128)
    collate = _collator(tokenizer, max_len)
    fmt = input_format(input_path, fmt)
    count = 0
    with open_stream(input_path, "r") as source, open_stream(output_path, "w") as sink:
        name = "<stdin>" if input_path == "-" else input_path
        rows = stream_texts(source, columns=task.columns, format=fmt, source=name)
        for batch in batched(rows, batch_size):
            examples = [Example(guid=str(n), text_a=a, text_b=b) for n, a, b in batch]
            features = encode_examples(tokenizer, examples, task, task_id, max_len, with_labels=False)
            raw = predict_task(model, features, task_id, collate, batch_size)
            for row in raw:
                sink.write(json.dumps(prediction_record(task.labels, row), ensure_ascii=False) + "\n")
            sink.flush()
            count += len(batch)
    return count
