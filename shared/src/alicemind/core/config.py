"""Model configuration: dataclasses with ``config.json`` IO and presets registered as data."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="ModelConfig")

CONFIG_NAME = "config.json"

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
        """Build from a dict; unknown keys go to ``extra``; ``overrides`` must name real fields."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}; fields are {sorted(names)}")
        merged = {**data, **overrides}
        kwargs = {k: v for k, v in merged.items() if k in names}
        extra = {k: v for k, v in merged.items() if k not in names and k != "model_type" and k not in _BOOKKEEPING_KEYS}
        config = cls(**kwargs)
        config.extra = extra
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError for inconsistent settings; subclasses extend."""

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` into ``directory`` (created if needed)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        target = path / CONFIG_NAME
        target.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return target

    @classmethod
    def from_json_file(cls: type[C], path: str | os.PathLike, **overrides: Any) -> C:
        """Read a config from a JSON file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"config file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        return cls.from_dict(data, **overrides)

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
            raise KeyError(f"unknown {family} preset {name!r}.{hint} Known: {sorted(presets)}")
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
