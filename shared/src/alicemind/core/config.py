"""Model configuration: dataclasses with ``config.json`` IO and presets registered as data."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="ModelConfig")

CONFIG_NAME = "config.json"


class ConfigError(ValueError):
    """A config that cannot be used: not JSON, a field of the wrong type, or inconsistent settings."""


class UnknownPresetError(ConfigError, KeyError):
    """No preset of that name is registered (a KeyError too, for callers that catch that)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


# -- type checks from annotations (also used for recipes by alicemind.core.cli.schema) ---------------------------
def describe_type(hint: Any) -> str:
    """How an annotation reads in an error message: "an integer", "a number or null", "one of 'a', 'b'"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any value"
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_plural(args[0])}"
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin in (dict, Mapping) or hint is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _plural(hint: Any) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(hint, "values")


_NO = object()


def coerce_value(value: Any, hint: Any) -> Any:
    """``value`` checked against annotation ``hint``; returns it (integral floats become ints, lists tuples where
    the hint says so) or raises ``TypeError`` saying what was expected. Unknown annotations accept anything."""
    out = _coerce(value, hint)
    if out is _NO:
        raise TypeError(f"expected {describe_type(hint)}, got {value!r}")
    return out


def _coerce(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, (str, TypeVar)):
        return value
    if hint is type(None):
        return value if value is None else _NO
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            out = _coerce(value, arg)
            if out is not _NO:
                return out
        return _NO
    if origin is typing.Literal:
        return value if value in args else _NO
    if hint is bool:
        return value if isinstance(value, bool) else _NO
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 1e3 written for 1000
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if hint is float:
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else _NO
    if hint is str:
        return value if isinstance(value, str) else _NO
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _NO
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return _NO
            items = [_coerce(v, a) for v, a in zip(value, args)]
        else:
            item = args[0] if args else Any
            items = [_coerce(v, item) for v in value]
        if any(i is _NO for i in items):
            return _NO
        return tuple(items) if origin is tuple or hint is tuple else list(items)
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            return _NO
        item = args[1] if len(args) == 2 else Any
        items = {k: _coerce(v, item) for k, v in value.items()}
        return _NO if any(v is _NO for v in items.values()) else items
    return value  # a class we do not know how to check


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass's fields (empty if they cannot be resolved)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation naming something not importable here: check nothing rather than fail
        return {}
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name in hints}


def _json_error(path: Path, err: json.JSONDecodeError) -> ConfigError:
    return ConfigError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}")


def read_json_file(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a file that is not JSON (or not UTF-8) raises one-line :class:`ConfigError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start}): not a JSON file") from None
    except json.JSONDecodeError as err:
        raise _json_error(path, err) from None


# Keys that Hugging Face and other tools write into config.json but that do not describe the architecture.
_BOOKKEEPING_KEYS = frozenset(
    {"architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "gradient_checkpointing"}
)


@dataclasses.dataclass
class ModelConfig:
    """Base class of every family's config.

    Subclasses are dataclasses whose field names follow the Hugging Face peer where one exists, so a
    ``config.json`` written here is readable there and back. Keys that are not fields are kept in ``extra``
    (and written back out) instead of being dropped silently.
    """

    model_type: ClassVar[str] = "base"
    # Name under which this family's presets are registered (defaults to model_type).
    family: ClassVar[str] = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict, with ``model_type`` and any extra keys."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out = {"model_type": self.model_type, **out}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], **overrides: Any) -> C:
        """Build from a dict; unknown keys go to ``extra``; ``overrides`` must name real fields.

        Field values are checked against the field annotations: a wrong type raises :class:`ConfigError` naming
        the field, the expected type and the value; so do inconsistent settings found by :meth:`validate`.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}: a config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}; fields are {sorted(names)}")
        merged = {**data, **overrides}
        hints = field_types(cls)
        kwargs = {}
        for key, value in merged.items():
            if key not in names:
                continue
            try:
                kwargs[key] = coerce_value(value, hints[key]) if key in hints else value
            except TypeError as err:
                raise ConfigError(f"{cls.__name__} field {key!r}: {err}") from None
        extra = {k: v for k, v in merged.items() if k not in names and k != "model_type" and k not in _BOOKKEEPING_KEYS}
        config = cls(**kwargs)
        config.extra = extra
        try:
            config.validate()
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return config

    def validate(self) -> None:
        """Raise ValueError for inconsistent settings; subclasses extend."""

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` into ``directory`` (created if needed), through a rename so it is never half-written."""
        from alicemind.core.io import atomic_write_text

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path / CONFIG_NAME, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json_file(cls: type[C], path: str | os.PathLike, **overrides: Any) -> C:
        """Read a config from a JSON file; errors (not JSON, a wrong field type) name the file."""
        path = Path(path)
        data = read_json_file(path)
        try:
            return cls.from_dict(data, **overrides)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    @classmethod
    def from_pretrained(cls: type[C], name_or_path: str | os.PathLike, **overrides: Any) -> C:
        """Load from a folder holding ``config.json``, a JSON file, or a registered preset name."""
        path = Path(name_or_path)
        if path.is_dir():
            return cls.from_json_file(path / CONFIG_NAME, **overrides)
        if path.is_file():
            return cls.from_json_file(path, **overrides)
        return cls.from_preset(str(name_or_path), **overrides)

    @classmethod
    def from_preset(cls: type[C], name: str, **overrides: Any) -> C:
        """Build one of the registered sizes of this family."""
        family = cls.family or cls.model_type
        presets = _PRESETS.get(family, {})
        if name not in presets:
            close = difflib.get_close_matches(name, presets, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise UnknownPresetError(f"unknown {family} preset {name!r}.{hint} Known: {sorted(presets)}")
        return cls.from_dict(dict(presets[name]), **overrides)


_PRESETS: dict[str, dict[str, dict[str, Any]]] = {}


def register_preset(model_type: str, name: str, values: dict[str, Any]) -> None:
    """Register a named size (plain data) for a family; re-registering the same name is an error."""
    table = _PRESETS.setdefault(model_type, {})
    if name in table and table[name] != values:
        raise ValueError(f"preset {name!r} of {model_type} is already registered with other values")
    table[name] = dict(values)


def list_presets(model_type: str | None = None) -> dict[str, list[str]]:
    """Registered preset names, per model type."""
    if model_type is not None:
        return {model_type: sorted(_PRESETS.get(model_type, {}))}
    return {k: sorted(v) for k, v in _PRESETS.items()}
