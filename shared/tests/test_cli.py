"""The alicemind command: plugin discovery by entry point, recipes, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alicemind.core.cli import (
    CliError,
    RecipeError,
    apply_overrides,
    list_recipes,
    load_recipe,
    main,
    parse_value,
)

PLUGIN = """
import json

from alicemind.core.cli import add_recipe_arguments, recipe_from_args
from alicemind.core.data import load_task_examples


def _finetune(args):
    cfg = recipe_from_args("fakefam", args)
    examples = load_task_examples(cfg["task"], args.data_dir, "train")
    print(json.dumps({"cfg": cfg, "examples": len(examples)}))


def register(subparsers):
    family = subparsers.add_parser("fakefam", help="a family made up for the tests")
    verbs = family.add_subparsers(dest="verb", metavar="VERB", required=True)
    finetune = verbs.add_parser("finetune", help="fine-tune on a GLUE task")
    add_recipe_arguments(finetune)
    finetune.add_argument("--data-dir", required=True)
    finetune.set_defaults(func=_finetune)
    verbs.add_parser("fail", help="exits with 3").set_defaults(func=lambda args: 3)
"""

RECIPE = """\
# Source: made up for the tests
task: rte
optim:
  lr: 1.0e-4
  betas: [0.9, 0.999]
epochs: 3
"""


@pytest.fixture
def site(tmp_path_factory) -> Path:
    """A directory that, once on sys.path, holds an installed plugin distribution and two broken ones."""
    root = tmp_path_factory.mktemp("site")
    (root / "fakefam_cli.py").write_text(PLUGIN)
    (root / "broken_cli.py").write_text("raise ImportError('this plugin is broken on purpose')\n")
    (root / "half_cli.py").write_text(
        "def register(subparsers):\n    subparsers.add_parser('half')\n    raise RuntimeError('gave up halfway')\n"
    )
    family = root / "alicemind" / "fakefam"  # joins the alicemind namespace package
    (family / "recipes").mkdir(parents=True)
    (family / "__init__.py").write_text("")
    (family / "recipes" / "glue-rte.yaml").write_text(RECIPE)
    (family / "recipes" / "glue-mnli.yaml").write_text(RECIPE.replace("rte", "mnli"))
    dist = root / "alicemind_fakefam-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: alicemind-fakefam\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(
        "[alicemind.cli]\nfakefam = fakefam_cli:register\nbroken = broken_cli:register\nhalf = half_cli:register\n"
    )
    data = root / "RTE"
    data.mkdir()
    (data / "train.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\tA\tB\tentailment\n1\tC\tD\tnot_entailment\n"
    )
    return root


@pytest.fixture
def plugins(site, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(site))
    return site


def _run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "warning: skipping CLI plugin" not in line]


def test_finetune_verb_with_recipe_and_overrides(plugins, capsys):
    argv = ["fakefam", "finetune", "--recipe", "glue-rte", "--data-dir", str(plugins / "RTE"), "optim.lr=2e-5"]
    status, out, _ = _run([*argv, "+seed=7", "optim.betas=[0.8, 0.9]"], capsys)
    assert status == 0
    result = json.loads(out)
    assert result["examples"] == 2
    assert result["cfg"] == {"task": "rte", "optim": {"lr": 2e-5, "betas": [0.8, 0.9]}, "epochs": 3, "seed": 7}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["optim.lrr=1"], r"unknown recipe key 'optim.lrr'; did you mean 'optim.lr'"),
        (["task=mnlii"], r"unknown task 'mnlii'. Did you mean mnli"),
        (["--nope"], r"unrecognized arguments: --nope"),
        (["epochs"], r"override 'epochs' is not of the form KEY=VALUE"),
    ],
)
def test_user_errors_are_one_line_with_status_2(plugins, capsys, extra, message):
    argv = ["fakefam", "finetune", "--recipe", "glue-rte", "--data-dir", str(plugins / "RTE"), *extra]
    status, _, err = _run(argv, capsys)
    lines = _error_lines(err)
    assert status == 2 and len(lines) == 1, err
    assert "error:" in lines[0]
    assert re.search(message, lines[0])


def test_missing_data_and_unknown_recipe(plugins, capsys):
    status, _, err = _run(["fakefam", "finetune", "--recipe", "glue-rte", "--data-dir", "/no/such/RTE"], capsys)
    assert status == 2 and _error_lines(err) == [
        "alicemind: error: data directory /no/such/RTE for task rte does not exist (expected it to hold dev.tsv, "
        "test.tsv, train.tsv)"
    ]
    status, _, err = _run(["fakefam", "finetune", "--recipe", "glue-rtee", "--data-dir", "x"], capsys)
    assert status == 2
    assert "no recipe 'glue-rtee' in alicemind.fakefam. Did you mean glue-rte" in _error_lines(err)[0]


def test_help_at_every_level_and_exit_codes(plugins, capsys):
    for argv, expected in [
        (["--help"], "fakefam"),
        (["fakefam", "--help"], "finetune"),
        (["fakefam", "finetune", "--help"], "--recipe"),
    ]:
        status, out, _ = _run(argv, capsys)
        assert status == 0 and "usage: alicemind" in out and expected in out
    assert _run(["fakefam", "fail"], capsys)[0] == 3
    status, _, err = _run(["fakefam"], capsys)
    assert status == 2 and "the following arguments are required: VERB" in err
    status, _, err = _run(["--version"], capsys)
    assert status == 0


def test_broken_plugins_warn_and_leave_nothing_behind(plugins, capsys):
    status, out, err = _run(["list"], capsys)
    assert status == 0
    assert "warning: skipping CLI plugin 'broken' (broken_cli:register): ImportError: this plugin is broken" in err
    assert "warning: skipping CLI plugin 'half' (half_cli:register): RuntimeError: gave up halfway" in err
    block = out.split("fakefam  (alicemind-fakefam 0.3)")[1].split("\n\n")[0]
    assert "recipes:     glue-mnli, glue-rte" in block and "commands:    alicemind fakefam" in block
    assert "half  (alicemind-fakefam 0.3)\n  failed to load: RuntimeError: gave up halfway" in out
    status, _, err = _run(["half"], capsys)  # the parser it added before failing was not kept
    assert status == 2 and "invalid choice: 'half'" in err


def test_subprocess_exit_codes_and_no_traceback(site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "alicemind.core.cli"]
    ok = subprocess.run([*cmd, "fakefam", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "finetune" in ok.stdout and "warning" not in ok.stderr  # only this plugin loaded
    bad = subprocess.run(
        [*cmd, "fakefam", "finetune", "--recipe", "glue-rte", "--data-dir", str(site / "RTE"), "optim.lrr=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].endswith("(write +optim.lrr=VALUE to add a new key)")


def test_recipe_loading_and_overrides(plugins, tmp_path):
    assert list_recipes("fakefam") == list_recipes("alicemind.fakefam") == ["glue-mnli", "glue-rte"]
    cfg = load_recipe("fakefam", "glue-rte")
    assert cfg["optim"]["lr"] == 1e-4
    own = tmp_path / "mine.yaml"
    own.write_text("a: {b: 1}\n")
    assert load_recipe("fakefam", str(own)) == {"a": {"b": 1}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="must be a mapping at the top level, found list"):
        load_recipe("fakefam", str(bad))
    with pytest.raises(RecipeError, match="package alicemind.nofamily is not installed"):
        load_recipe("nofamily", "x")

    new = apply_overrides(cfg, ["optim.lr=3e-5", "epochs=10", "+optim.eps=1e-8", "+sched.name=linear"])
    assert new["optim"] == {"lr": 3e-5, "betas": [0.9, 0.999], "eps": 1e-8} and new["epochs"] == 10
    assert new["sched"] == {"name": "linear"} and cfg["optim"]["lr"] == 1e-4  # the input is left alone
    with pytest.raises(RecipeError, match="recipe key 'optim' is a section"):
        apply_overrides(cfg, ["optim=3"])
    with pytest.raises(RecipeError, match="recipe key 'epochs' is a value, not a section"):
        apply_overrides(cfg, ["epochs.x=3"])
    with pytest.raises(RecipeError, match=r"unknown recipe key 'epoch'; did you mean 'epochs'"):
        apply_overrides(cfg, ["epoch=3"])
    assert isinstance(RecipeError("x"), CliError)


@pytest.mark.parametrize(
    ("raw", "value"),
    [("2e-5", 2e-5), ("-1E3", -1000.0), ("3", 3), ("0.5", 0.5), ("true", True), ("null", None), ("", None),
     ("path/to/model", "path/to/model"), ("[1, 2]", [1, 2]), ("{a: 1}", {"a": 1}), ("'2e-5'", "2e-5")],
)  # fmt: skip
def test_parse_value(raw, value):
    assert parse_value(raw) == value and type(parse_value(raw)) is type(value)


def test_console_script_is_installed(site):
    script = Path(sys.executable).with_name("alicemind")
    if not script.exists():
        pytest.skip("alicemind-core is not installed with its console script in this environment")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([str(script), "fakefam", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: alicemind fakefam" in result.stdout


def test_overrides_may_follow_flags(tmp_path):
    """KEY=VALUE pairs after a flag are still overrides; anything else left over is an error (exit 2)."""
    from alicemind.core.cli import app

    seen = {}

    def register(subparsers):
        fam = subparsers.add_parser("toyfam")
        verbs = fam.add_subparsers(dest="verb", required=True)
        verb = verbs.add_parser("run")
        verb.add_argument("--flag", action="store_true")
        verb.add_argument("overrides", nargs="*")
        verb.set_defaults(func=lambda a: seen.update(vars(a)) or 0)

    class EP:
        name, value, dist = "toyfam", "x:register", None

        def load(self):
            return register

    orig = app.discover_plugins
    app.discover_plugins = lambda: [EP()]
    try:
        assert app.main(["toyfam", "run", "a=1", "--flag", "b=2"]) == 0
        assert seen["overrides"] == ["a=1", "b=2"] and seen["flag"] is True
        assert app.main(["toyfam", "run", "a=1", "--flag", "--nope"]) == 2
        assert app.main(["toyfam", "run", "a=1", "--flag", "b=2", "stray"]) == 2
    finally:
        app.discover_plugins = orig
