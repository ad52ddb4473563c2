"""A restricted unpickler for the legacy pickled checkpoints of the releases.

Only an allow-list of globals is ever resolved: torch's tensor-rebuild helpers, a few builtin containers and numpy
array reconstruction. A small set of classes that the releases pickle alongside their weights (``argparse.Namespace``,
PreSumm's ``models.optimizers.Optimizer``, ``torch.optim`` optimizers, fairseq meters) are mapped to inert
:class:`PickledObject` stand-ins that only hold data; their real code never runs. Any other global raises
:class:`UnsafeCheckpointError` before it is resolved.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import fnmatch
import io
import os
import pickle
import types
from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from alicemind.core.checkpoint.errors import UnsafeCheckpointError

__all__ = [
    "DEFAULT_PLACEHOLDER_GLOBALS",
    "PickledObject",
    "restricted_pickle_module",
    "placeholders_to_dicts",
]

# Classes that released checkpoints pickle next to their weights and that carry only data for us.
DEFAULT_PLACEHOLDER_GLOBALS: tuple[str, ...] = (
    "argparse.Namespace",
    "models.optimizers.*",  # PALM EN / PreSumm optimizer wrapper
    "torch.optim.*",  # optimizer and LR-scheduler objects pickled whole
    "fairseq.meters.*",  # fairseq 0.9 stores training meters in extra_state
    "fairseq.logging.meters.*",
)


class PickledObject:
    """Inert stand-in for an allow-listed class found in a pickle: it records arguments and state, nothing else."""

    global_name: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        obj = super().__new__(cls)
        obj.args = args
        obj.kwargs = kwargs
        obj.state = None
        obj.items = {}
        obj.list_items = []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # __new__ already recorded the arguments; REDUCE calls both, NEWOBJ only __new__.
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.list_items.append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.list_items.extend(values)

    def __repr__(self) -> str:
        return f"PickledObject({self.global_name})"


_placeholder_classes: dict[str, type[PickledObject]] = {}


def _placeholder_for(global_name: str) -> type[PickledObject]:
    # One subclass per global so that NEWOBJ gets a real type and the origin survives in the object.
    cls = _placeholder_classes.get(global_name)
    if cls is None:
        cls = type(f"PickledObject[{global_name}]", (PickledObject,), {"global_name": global_name})
        _placeholder_classes[global_name] = cls
    return cls


def _safe_load_from_bytes(data: bytes) -> Any:
    # Plain (non torch.save) pickles of tensors embed their storages as nested torch.save blobs.
    return torch.load(io.BytesIO(data), weights_only=True)


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    # copyreg._reconstructor is how protocol 0/1 pickles rebuild plain objects; only allow it for stand-ins.
    if not (isinstance(cls, type) and issubclass(cls, PickledObject)) or base is not object:
        raise UnsafeCheckpointError(f"refusing copyreg._reconstructor for {cls!r} with base {base!r}")
    return cls()


def _numpy_globals() -> dict[str, Any]:
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    allowed: dict[str, Any] = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{prefix}._reconstruct"] = core.multiarray._reconstruct
        allowed[f"{prefix}.scalar"] = core.multiarray.scalar
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in dir(dtypes):
            if name.endswith("DType"):
                allowed[f"numpy.dtypes.{name}"] = getattr(dtypes, name)
    return allowed


def _allowed_globals() -> dict[str, Any]:
    allowed: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "collections.defaultdict": collections.defaultdict,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.slice": slice,
        "builtins.complex": complex,
        "builtins.bytearray": bytearray,
        "builtins.dict": dict,
        "builtins.list": list,
        "builtins.int": int,
        "builtins.float": float,
        "builtins.str": str,
        "builtins.tuple": tuple,
        # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
        "_codecs.encode": _latin1_encode,
        "copyreg._reconstructor": _safe_reconstructor,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch._utils._rebuild_tensor": torch._utils._rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
        "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": torch._utils._rebuild_parameter_with_state,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,
        "torch.Tensor": torch.Tensor,
        "torch._tensor._rebuild_from_type_v2": torch._tensor._rebuild_from_type_v2,
        "torch.storage._load_from_bytes": _safe_load_from_bytes,
        "torch.serialization._get_layout": torch.serialization._get_layout,
    }
    for name, value in vars(torch).items():
        if isinstance(value, torch.dtype):
            allowed[f"torch.{name}"] = value
    allowed.update(_numpy_globals())
    return allowed


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Only the text encodings pickle itself uses; no arbitrary codec lookups from file content.
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591", "utf8"):
        raise UnsafeCheckpointError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


_ALLOWED: dict[str, Any] | None = None


def _resolve(module: str, name: str, source: str, placeholders: tuple[str, ...]) -> Any:
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _allowed_globals()
    # Protocol < 3 pickles written by Python 3 use Python 2 names (__builtin__.dict, copy_reg, ...).
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    full = f"{module}.{name}"
    if full in _ALLOWED:
        return _ALLOWED[full]
    if any(fnmatch.fnmatchcase(full, pattern) for pattern in placeholders):
        return _placeholder_for(full)
    raise UnsafeCheckpointError(
        f"refusing to unpickle {full} from {source}: it is not on the allow-list of tensor and data globals "
        "(nothing was executed). If this global is known to be harmless data, pass its name in "
        "`allow_placeholders` to load it as an inert placeholder."
    )


def restricted_pickle_module(
    source: str | os.PathLike[str], allow_placeholders: Iterable[str] = ()
) -> types.ModuleType:
    """Build a pickle-compatible module (``Unpickler`` and ``load``) whose unpickler only resolves allow-listed globals.

    It is passed to ``torch.load(..., pickle_module=...)`` so that torch still rebuilds storages, while every global
    lookup goes through the allow-list. ``source`` names the file in error messages.
    """
    source_name = os.fspath(source)
    placeholders = tuple(DEFAULT_PLACEHOLDER_GLOBALS) + tuple(allow_placeholders)

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return _resolve(module, name, source_name, placeholders)

    def load(file: Any, **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()

    module = types.ModuleType("alicemind_restricted_pickle")
    module.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
    module.load = load  # type: ignore[attr-defined]
    module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return module


def _placeholder_to_dict(obj: PickledObject, convert: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if obj.global_name != "argparse.Namespace":
        out["__class__"] = obj.global_name
    state = obj.state
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
        # (dict state, slots state) as written by object.__reduce_ex__ for classes with __slots__.
        for part in state:
            out.update(part or {})
    elif isinstance(state, dict):
        out.update(state)
    elif state is not None:
        out["__state__"] = state
    if obj.args:
        out["__args__"] = list(obj.args)
    if obj.kwargs:
        out["__kwargs__"] = dict(obj.kwargs)
    if obj.items:
        out["__items__"] = dict(obj.items)
    if obj.list_items:
        out["__list__"] = list(obj.list_items)
    return {k: convert(v) for k, v in out.items()}


def placeholders_to_dicts(obj: Any) -> Any:
    """Replace every :class:`PickledObject` in a loaded structure by a plain dict of its state.

    ``argparse.Namespace`` becomes the dict of its attributes; other stand-ins keep their origin under
    ``"__class__"``. Containers are updated in place; shared and cyclic references are preserved.
    """
    # id -> (original, converted); holding the original keeps its id from being reused during the walk.
    memo: dict[int, tuple[Any, Any]] = {}

    def convert(value: Any) -> Any:
        key = id(value)
        if key in memo:
            return memo[key][1]
        if isinstance(value, PickledObject):
            result: dict[str, Any] = {}
            memo[key] = (value, result)
            result.update(_placeholder_to_dict(value, convert))
            return result
        if isinstance(value, dict):
            memo[key] = (value, value)
            for k in list(value):
                value[k] = convert(value[k])
            return value
        if isinstance(value, list):
            memo[key] = (value, value)
            value[:] = [convert(v) for v in value]
            return value
        if isinstance(value, tuple) and not isinstance(value, torch.Size):
            converted = tuple(convert(v) for v in value)
            if hasattr(value, "_fields"):  # namedtuple
                converted = type(value)(*converted)
            memo[key] = (value, converted)
            return converted
        return value

    return convert(obj)
