"""The ``alicemind`` command line, its plugin mechanism and recipe loading."""

from alicemind.core.cli.app import ENTRY_POINT_GROUP, ArgumentParser, Plugin, build_parser, discover_plugins, main
from alicemind.core.cli.errors import CliError
from alicemind.core.cli.recipes import (
    RecipeError,
    add_recipe_arguments,
    add_run_arguments,
    apply_overrides,
    list_recipes,
    load_recipe,
    parse_value,
    recipe_from_args,
    run_recipe_from_args,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ArgumentParser",
    "CliError",
    "Plugin",
    "RecipeError",
    "add_recipe_arguments",
    "add_run_arguments",
    "apply_overrides",
    "build_parser",
    "discover_plugins",
    "list_recipes",
    "load_recipe",
    "main",
    "parse_value",
    "recipe_from_args",
    "run_recipe_from_args",
]
