"""Recipe validation: every value checked by type and range before a verb does any slow work.

A key's type comes, in this order, from
1. the dataclass a section is built into (``training`` -> :class:`TrainingConfig`, ``generation`` ->
   :class:`GenerationConfig`; see ``SECTION_TYPES``), so fields added to those classes are covered unchanged;
2. the value the recipe itself ships (an ``int`` default takes integers, a list of numbers takes lists of numbers);
3. a range rule, declared as data below (``RULES``: patterns over the dotted key, first match wins), which also
   bounds the value (probabilities in [0, 1], positive counts...). Families add their own with
   :func:`register_recipe_rules` (e.g. a closed set of strings for ``lang``).
``null`` is accepted wherever the dataclass field allows it or no dataclass speaks for the key (recipes use it for
"default" / "off"). Whole sections are then built once (``TrainingConfig``, ``GenerationConfig``) so cross-field
mistakes (``max_steps`` and ``num_epochs`` both set) are reported now rather than after loading a model.
"""

from __future__ import annotations

import fnmatch
import functools
import operator
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alicemind.core.cli.recipes import RecipeError
from alicemind.core.config import coerce_value, describe_type, field_types


@dataclass(frozen=True)
class Rule:
    """What a recipe value must be: an annotation (``type``), optional bounds and a closed set of ``choices``."""

    type: Any = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple[Any, ...] | None = None

    def describe(self, hint: Any) -> str:
        """The allowed values in words, for an error message."""
        if self.choices is not None:
            return "one of " + ", ".join("null" if c is None else repr(c) for c in self.choices)
        args = typing.get_args(hint)
        nullable = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
        if nullable:
            rest = tuple(a for a in args if a is not type(None))
            return self.describe(rest[0] if len(rest) == 1 else functools.reduce(operator.or_, rest)) + " (or null)"
        text = describe_type(hint)
        if self.min is not None and self.max is not None:
            return f"{text} in {'(' if self.min_exclusive else '['}{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f"{text} {'>' if self.min_exclusive else '>='} {self.min:g}"
        if self.max is not None:
            return f"{text} <= {self.max:g}"
        return text

    def admits(self, value: Any) -> bool:
        """Whether an already type-checked value is within the bounds and choices."""
        if self.choices is not None:
            return value in self.choices
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if self.min is not None and (v < self.min or (self.min_exclusive and v == self.min)):
                return False
            if self.max is not None and v > self.max:
                return False
        return True


POSITIVE_INT = Rule(int, min=1)
COUNT = Rule(int, min=0)  # 0 allowed: "off" for intervals, none for limits
PROBABILITY = Rule(float, min=0, max=1)
NON_NEGATIVE = Rule(float, min=0)
POSITIVE = Rule(float, min=0, min_exclusive=True)


def _training_choices() -> dict[str, Rule]:
    from alicemind.core.ops import SCHEDULES
    from alicemind.core.training.config import _PRECISIONS

    return {
        "training.precision": Rule(str, choices=tuple(_PRECISIONS)),
        "training.scheduler": Rule(str, choices=tuple(SCHEDULES)),
        "training.optimizer": Rule(str, choices=("adamw", "lamb")),
    }


# Range rules, as data. Patterns are fnmatch over the full dotted key; ``*.x`` also matches a top-level ``x``.
# The first match wins, so exact training keys come before the name-based rules that cover any recipe.
RULES: list[tuple[str, Rule]] = [
    ("training.max_steps", POSITIVE_INT),
    ("training.num_epochs", POSITIVE_INT),
    ("training.per_device_batch_size", POSITIVE_INT),
    ("training.gradient_accumulation_steps", POSITIVE_INT),
    ("training.keep_last_n", POSITIVE_INT),
    ("training.lr", NON_NEGATIVE),
    ("training.weight_decay", NON_NEGATIVE),
    ("training.adam_betas", Rule(min=0, max=1)),
    ("training.adam_eps", POSITIVE),
    ("training.layerwise_lr_decay", Rule(float, min=0, max=1, min_exclusive=True)),
    ("training.max_grad_norm", NON_NEGATIVE),
    ("training.warmup_steps", COUNT),
    ("training.seed", COUNT),
    ("training.*_every", COUNT),
    ("generation.temperature", POSITIVE),
    ("generation.top_p", Rule(float, min=0, max=1, min_exclusive=True)),
    ("*.corpus_format", Rule(str, choices=("auto", "text", "jsonl"))),
    ("*.child_tuning", Rule(str, choices=(None, "F", "D"))),
    ("*.reserve_p", Rule(float, min=0, max=1, min_exclusive=True)),
    ("*_prob", PROBABILITY),
    ("*_probability", PROBABILITY),
    ("*_ratio", PROBABILITY),
    ("*_fraction", PROBABILITY),
    ("*dropout*", PROBABILITY),
    ("*.label_smoothing", PROBABILITY),
    ("*.num_*", POSITIVE_INT),
    ("*batch_size", POSITIVE_INT),
    ("*.max_*", POSITIVE_INT),
    ("*_length", COUNT),
    ("*.min_*", COUNT),
    ("*_steps", COUNT),
    ("*_every", COUNT),
    ("*.seed", COUNT),
    ("*.limit", COUNT),
    ("*_limit", COUNT),
    ("*_factor", NON_NEGATIVE),
    ("*_weight", NON_NEGATIVE),
    ("*.lr", NON_NEGATIVE),
    ("*.lr_*", NON_NEGATIVE),
    ("*eps", POSITIVE),
    ("*.*_classes", POSITIVE_INT),
    ("*_size", POSITIVE_INT),
]
_FAMILY_RULES: dict[str, list[tuple[str, Rule]]] = {}


def register_recipe_rules(package: str, rules: Mapping[str, Rule]) -> None:
    """Add rules (pattern -> :class:`Rule`) for the recipes of ``package``; they win over the core ones."""
    _FAMILY_RULES.setdefault(package.removeprefix("alicemind."), []).extend(rules.items())


def section_types() -> dict[str, type]:
    """Recipe sections that are built into a core dataclass, so its field annotations type their keys."""
    from alicemind.core.generation import GenerationConfig
    from alicemind.core.training import TrainingConfig

    return {"training": TrainingConfig, "generation": GenerationConfig}


def _match(key: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(key, pattern) or (
        pattern.startswith("*.") and "." not in key and fnmatch.fnmatchcase(key, pattern[2:])
    )


def rule_for(key: str, package: str | None = None) -> Rule | None:
    """The first rule whose pattern matches ``key`` (a family's own rules first, then training choices, core)."""
    table = [*_FAMILY_RULES.get((package or "").removeprefix("alicemind."), []), *_training_choices().items(), *RULES]
    return next((rule for pattern, rule in table if _match(key, pattern)), None)


def _default_hint(value: Any) -> Any:
    """The annotation a shipped default value stands for (None when it says nothing)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    if isinstance(value, (list, tuple)):
        kinds = {_default_hint(v) for v in value} - {None}
        if kinds == {int, float} or kinds == {float}:
            return list[float]
        return list[kinds.pop()] if len(kinds) == 1 else list
    return None


def _check(key: str, value: Any, hint: Any, field_hint: bool, rule: Rule | None) -> Any:
    if rule is not None and rule.type is not None and not field_hint:
        # No dataclass speaks for the key: the rule's type fills in for a null default, and a probability
        # shipped as an integer (``label_smoothing: 0``) still takes fractions.
        if hint is None or (hint is int and rule.type is float and rule.max is not None):
            hint = rule.type
    if value is None:
        if field_hint and _rejects_none(hint):
            raise RecipeValueError(key, value, _allowed(rule, hint))
        return None
    if hint is not None:
        try:
            value = coerce_value(value, hint)
        except TypeError:
            raise RecipeValueError(key, value, _allowed(rule, hint)) from None
    if rule is not None and not rule.admits(value):
        raise RecipeValueError(key, value, _allowed(rule, hint if hint is not None else rule.type))
    return value


def _rejects_none(hint: Any) -> bool:
    try:
        coerce_value(None, hint)
    except TypeError:
        return True
    return False


def _allowed(rule: Rule | None, hint: Any) -> str:
    return rule.describe(hint) if rule is not None else describe_type(hint)


class RecipeValueError(RecipeError):
    """A recipe value of the wrong type or out of range."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"recipe key {key!r} must be {allowed}, got {value!r}")
        self.key = key


def validate_recipe(
    recipe: Mapping[str, Any], *, base: Mapping[str, Any] | None = None, package: str | None = None
) -> dict[str, Any]:
    """Check every value of ``recipe``; returns a copy with values coerced (``1e3`` -> 1000 where an int is due).

    ``base`` is the recipe as shipped (before overrides): its values give the types of keys no dataclass covers.
    Raises a one-line :class:`RecipeError` (a CliError) naming the key, what is allowed and the value found.
    """
    sections = section_types()
    out = _validate_mapping(recipe, base if base is not None else recipe, "", package, sections)
    for name, cls in sections.items():
        values = out.get(name)
        if isinstance(values, Mapping):
            try:
                cls.from_dict(dict(values))
            except (TypeError, ValueError) as err:
                raise RecipeError(f"recipe section {name!r}: {err}") from None
    return out


def _validate_mapping(
    node: Mapping[str, Any], base: Any, prefix: str, package: str | None, sections: dict[str, type]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = base if isinstance(base, Mapping) else {}
    section = prefix.split(".", 1)[0] if prefix else None
    hints = field_types(sections[section]) if section in sections and prefix.count(".") == 1 else {}
    for key, value in node.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and not hints.get(key):
            out[key] = _validate_mapping(value, base.get(key), f"{full}.", package, sections)
            continue
        if key in hints:
            hint, field_hint = hints[key], True
        else:
            hint, field_hint = _default_hint(base.get(key)), False
        out[key] = _check(full, value, hint, field_hint, rule_for(full, package))
    return out


def recipe_keys_help(recipe: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``key = default`` lines for every leaf of ``recipe`` (a verb's ``--help`` lists them)."""
    lines = []
    for key, value in recipe.items():
        if isinstance(value, Mapping) and value:
            lines.extend(recipe_keys_help(value, f"{prefix}{key}."))
        else:
            lines.append(f"{prefix}{key} = {_yaml_text(value)}")
    return lines


def _yaml_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{}"
    return str(value)
