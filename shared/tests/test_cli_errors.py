"""The CLI dispatcher turns user and environment errors into one line with exit status 2; bugs keep tracebacks."""

from __future__ import annotations

import errno
import json

import pytest

from alicemind.core.checkpoint import CorruptCheckpointError
from alicemind.core.cli import main
from alicemind.core.cli.schema import RecipeValueError, validate_recipe
from alicemind.core.config import ConfigError, read_json_file
from alicemind.core.hub import OfflineError


class _EntryPoint:
    """Stands in for an installed ``alicemind.cli`` entry point: ``alicemind fake raise KIND``."""

    name, value, dist = "fake", "tests:register", None

    def __init__(self, raised: dict[str, BaseException]):
        self.raised = raised

    def load(self):
        def register(subparsers):
            parser = subparsers.add_parser("fake")
            verbs = parser.add_subparsers(dest="verb", required=True)
            verb = verbs.add_parser("raise")
            verb.add_argument("kind")
            verb.set_defaults(func=lambda args: self._raise(args.kind))

        return register

    def _raise(self, kind: str):
        raise self.raised[kind]


ERRORS = {
    "checkpoint": (CorruptCheckpointError("/ckpt/model.bin is truncated"), "/ckpt/model.bin is truncated"),
    "hub": (OfflineError("offline mode is on and x is not cached"), "offline mode is on and x is not cached"),
    "disk-full": (
        OSError(errno.ENOSPC, "No space left on device", "/out/model.safetensors"),
        "/out/model.safetensors: No space left on device (free some space or write elsewhere)",
    ),
    "read-only": (
        OSError(errno.EROFS, "Read-only file system", "/ro/out"),
        "/ro/out: Read-only file system (choose a folder you can write to)",
    ),
    "permission": (
        PermissionError(errno.EACCES, "Permission denied", "/root/x"),
        "/root/x: Permission denied (choose a folder you can write to)",
    ),
    "not-utf8": (
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        "input is not UTF-8 text (invalid start byte at byte 0); convert the file to UTF-8",
    ),
    "config": (ConfigError("/m/config.json is not valid JSON: x at line 1, column 2"), "/m/config.json is not"),
    "multi-line": (CorruptCheckpointError("first line\n  second line"), "first line second line"),
}


@pytest.fixture
def fake_cli(monkeypatch):
    raised = {kind: err for kind, (err, _) in ERRORS.items()}
    raised["bug"] = ZeroDivisionError("a genuine bug")
    monkeypatch.setattr("alicemind.core.cli.app.discover_plugins", lambda: [_EntryPoint(raised)])


@pytest.mark.parametrize("kind", sorted(ERRORS))
def test_user_and_environment_errors_are_one_line_with_status_2(fake_cli, capsys, kind):
    assert main(["fake", "raise", kind]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alicemind: error: " + ERRORS[kind][1])


def test_a_bug_keeps_its_traceback(fake_cli):
    with pytest.raises(ZeroDivisionError):
        main(["fake", "raise", "bug"])


def test_read_json_file_names_the_file_and_position(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"a": 1,}')
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON: .* at line 1, column 9$"):
        read_json_file(path)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read_json_file(path)
    path.write_text(json.dumps({"a": [1]}))
    assert read_json_file(path) == {"a": [1]}


BASE = {
    "lang": "zh",
    "fast_train": False,
    "max_seq_length": 128,
    "label_smoothing": 0,
    "data": {"masked_lm_prob": 0.15, "limit": None, "betas": [0.9, 0.999]},
    "training": {"num_epochs": 3, "per_device_batch_size": 32, "lr": 2e-5, "precision": "auto"},
    "generation": {"num_beams": 4},
}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("training.lr", "abc", "'training.lr' must be a number >= 0, got 'abc'"),
        ("training.num_epochs", "two", "'training.num_epochs' must be an integer >= 1 (or null), got 'two'"),
        ("training.per_device_batch_size", 0, "must be an integer >= 1 (or null), got 0"),
        ("training.precision", "fp8", "must be one of 'auto', 'fp32', 'bf16', 'fp16', got 'fp8'"),
        ("training.seed", -1, "'training.seed' must be an integer >= 0, got -1"),
        ("training.lr", None, "'training.lr' must be a number >= 0, got None"),
        ("fast_train", "maybe", "'fast_train' must be true or false, got 'maybe'"),
        ("max_seq_length", 0, "'max_seq_length' must be an integer >= 1, got 0"),
        ("label_smoothing", 1.5, "'label_smoothing' must be a number in [0, 1], got 1.5"),
        ("data.masked_lm_prob", 2, "'data.masked_lm_prob' must be a number in [0, 1], got 2"),
        ("data.limit", "all", "'data.limit' must be an integer >= 0, got 'all'"),
        ("data.betas", 0.9, "'data.betas' must be a list of numbers, got 0.9"),
        ("generation.num_beams", 1.5, "'generation.num_beams' must be an integer >= 1, got 1.5"),
    ],
)
def test_validate_recipe_names_key_allowed_values_and_value(key, value, message):
    recipe = json.loads(json.dumps(BASE))
    *parents, last = key.split(".")
    node = recipe
    for part in parents:
        node = node[part]
    node[last] = value
    with pytest.raises(RecipeValueError) as info:
        validate_recipe(recipe, base=BASE)
    assert str(info.value) == "recipe key " + message or str(info.value).endswith(message)
    assert str(info.value).startswith(f"recipe key {key!r}")


def test_validate_recipe_coerces_and_checks_whole_sections():
    recipe = json.loads(json.dumps(BASE))
    recipe["training"]["num_epochs"] = 1e1
    recipe["label_smoothing"] = 0.1
    out = validate_recipe(recipe, base=BASE)
    assert out["training"]["num_epochs"] == 10 and type(out["training"]["num_epochs"]) is int
    assert out["label_smoothing"] == 0.1
    recipe["training"]["max_steps"] = 5
    with pytest.raises(ValueError, match="recipe section 'training': .*exactly one of max_steps and num_epochs"):
        validate_recipe(recipe, base=BASE)
