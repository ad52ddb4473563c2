"""What defines a training run, recorded as ``output_dir/run.json``, and when an output folder may be reused.

A run is defined by the values that change its results (recipe and training settings, not logging or paths),
fingerprints of its inputs (content hashes of the corpus, the tokenizer, the built shards) and the code versions.
A later run into the same folder resumes only when all of these are equal; the length of the run
(``training.max_steps`` / ``training.num_epochs``) may change, which extends or shortens the same run. Anything
else stops with :class:`RunConflictError`, naming what differs and how to go on: ``overwrite`` (start fresh,
deleting the old run's training outputs) or ``resume="force"`` (continue the old checkpoints anyway).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from alicemind.core.cli.errors import CliError

RUN_FILE = "run.json"
RUN_FORMAT = 1
# Changing only these is the same run made longer or shorter, never a different one.
LENGTH_KEYS = ("training.max_steps", "training.num_epochs")
# What a Trainer writes into output_dir; --overwrite deletes exactly these (and the checkpoints).
TRAINER_OUTPUTS = ("best", "metrics.jsonl", "tensorboard", RUN_FILE)
_HINT = (
    "pass --overwrite (overwrite=True) to start fresh, deleting that run's checkpoints, or --resume "
    "(resume='force') to continue from its checkpoint anyway"
)


class RunConflictError(CliError):
    """An output folder holds another run (or its recorded inputs changed); the CLI prints it as one line, exit 2."""


def _plain(value: Any) -> Any:
    # Compare what JSON stores: tuples become lists, paths strings.
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``{"training": {"lr": 1}}`` -> ``{"training.lr": 1}``), JSON-normalised."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = _plain(value)
    return out


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's content, read in chunks (the file never has to fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(directory: str | os.PathLike[str]) -> str:
    """One sha256 over every file under ``directory``: relative paths and contents, in sorted order."""
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def code_versions(*distributions: str) -> dict[str, str]:
    """Installed versions of ``alicemind-core`` and the given distributions ("unknown" when not installed)."""
    out = {}
    for name in ("alicemind-core", *distributions):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def recipe_identity(
    recipe: Mapping[str, Any],
    *,
    files: Mapping[str, str | os.PathLike[str]] = {},  # noqa: B006 - read only
    vocab: Mapping[str, int] | None = None,
    exclude: Iterable[str] = ("training",),
    distributions: Iterable[str] = (),
) -> RunIdentity:
    """The identity of a recipe-driven run: the recipe's values minus the ``exclude`` key prefixes (``training``
    is recorded by the Trainer itself), a content hash of each input file (name -> path) and of the tokenizer's
    ``vocab`` (token -> id), and the code versions of alicemind-core plus ``distributions``."""
    skipped = tuple(exclude)
    values = {k: v for k, v in flatten(recipe).items() if not any(k == x or k.startswith(x + ".") for x in skipped)}
    fingerprints = {name: sha256_file(path) for name, path in files.items()}
    if vocab is not None:
        encoded = json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
        fingerprints["tokenizer"] = hashlib.sha256(encoded).hexdigest()
    return RunIdentity(values, fingerprints, code_versions(*distributions))


@dataclass
class RunIdentity:
    """What defines a run: result-affecting ``values`` (dotted keys), input ``fingerprints`` (name -> sha256),
    ``code`` versions. ``overrides`` (the command-line KEY=VALUE list) is recorded for reading, not compared:
    its effect is already in ``values``."""

    values: dict[str, Any] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    code: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.values = flatten(self.values)

    def updated(
        self,
        *,
        values: Mapping[str, Any] | None = None,
        fingerprints: Mapping[str, str] | None = None,
        code: Mapping[str, str] | None = None,
    ) -> RunIdentity:
        """A copy with more values / fingerprints / code versions (later ones win)."""
        return RunIdentity(
            {**self.values, **flatten(values or {})},
            {**self.fingerprints, **(fingerprints or {})},
            {**self.code, **(code or {})},
            list(self.overrides),
        )

    def differences(self, recorded: RunIdentity, *, partial: bool = False) -> list[str]:
        """What changed from ``recorded`` to this identity, one phrase each (``training.lr: 5e-05 -> 0.0001``).

        ``partial=True`` compares only what this identity holds (a check made before every input is built)."""
        out = []
        for key in sorted(self.values.keys() | ({} if partial else recorded.values.keys())):
            old, new = recorded.values.get(key, "(unset)"), self.values.get(key, "(unset)")
            if old != new:
                out.append(f"{key}: {old} -> {new}")
        for name in sorted(self.fingerprints.keys() | ({} if partial else recorded.fingerprints.keys())):
            if recorded.fingerprints.get(name) != self.fingerprints.get(name):
                out.append(f"{name} fingerprint differs")
        for name in sorted(self.code.keys() | ({} if partial else recorded.code.keys())):
            old, new = recorded.code.get(name, "(none)"), self.code.get(name, "(none)")
            if old != new:
                out.append(f"{name} version: {old} -> {new}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``run.json``."""
        return {
            "values": self.values,
            "fingerprints": self.fingerprints,
            "code": self.code,
            "overrides": self.overrides,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunIdentity:
        """Read what :meth:`to_dict` wrote."""
        return cls(
            dict(data.get("values") or {}),
            dict(data.get("fingerprints") or {}),
            dict(data.get("code") or {}),
            list(data.get("overrides") or []),
        )


def read_run(output_dir: Path) -> dict[str, Any] | None:
    """The recorded ``run.json`` of ``output_dir`` (None if there is none); an unreadable one is a conflict."""
    path = output_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        RunIdentity.from_dict(data["identity"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise RunConflictError(f"{path} is unreadable ({err}); {_HINT}") from None
    return data


def write_run(output_dir: Path, identity: RunIdentity, **extra: Any) -> Path:
    """Record ``identity`` (and ``extra`` fields) as ``output_dir/run.json``, atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path, tmp = output_dir / RUN_FILE, output_dir / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps({"format": RUN_FORMAT, "identity": identity.to_dict(), **extra}, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def _checkpoint_names(output_dir: Path) -> list[str]:
    if not output_dir.is_dir():
        return []
    return sorted(p.name for p in output_dir.iterdir() if p.name.startswith("checkpoint-") and p.is_dir())


def is_used(output_dir: Path) -> bool:
    """Whether ``output_dir`` holds a recorded run or checkpoints."""
    return (output_dir / RUN_FILE).is_file() or bool(_checkpoint_names(output_dir))


def clear_run(output_dir: Path, extra: Iterable[str] = ()) -> list[str]:
    """Delete the training outputs of the run in ``output_dir`` (checkpoints, ``best/``, metrics, ``run.json``,
    plus the ``extra`` names a family owns); returns what was deleted. Other files are left alone."""
    doomed = [*_checkpoint_names(output_dir), *TRAINER_OUTPUTS, *extra]
    deleted = []
    for name in doomed:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        deleted.append(name)
    return deleted


@dataclass
class RunPlan:
    """What to do with an output folder: ``action`` is "fresh" (nothing there), "resume" (the same run, or a
    forced resume) or "overwrite" (start fresh after deleting the old run). ``differences`` lists what differs
    from the recorded run (non-empty only for a forced resume, or length changes), ``recorded`` is its run.json."""

    action: str
    differences: list[str] = field(default_factory=list)
    recorded: dict[str, Any] | None = None


def plan_run(
    output_dir: Path, identity: RunIdentity, *, resume: str | None, overwrite: bool, partial: bool = False
) -> RunPlan:
    """Decide whether ``output_dir`` may be used by the run ``identity``; raises :class:`RunConflictError` if not.

    ``resume``: "auto" continues the same run, "force" any run, None/"never" none, a path means the checkpoint
    comes from elsewhere (then ``output_dir`` must be unused or hold the same run). Reads only; changes nothing.
    """
    if not is_used(output_dir):
        return RunPlan("fresh")
    if overwrite:
        return RunPlan("overwrite")
    recorded = read_run(output_dir)
    if recorded is None:
        diffs = [f"no {RUN_FILE} (its checkpoints were written before runs were recorded)"]
    else:
        diffs = identity.differences(RunIdentity.from_dict(recorded["identity"]), partial=partial)
    blocking = [d for d in diffs if d.split(":")[0] not in LENGTH_KEYS]
    if resume in (None, "never"):
        raise RunConflictError(f"{output_dir} holds a previous run and resume is off; {_HINT}")
    if resume == "force":
        return RunPlan("resume", diffs, recorded)
    if blocking:
        raise RunConflictError(f"{output_dir} holds another run: {'; '.join(diffs)}. To use that folder, {_HINT}")
    return RunPlan("resume", diffs, recorded)
