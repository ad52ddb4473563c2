"""A small real-text classification task available offline: which topic of the Python standard library a
documentation sentence comes from (sentences taken from the docstrings of the installed stdlib sources).

Shared by the laptop-scale reproductions of the technique packages (ChildTuning, CAP, PST): a real task that needs
no download, so a reproduction runs anywhere the package installs."""

from __future__ import annotations

import ast
import functools
import random
import re
import sysconfig
from pathlib import Path

#: topic -> stdlib modules or packages (relative to the stdlib directory) whose docstrings supply its sentences.
TOPICS: dict[str, tuple[str, ...]] = {
    "networking": (
        "http", "urllib", "email", "smtplib.py", "ftplib.py", "imaplib.py", "poplib.py", "nntplib.py", "socket.py",
        "socketserver.py", "ssl.py", "xmlrpc", "wsgiref", "mailbox.py",
    ),
    "concurrency": (
        "asyncio", "concurrent", "multiprocessing", "threading.py", "queue.py", "sched.py", "subprocess.py",
        "selectors.py", "_threading_local.py",
    ),
    "files and archives": (
        "tarfile.py", "zipfile.py", "shutil.py", "pathlib.py", "tempfile.py", "glob.py", "fnmatch.py", "filecmp.py",
        "gzip.py", "bz2.py", "lzma.py", "os.py", "posixpath.py", "fileinput.py", "zipimport.py",
    ),
    "text processing": (
        "re", "string.py", "textwrap.py", "difflib.py", "codecs.py", "csv.py", "html", "gettext.py", "locale.py",
        "shlex.py", "tokenize.py", "stringprep.py",
    ),
    "numbers and time": (
        "_pydecimal.py", "fractions.py", "statistics.py", "random.py", "datetime.py", "calendar.py", "numbers.py",
        "_strptime.py", "zoneinfo", "colorsys.py",
    ),
    "testing and debugging": (
        "unittest", "doctest.py", "pdb.py", "bdb.py", "trace.py", "traceback.py", "profile.py", "pstats.py",
        "timeit.py", "tracemalloc.py", "cProfile.py",
    ),
}  # fmt: skip

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE_HINTS = (">>>", "::", "{", "}", "==", "->", "()", "[", "`", "\\", "=", "_")


def _python_files(root: Path, entry: str) -> list[Path]:
    path = root / entry
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*.py") if "test" not in p.relative_to(root).parts[1:-1])


def _docstrings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))]
    return [doc for node in nodes if (doc := ast.get_docstring(node, clean=True))]


def _sentences(doc: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", doc):
        lines = para.splitlines()
        if any(line.startswith((" ", "\t", ">>>")) for line in lines):
            continue  # indented blocks are code, tables or argument lists
        text = " ".join(line.strip() for line in lines)
        for sent in _SENTENCE_END.split(text):
            words = sent.split()
            if not 6 <= len(words) <= 40 or not sent.endswith("."):
                continue
            if any(h in sent for h in _CODE_HINTS):
                continue
            letters = sum(c.isalpha() for c in sent)
            if letters < 0.75 * len(sent.replace(" ", "")):
                continue
            out.append(" ".join(words))
    return out


def topic_sentences(stdlib_dir: str | Path | None = None) -> dict[str, list[str]]:
    """All usable sentences per topic, deduplicated, sentences found under two topics dropped, in file order."""
    found = _topic_sentences(str(stdlib_dir or sysconfig.get_paths()["stdlib"]))
    return {topic: list(sents) for topic, sents in found.items()}


@functools.lru_cache(maxsize=2)  # parsing ~150 stdlib files takes seconds; the result is immutable
def _topic_sentences(stdlib_dir: str) -> dict[str, tuple[str, ...]]:
    root = Path(stdlib_dir)
    found: dict[str, list[str]] = {}
    for topic, entries in TOPICS.items():
        seen: dict[str, None] = {}
        for entry in entries:
            for file in _python_files(root, entry):
                for doc in _docstrings(file.read_text(encoding="utf-8", errors="replace")):
                    for sent in _sentences(doc):
                        seen.setdefault(sent, None)
        found[topic] = list(seen)
    counts: dict[str, int] = {}
    for sents in found.values():
        for s in sents:
            counts[s] = counts.get(s, 0) + 1
    return {topic: tuple(s for s in sents if counts[s] == 1) for topic, sents in found.items()}


def build_topic_task(
    train_per_class: int, eval_per_class: int, *, seed: int = 0, stdlib_dir: str | Path | None = None
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[str]]:
    """A balanced split: ``train_per_class`` and ``eval_per_class`` disjoint sentences per topic.

    Returns (train, eval, label names); examples are (sentence, label index), shuffled with ``seed``.
    """
    per_topic = topic_sentences(stdlib_dir)
    rng = random.Random(seed)
    train, evaluation = [], []
    labels = list(per_topic)
    for label, topic in enumerate(labels):
        sents = list(per_topic[topic])
        need = train_per_class + eval_per_class
        if len(sents) < need:
            raise ValueError(f"topic {topic!r} has only {len(sents)} usable sentences, {need} needed")
        rng.shuffle(sents)
        train += [(s, label) for s in sents[:train_per_class]]
        evaluation += [(s, label) for s in sents[train_per_class:need]]
    rng.shuffle(train)
    rng.shuffle(evaluation)
    return train, evaluation, labels
