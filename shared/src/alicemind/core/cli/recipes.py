"""Recipes: YAML files shipped in ``alicemind/<family>/recipes/NAME.yaml``, with ``key.path=value`` overrides."""

from __future__ import annotations

import argparse
import copy
import difflib
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from alicemind.core.cli.errors import CliError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class RecipeError(CliError, ValueError):
    """A recipe that does not exist, does not parse, or an override naming an unknown key."""


def _package_name(package: str) -> str:
    return package if "." in package else f"alicemind.{package}"


def _recipes_dir(package: str) -> Any:
    name = _package_name(package)
    try:
        return importlib.resources.files(name) / "recipes"
    except ModuleNotFoundError:
        raise RecipeError(f"package {name} is not installed, so it has no recipes") from None


def list_recipes(package: str) -> list[str]:
    """Names (without ``.yaml``) of the recipes shipped in ``package`` (e.g. ``"structbert"``), sorted."""
    folder = _recipes_dir(package)
    if not folder.is_dir():
        return []
    return sorted(item.name[: -len(".yaml")] for item in folder.iterdir() if item.name.endswith(".yaml"))


def load_recipe(package: str, name: str) -> dict[str, Any]:
    """Load recipe ``name`` of ``package``; ``name`` may also be a path to a YAML file of one's own."""
    as_path = Path(name)
    if name.endswith((".yaml", ".yml")) and as_path.is_file():
        return _parse(as_path.read_text(encoding="utf-8"), str(as_path))
    item = _recipes_dir(package) / f"{name.removesuffix('.yaml')}.yaml"
    if not item.is_file():
        known = list_recipes(package)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        available = ", ".join(known) if known else "none"
        raise RecipeError(f"no recipe {name!r} in {_package_name(package)}.{hint} Available: {available}")
    return _parse(item.read_text(encoding="utf-8"), f"{_package_name(package)}:recipes/{item.name}")


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe {source} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {source} must be a mapping at the top level, found {type(data).__name__}")
    return data


def parse_value(raw: str) -> Any:
    """Parse an override value as a YAML scalar or flow collection; ``2e-5`` is a float (YAML 1.1 says string)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise RecipeError(f"cannot parse override value {raw!r}: {e}") from None
    if isinstance(value, str) and _FLOAT.fullmatch(raw.strip()):
        return float(raw)
    return value


def _flat_keys(cfg: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in cfg.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, Mapping):
            keys.extend(_flat_keys(value, f"{prefix}{key}."))
    return keys


def _unknown(key: str, cfg: Mapping[str, Any]) -> RecipeError:
    close = difflib.get_close_matches(key, _flat_keys(cfg), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return RecipeError(f"unknown recipe key {key!r}{hint} (write +{key}=VALUE to add a new key)")


def apply_overrides(
    cfg: Mapping[str, Any], overrides: Iterable[str], *, validate: bool = True, package: str | None = None
) -> dict[str, Any]:
    """Return a copy of ``cfg`` with ``a.b=value`` overrides applied (values parsed as YAML).

    An unknown key raises RecipeError naming it and the closest existing keys; prefix it with ``+`` to add it.
    With ``validate`` (the default) the result is checked by :func:`alicemind.core.cli.schema.validate_recipe`,
    the types of ``cfg``'s own values standing for the types of their keys.
    """
    result = copy.deepcopy(dict(cfg))
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.lstrip("+"):
            raise RecipeError(f"override {item!r} is not of the form KEY=VALUE")
        add = key.startswith("+")
        key = key.lstrip("+")
        *parents, last = key.split(".")
        node: Any = result
        for depth, part in enumerate(parents):
            if part not in node:
                if not add:
                    raise _unknown(key, result)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise RecipeError(f"recipe key {'.'.join(parents[: depth + 1])!r} is a value, not a section")
        if last not in node and not add:
            raise _unknown(key, result)
        value = parse_value(raw)
        if isinstance(node.get(last), dict) and not isinstance(value, dict):
            raise RecipeError(f"recipe key {key!r} is a section; override its keys (e.g. {key}.NAME=VALUE)")
        node[last] = value
    if validate:
        from alicemind.core.cli.schema import validate_recipe

        result = validate_recipe(result, base=cfg, package=package)
    return result


def add_recipe_arguments(
    parser: argparse.ArgumentParser,
    *,
    default: str | None = None,
    package: str | None = None,
    example: str | None = None,
) -> None:
    """Add ``--recipe NAME`` and trailing ``KEY=VALUE`` overrides to a family's sub-command.

    The verb's ``--help`` then lists the keys of recipe ``default`` (else ``example``) with their values; the
    family ``package`` defaults to the second word of the parser's ``prog`` (``alicemind structbert finetune``).
    """
    parser.add_argument(
        "--recipe", default=default, required=default is None, help="recipe name (see 'alicemind list') or a YAML path"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="override recipe values, e.g. training.lr=2e-5"
    )
    words = parser.prog.split()
    family = package or (words[1] if len(words) > 1 and words[0] == "alicemind" else None)
    if family:
        parser._recipe_help = (family, default or example)  # read by ArgumentParser.format_help, lazily


def recipe_help(package: str, name: str | None) -> str:
    """The text a recipe verb's ``--help`` ends with: the recipes available and the keys of ``name``."""
    from alicemind.core.cli.schema import recipe_keys_help

    try:
        names = list_recipes(package)
    except CliError:
        return ""
    lines = [f"recipes: {', '.join(names) or '-'}"]
    if name and name in names:
        keys = recipe_keys_help(load_recipe(package, name))
        lines += ["", f"recipe keys (KEY=VALUE overrides), with the values of recipe {name!r}:"]
        lines += [f"  {line}" for line in keys]
    return "\n".join(lines) + "\n"


def recipe_from_args(package: str, args: argparse.Namespace) -> dict[str, Any]:
    """The recipe selected by :func:`add_recipe_arguments` with its overrides applied and every value validated."""
    return apply_overrides(load_recipe(package, args.recipe), args.overrides, package=package)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--overwrite`` / ``--resume`` for a verb that trains into ``output_dir`` (see core.training.run_manifest)."""
    parser.add_argument(
        "--overwrite", action="store_true", help="start fresh in a used output_dir, deleting its previous run"
    )
    parser.add_argument(
        "--resume", action="store_true", help="resume the run in output_dir even where its settings or data differ"
    )


def run_recipe_from_args(package: str, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`recipe_from_args` with ``--overwrite`` / ``--resume`` as ``training.overwrite`` /
    ``training.resume="force"``."""
    if args.overwrite and args.resume:
        raise CliError("--overwrite starts fresh and --resume continues the old run: give one of them")
    recipe = recipe_from_args(package, args)
    training = dict(recipe.get("training") or {})
    if args.overwrite:
        training["overwrite"] = True
    if args.resume:
        training["resume"] = "force"
    return {**recipe, "training": training}
