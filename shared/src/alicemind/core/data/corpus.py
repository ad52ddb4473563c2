"""Raw pre-training corpora: documents as lists of sentences."""

from __future__ import annotations

import os
from pathlib import Path

from alicemind.core.data.readers import DataFormatError, _decoded_lines, check_file, iter_jsonl_numbered


def read_documents(path: str | os.PathLike[str], *, format: str = "auto", text_key: str = "text") -> list[list[str]]:
    """Read a corpus into documents, each a list of sentences (empty documents are dropped).

    ``format="text"``: one sentence per line, a blank line between documents (the BERT convention).
    ``format="jsonl"``: one JSON object per line whose ``text_key`` holds a document, sentences split on newlines.
    ``"auto"`` picks jsonl for ``.jsonl``/``.json`` files and text otherwise.
    """
    path = check_file(path)
    if format == "auto":
        format = "jsonl" if path.suffix.lower() in (".jsonl", ".json") else "text"
    if format == "text":
        return _read_text(path)
    if format == "jsonl":
        return _read_jsonl(path, text_key)
    raise ValueError(f"unknown corpus format {format!r}; expected 'auto', 'text' or 'jsonl'")


def _read_text(path: Path) -> list[list[str]]:
    documents: list[list[str]] = [[]]
    for _, line in _decoded_lines(path, "utf-8"):
        line = line.strip()
        if line:
            documents[-1].append(line)
        elif documents[-1]:
            documents.append([])
    return [doc for doc in documents if doc]


def _read_jsonl(path: Path, text_key: str) -> list[list[str]]:
    documents = []
    for line_no, obj in iter_jsonl_numbered(path):
        text = obj.get(text_key)
        if not isinstance(text, str):
            raise DataFormatError(
                f"{path}:{line_no}: expected a string under {text_key!r}, found {type(text).__name__}"
            )
        sentences = [s.strip() for s in text.splitlines() if s.strip()]
        if sentences:
            documents.append(sentences)
    return documents
