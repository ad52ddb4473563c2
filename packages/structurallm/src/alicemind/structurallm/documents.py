"""Documents as StructuralLM reads them: words, each with its cell's box on a 0-1000 grid, and readers for FUNSD
JSON and a generic JSONL of ``{words, boxes, cells}``.

A *cell* is a text segment (an OCR box, a FUNSD entity): every word of a cell, and so every sub-token, gets the
cell's box, as the paper does. Boxes are normalised from the page size to integers in [0, 1000]. Bad input is a
:class:`DocumentError` naming the document and word: a word without a box, a box with negative or inverted
coordinates, a box outside the page (``clamp=True`` clips coordinates to the page instead, for OCR engines that
overshoot by a pixel), an empty document.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRID = 1000  # coordinates are integers in [0, GRID]
Box = tuple[int, int, int, int]


class DocumentError(ValueError):
    """A document that cannot be encoded, with the place and the reason in one line."""


@dataclass
class Document:
    """Words in reading order, each with its cell box (0..1000) and cell index; optional per-word BIO labels and
    task fields (``question``/``answers`` for DocVQA, ``label`` for classification) in ``extra``."""

    words: list[str]
    boxes: list[Box]
    cells: list[int]
    labels: list[str] | None = None
    id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def normalize_box(box: Any, page_size: Sequence[float] | None, *, clamp: bool = False, where: str = "box") -> Box:
    """``[x0, y0, x1, y1]`` in page units (pixels) -> integers on the 0..1000 grid. Without ``page_size`` the box
    must already be on the grid. Negative, inverted or out-of-page coordinates raise, unless ``clamp``."""
    if box is None:
        raise DocumentError(f"{where} has no box")
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise DocumentError(f"{where}: a box must be 4 numbers [x0, y0, x1, y1], got {box!r}")
    width, height = (GRID, GRID) if page_size is None else page_size
    if not (_is_number(width) and _is_number(height) and width > 0 and height > 0):
        raise DocumentError(f"{where}: page size must be two positive numbers, got {page_size!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x0 > x1 or y0 > y1:
        raise DocumentError(f"{where}: inverted box {list(box)} (need x0 <= x1 and y0 <= y1)")
    limits = (width, height, width, height)
    coords = [x0, y0, x1, y1]
    if not clamp:
        if min(coords) < 0:
            raise DocumentError(f"{where}: negative coordinate in {list(box)} (pass clamp=True to clip to the page)")
        if any(v > lim for v, lim in zip(coords, limits)):
            raise DocumentError(f"{where}: box {list(box)} lies outside the page {width}x{height} "
                                "(pass clamp=True to clip it to the page)")  # fmt: skip
    coords = [min(max(v, 0.0), lim) for v, lim in zip(coords, limits)]
    return tuple(int(GRID * v / lim) for v, lim in zip(coords, limits))  # type: ignore[return-value]


def _union(boxes: Sequence[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def make_document(
    words: Sequence[str],
    boxes: Sequence[Any],
    *,
    cells: Sequence[int] | None = None,
    page_size: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    clamp: bool = False,
    doc_id: str = "",
    extra: dict[str, Any] | None = None,
) -> Document:
    """Validate and normalise one document. ``boxes`` are the word boxes; with ``cells`` (one cell id per word) each
    word gets the union box of its cell's words; without, every word is its own cell."""
    name = f"document {doc_id!r}" if doc_id else "document"
    if not words:
        raise DocumentError(f"{name} has no words")
    if len(boxes) != len(words):
        raise DocumentError(f"{name}: {len(words)} words but {len(boxes)} boxes (every word needs a box)")
    if labels is not None and len(labels) != len(words):
        raise DocumentError(f"{name}: {len(words)} words but {len(labels)} labels")
    for i, word in enumerate(words):
        if not isinstance(word, str) or not word.strip():
            raise DocumentError(f"{name}: word {i} is empty or not text ({word!r})")
    normalised = [normalize_box(b, page_size, clamp=clamp, where=f"{name}: word {i} ({words[i]!r})")
                  for i, b in enumerate(boxes)]  # fmt: skip
    if cells is None:
        cell_ids = list(range(len(words)))
    else:
        if len(cells) != len(words) or not all(isinstance(c, int) and c >= 0 for c in cells):
            raise DocumentError(f"{name}: cells must be one non-negative integer cell id per word")
        cell_ids = list(cells)
    members: dict[int, list[Box]] = {}
    for cell, box in zip(cell_ids, normalised):
        members.setdefault(cell, []).append(box)
    cell_box = {cell: _union(group) for cell, group in members.items()}
    order = {cell: rank for rank, cell in enumerate(dict.fromkeys(cell_ids))}  # cells numbered in reading order
    return Document(list(words), [cell_box[c] for c in cell_ids], [order[c] for c in cell_ids],
                    list(labels) if labels is not None else None, doc_id, dict(extra or {}))  # fmt: skip


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def funsd_page_size(annotation: Path) -> tuple[int, int] | None:
    """The size of the page image FUNSD keeps beside the annotations (``../images/<name>.png``), if present."""
    for candidate in (annotation.parent.parent / "images" / f"{annotation.stem}.png", annotation.with_suffix(".png")):
        if candidate.is_file():
            return _image_size(candidate)
    return None


def read_funsd(path: str | Path, *, page_size: Sequence[float] | None = None, clamp: bool = False) -> Document:
    """One FUNSD annotation (``{"form": [{"box", "text", "label", "words": [{"box", "text"}], ...}]}``): every
    entity is a cell; its words get the entity box and ``B-``/``I-`` + the upper-cased label (``other`` -> ``O``).
    The page size comes from ``page_size`` or the page image beside the annotations."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DocumentError(f"{path}: not a readable FUNSD JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("form"), list):
        raise DocumentError(f"{path}: a FUNSD annotation is an object with a 'form' list")
    size = page_size or funsd_page_size(path)
    if size is None:
        raise DocumentError(f"{path}: no page image beside it (../images/{path.stem}.png); pass page_size=(w, h)")
    words, boxes, cells, labels = [], [], [], []
    for number, entity in enumerate(data["form"]):
        where = f"{path}: entity {entity.get('id', number)}"
        entity_words = [w for w in entity.get("words") or [] if str(w.get("text", "")).strip()]
        if not entity_words:
            continue  # FUNSD has a few entities whose words are all blank
        box = normalize_box(entity.get("box"), size, clamp=clamp, where=where)
        tag = str(entity.get("label", "other")).upper()
        for k, word in enumerate(entity_words):
            normalize_box(word.get("box"), size, clamp=clamp, where=f"{where} word {word.get('text')!r}")
            words.append(str(word["text"]).strip())
            boxes.append(list(box))  # cell-level: every word of the entity gets the entity box
            cells.append(number)
            labels.append("O" if tag == "OTHER" else f"{'B' if k == 0 else 'I'}-{tag}")
    return make_document(words, boxes, cells=cells, labels=labels, doc_id=path.stem)


def read_documents_jsonl(path: str | Path, *, clamp: bool = False) -> list[Document]:
    """One document a line: ``{"words": [...], "boxes": [[x0, y0, x1, y1], ...], "cells": [cell id per word]
    (optional), "page_size": [w, h] (optional: boxes already 0-1000 without it), "labels": [...] (optional),
    "id": ...}``; any other field (``question``, ``answers``, ``label``) is kept in ``extra``."""
    path = Path(path)
    if not path.is_file():
        raise DocumentError(f"document file not found: {path}")
    out = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DocumentError(f"{path}:{number}: not JSON ({err.msg})") from None
            if not isinstance(row, dict) or "words" not in row or "boxes" not in row:
                raise DocumentError(f"{path}:{number}: a document needs 'words' and 'boxes'")
            known = {"words", "boxes", "cells", "page_size", "labels", "id"}
            out.append(make_document(row["words"], row["boxes"], cells=row.get("cells"),
                                     page_size=row.get("page_size"), labels=row.get("labels"), clamp=clamp,
                                     doc_id=str(row.get("id", f"{path.name}:{number}")),
                                     extra={k: v for k, v in row.items() if k not in known}))  # fmt: skip
    if not out:
        raise DocumentError(f"{path}: no documents")
    return out


def read_funsd_txt(path: str | Path) -> list[Document]:
    """The original's processed FUNSD files (``funsd_dataset_structurallm/``): ``{split}.txt`` with ``word<TAB>LABEL``
    lines and ``{split}_box.txt`` with ``word<TAB>x0 y0 x1 y1<TAB>pos_bbox`` lines (boxes already 0-1000, quotes
    allowed), a blank line between documents, ``-DOCSTART-`` lines skipped. The third column is read as the cell id
    (**unverified**: its meaning is undocumented; consecutive words of one cell share it)."""
    path = Path(path)
    box_path = path.with_name(f"{path.stem}_box.txt")
    if not box_path.is_file():
        raise DocumentError(f"{path}: no {box_path.name} beside it (the boxes of the processed FUNSD files)")
    docs: list[Document] = []
    rows: list[tuple[str, str, list[int], int]] = []

    def flush() -> None:
        if rows:
            words, labels, boxes, cells = zip(*rows)
            docs.append(make_document(list(words), list(boxes), cells=list(cells), labels=list(labels),
                                      doc_id=f"{path.stem}:{len(docs)}"))  # fmt: skip
            rows.clear()

    with path.open(encoding="utf-8") as text, box_path.open(encoding="utf-8") as boxes:
        for number, (line, box_line) in enumerate(itertools.zip_longest(text, boxes), start=1):
            if line is None or box_line is None:
                raise DocumentError(f"{path} and {box_path.name} differ in length (line {number})")
            if not line.strip() or line.startswith("-DOCSTART-"):
                flush()
                continue
            parts, box_parts = line.rstrip("\n").split("\t"), box_line.rstrip("\n").split("\t")
            try:
                coords = [int(v) for v in box_parts[1].strip('"').split()]
                cell = int(box_parts[2]) if len(box_parts) > 2 else len(rows)
            except (IndexError, ValueError):
                raise DocumentError(f"{box_path}:{number}: expected word<TAB>x0 y0 x1 y1<TAB>pos_bbox") from None
            if len(parts) < 2 or parts[0] != box_parts[0]:
                raise DocumentError(f"{path}:{number}: word<TAB>LABEL line not aligned with {box_path.name}")
            rows.append((parts[0], parts[-1], coords, cell))
    flush()
    if not docs:
        raise DocumentError(f"{path}: no documents")
    return docs


def read_documents(path: str | Path, **kwargs: Any) -> list[Document]:
    """A JSONL file, a FUNSD annotation, a folder of FUNSD annotations (``*.json``, sorted), or the original's
    processed ``{split}.txt`` + ``{split}_box.txt``."""
    path = Path(path)
    if path.suffix == ".txt":
        return read_funsd_txt(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise DocumentError(f"{path}: no *.json FUNSD annotations")
        return [read_funsd(f, **kwargs) for f in files]
    if path.suffix == ".json":
        return [read_funsd(path, **kwargs)]
    return read_documents_jsonl(path, **kwargs)


def document_files(path: str | Path) -> dict[str, Path]:
    """The input files behind ``path`` (itself, or the ``*.json`` of a folder), for a run's fingerprint."""
    path = Path(path)
    return {f.name: f for f in sorted(path.glob("*.json"))} if path.is_dir() else {path.name: path}
