"""Your own token-tagging (CoNLL / BIO) and extractive-QA (SQuAD JSON) files, read with file-and-line errors."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alicemind.core.data.readers import DataFormatError, _decoded_lines, check_file


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence of a CoNLL file: its words, their tags (None for unlabelled input) and its first line."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None
    line: int


@dataclass(frozen=True)
class QAExample:
    """One SQuAD question: its context and answers as ``(text, character start)`` pairs."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...] = ()


def read_conll(
    path: str | os.PathLike[str], *, token_column: int = 0, tag_column: int = -1, with_tags: bool = True
) -> list[TaggedSentence]:
    """Sentences of a CoNLL-style file: one ``token ... tag`` line per word (tabs or spaces), a blank line between
    sentences, ``-DOCSTART-`` lines skipped. ``with_tags=False`` reads one token per line (or the token column)."""
    path = check_file(path)
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if tokens:
            sentences.append(TaggedSentence(tuple(tokens), tuple(tags) if with_tags else None, start))
        tokens.clear()
        tags.clear()

    for line_no, line in _decoded_lines(path, "utf-8"):
        fields = line.split()
        if not fields:
            flush()
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if with_tags and len(fields) < 2:
            raise DataFormatError(f"{path}:{line_no}: expected 'token<TAB>tag', found {len(fields)} field")
        try:
            token = fields[token_column]
            tag = fields[tag_column] if with_tags else ""
        except IndexError:
            raise DataFormatError(f"{path}:{line_no}: no column {max(token_column, tag_column)} here") from None
        if not tokens:
            start = line_no
        tokens.append(token)
        tags.append(tag)
    flush()
    if not sentences:
        raise DataFormatError(f"{path}: the file holds no sentences")
    return sentences


def tag_set(sentences: Sequence[TaggedSentence], path: Path, given: Sequence[str] | None = None) -> tuple[str, ...]:
    """The tag labels: ``given`` in its order (every training tag must be in it), else the sorted set found,
    with ``O`` first when present (the usual id 0 of BIO tag sets)."""
    found = {tag for s in sentences for tag in s.tags or ()}
    if given is not None:
        labels = tuple(str(t) for t in given)
        check_tags(sentences, labels, path, f"labels=[{', '.join(labels)}]")
        return labels
    return tuple(sorted(found, key=lambda t: (t != "O", t)))


def check_tags(sentences: Sequence[TaggedSentence], labels: Sequence[str], path: Path, origin: str) -> None:
    """Raise ``DataFormatError`` naming the line of the first tag that is not in ``labels``."""
    known = set(labels)
    for sentence in sentences:
        for offset, tag in enumerate(sentence.tags or ()):
            if tag not in known:
                raise DataFormatError(f"{path}:{sentence.line + offset}: tag {tag!r} does not occur in {origin} "
                                      f"(tags: {', '.join(labels)})")  # fmt: skip


def read_squad(path: str | os.PathLike[str], *, with_answers: bool = True) -> list[QAExample]:
    """Questions of a SQuAD-format JSON file (``{"data": [{"paragraphs": [{"context", "qas"}]}]}``).

    Each answer's ``answer_start`` must point at its ``text`` in the context; a question without answers is an
    error when ``with_answers`` (SQuAD 2.0 unanswerable questions are not supported)."""
    path = check_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataFormatError(f"{path}: expected a SQuAD file: an object with a 'data' list of articles")
    examples = []
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise DataFormatError(f"{path}: a paragraph has no 'context' text")
            for qa in paragraph.get("qas", []):
                qid = str(qa.get("id", len(examples)))
                if "question" not in qa:
                    raise DataFormatError(f"{path}: question {qid} has no 'question' field")
                answers = []
                for answer in qa.get("answers", []) if with_answers else []:
                    text, begin = str(answer.get("text", "")), answer.get("answer_start")
                    if not isinstance(begin, int) or context[begin : begin + len(text)] != text or not text:
                        raise DataFormatError(f"{path}: question {qid}: answer {text!r} is not at answer_start "
                                              f"{begin} of its context")  # fmt: skip
                    answers.append((text, begin))
                if with_answers and not answers:
                    raise DataFormatError(f"{path}: question {qid} has no answer (unanswerable questions are not "
                                          "supported)")  # fmt: skip
                examples.append(QAExample(qid, str(qa["question"]), context, tuple(answers)))
    if not examples:
        raise DataFormatError(f"{path}: the file holds no questions")
    return examples
