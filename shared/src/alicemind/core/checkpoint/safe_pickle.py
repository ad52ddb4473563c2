"""A sealed unpickler for the legacy pickled checkpoints of the releases.

Only an allow-list of globals is ever resolved: torch's tensor-rebuild helpers, a few builtin containers and numpy
array reconstruction. A small set of classes that the releases pickle alongside their weights (``argparse.Namespace``,
PreSumm's ``models.optimizers.Optimizer``, ``torch.optim`` optimizers, fairseq meters) are mapped to inert
:class:`PickledObject` stand-ins that only hold data; their real code never runs.

The opcodes are interpreted by :class:`~alicemind.core.checkpoint._pickle_vm.PickleMachine` (see there why it is not a
``pickle.Unpickler``). This module is its policy: an allow-listed global is a value; it is called only through a rule
that checks the argument types first, and it is never mutated, since BUILD, SETITEM and APPEND only reach objects the
load itself created. Every refusal raises :class:`UnsafeCheckpointError`; a malformed stream raises
:class:`CorruptCheckpointError`. Either way the process is left as it was.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import fnmatch
import io
import math
import os
import pickle
import types
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from alicemind.core.checkpoint._pickle_vm import PickleMachine
from alicemind.core.checkpoint.errors import CorruptCheckpointError, UnsafeCheckpointError

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


def _safe_load_from_bytes(data: bytes) -> Any:
    # Plain (non torch.save) pickles of tensors embed their storages as nested torch.save blobs.
    return torch.load(io.BytesIO(data), weights_only=True)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    return codecs.encode(text, encoding)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # numpy is optional for torch; without it no numpy global resolves
        return None
    return numpy


def _numpy_globals() -> dict[str, Any]:
    np = _numpy()
    if np is None:
        return {}
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
        "builtins.object": object,  # the `base` argument of copyreg._reconstructor (protocol 0/1)
        "_codecs.encode": _latin1_encode,
        "copyreg._reconstructor": _copyreg_reconstructor,
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


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Stand-in for ``copyreg._reconstructor``; only ever called by the sealed unpickler, with a placeholder class."""
    return cls()


# -- argument rules: a global is called only with the argument types that torch.save and pickle write for it -------

Check = Callable[["SealedUnpickler", tuple[Any, ...]], bool]
_TEXT_CODECS = ("latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii")
_SEQUENCES = (list, tuple, set, frozenset, dict, str, bytes)


def _ints(value: Any) -> bool:
    return type(value) in (tuple, list, torch.Size) and all(type(v) is int for v in value)


def _no_hooks(value: Any) -> bool:
    # Hooks are never serialized by torch (Note [Don't serialize hooks]); a file that brings some is hostile.
    return type(value) in (dict, collections.OrderedDict) and not value


def _attr_state(state: Any) -> bool:
    # Python attributes of a tensor or dict subclass: plain names only, no dunders and no hook slots.
    parts = state if type(state) is tuple and len(state) == 2 else (state,)
    for part in parts:
        if part is None:
            continue
        if type(part) is not dict:
            return False
        if not all(type(k) is str and not k.startswith("__") and "hook" not in k for k in part):
            return False
    return True


def _tensor_args(m: SealedUnpickler, a: tuple[Any, ...]) -> bool:
    return (
        len(a) == 4
        and isinstance(a[0], torch.storage.TypedStorage)
        and type(a[1]) is int
        and a[1] >= 0
        and _ints(a[2])
        and _ints(a[3])
        and len(a[2]) == len(a[3])
    )


def _tensor_v2_args(m: SealedUnpickler, a: tuple[Any, ...]) -> bool:
    metadata_ok = len(a) == 6 or a[6] is None or (type(a[6]) is dict and all(type(k) is str for k in a[6]))
    return len(a) in (6, 7) and _tensor_args(m, a[:4]) and type(a[4]) is bool and _no_hooks(a[5]) and metadata_ok


def _parameter_args(m: SealedUnpickler, a: tuple[Any, ...]) -> bool:
    return len(a) == 3 and isinstance(a[0], torch.Tensor) and type(a[1]) is bool and _no_hooks(a[2])


def _parameter_state_args(m: SealedUnpickler, a: tuple[Any, ...]) -> bool:
    return len(a) == 4 and _parameter_args(m, a[:3]) and _attr_state(a[3])


_TENSOR_REBUILDERS: dict[Any, Check] = {
    torch._utils._rebuild_tensor: _tensor_args,
    torch._utils._rebuild_tensor_v2: _tensor_v2_args,
    torch._utils._rebuild_parameter: _parameter_args,
    torch._utils._rebuild_parameter_with_state: _parameter_state_args,
}


def _from_type_args(m: SealedUnpickler, a: tuple[Any, ...]) -> bool:
    if len(a) != 4 or a[1] not in (torch.Tensor, torch.nn.Parameter) or type(a[2]) is not tuple:
        return False
    check = next((c for f, c in _TENSOR_REBUILDERS.items() if f is a[0]), None)
    return check is not None and check(m, a[2]) and _attr_state(a[3])


def _one_sequence(m: SealedUnpickler, a: tuple[Any, ...]) -> bool:
    return len(a) == 0 or (len(a) == 1 and type(a[0]) in _SEQUENCES)


def _text_codec(name: Any) -> bool:
    return type(name) is str and name.lower() in _TEXT_CODECS


_RULES: dict[str, tuple[Check, bool]] = {
    # name: (argument check, whether the result is a fresh mutable object that BUILD/SETITEM may then fill)
    "collections.OrderedDict": (_one_sequence, True),
    "collections.defaultdict": (
        lambda m, a: (
            len(a) <= 2
            and (not a or a[0] is None or a[0] in (list, dict, set, int, float, str, tuple))
            and (len(a) < 2 or type(a[1]) is dict)
        ),
        True,
    ),
    "builtins.set": (_one_sequence, True),
    "builtins.list": (_one_sequence, True),
    "builtins.dict": (_one_sequence, True),
    "builtins.frozenset": (_one_sequence, False),
    "builtins.tuple": (_one_sequence, False),
    "builtins.slice": (lambda m, a: 1 <= len(a) <= 3 and all(v is None or type(v) is int for v in a), False),
    "builtins.complex": (lambda m, a: len(a) <= 2 and all(type(v) in (int, float) for v in a), False),
    "builtins.bytearray": (
        lambda m, a: (
            not a or (len(a) == 1 and type(a[0]) is bytes) or (len(a) == 2 and type(a[0]) is str and _text_codec(a[1]))
        ),
        False,
    ),
    "builtins.int": (lambda m, a: len(a) <= 1 and all(type(v) in (bool, int, float, str, bytes) for v in a), False),
    "builtins.float": (lambda m, a: len(a) <= 1 and all(type(v) in (int, float, str, bytes) for v in a), False),
    "builtins.str": (
        lambda m, a: (
            len(a) == 0
            or (len(a) == 1 and type(a[0]) is str)
            or (len(a) == 2 and type(a[0]) is bytes and _text_codec(a[1]))
        ),
        False,
    ),
    "_codecs.encode": (
        lambda m, a: len(a) in (1, 2) and type(a[0]) is str and (len(a) == 1 or _text_codec(a[1])),
        False,
    ),
    "copyreg._reconstructor": (
        lambda m, a: len(a) == 3 and m.is_placeholder(a[0]) and a[1] is object and a[2] is None,
        True,
    ),
    "torch.Size": (lambda m, a: not a or (len(a) == 1 and _ints(a[0])), False),
    "torch.device": (
        lambda m, a: len(a) in (1, 2) and type(a[0]) in (str, int) and (len(a) == 1 or type(a[1]) is int),
        False,
    ),
    "torch._utils._rebuild_tensor": (_tensor_args, False),
    "torch._utils._rebuild_tensor_v2": (_tensor_v2_args, False),
    "torch._utils._rebuild_parameter": (_parameter_args, False),
    "torch._utils._rebuild_parameter_with_state": (_parameter_state_args, False),
    "torch.nn.parameter.Parameter": (
        lambda m, a: len(a) in (1, 2) and isinstance(a[0], torch.Tensor) and (len(a) == 1 or type(a[1]) is bool),
        False,
    ),
    "torch._tensor._rebuild_from_type_v2": (_from_type_args, False),
    "torch.storage._load_from_bytes": (lambda m, a: len(a) == 1 and type(a[0]) is bytes, False),
    "torch.serialization._get_layout": (lambda m, a: len(a) == 1 and type(a[0]) is str, False),
}


def _numpy_rules() -> dict[str, tuple[Check, bool]]:
    np = _numpy()
    if np is None:
        return {}
    rules: dict[str, tuple[Check, bool]] = {
        # np.dtype(name, align, copy): copy=True makes a fresh descriptor that BUILD may fill; without it numpy
        # hands out its shared builtin descriptor, which must never receive state.
        "numpy.dtype": (lambda m, a: len(a) == 3 and type(a[0]) is str and type(a[1]) is bool and a[2] is True, True),
    }
    for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
        # numpy writes _reconstruct(ndarray, (0,), b"b") and then BUILDs the data; bigger shapes would allocate.
        rules[f"{prefix}._reconstruct"] = (
            lambda m, a: (
                len(a) == 3
                and a[0] is np.ndarray
                and _ints(a[1])
                and min(a[1], default=0) >= 0
                and math.prod(a[1]) <= 1
                and type(a[2]) is bytes
            ),
            True,
        )
        rules[f"{prefix}.scalar"] = (
            lambda m, a: len(a) == 2 and isinstance(a[0], np.dtype) and (type(a[1]) is bytes or a[0].hasobject),
            False,
        )
    for name in _numpy_globals():
        if name.startswith("numpy.dtypes."):
            rules[name] = (lambda m, a: not a, False)  # returns numpy's shared instance: a value, never filled
    return rules


class _Policy:
    """Allow-listed globals by name, and their call rules by identity of the global."""

    def __init__(self) -> None:
        self.globals = _allowed_globals()
        rules = {**_RULES, **_numpy_rules()}
        # The global objects live as long as the process, so their ids are stable keys.
        self.rules: dict[int, tuple[Any, str, Check, bool]] = {}
        for name, (check, fresh) in rules.items():
            value = self.globals[name]
            self.rules[id(value)] = (value, name, check, fresh)


_POLICY: _Policy | None = None


def _policy() -> _Policy:
    global _POLICY
    if _POLICY is None:
        _POLICY = _Policy()
    return _POLICY


def _global_name(value: Any) -> str:
    # The allow-list name of a global for messages; other values by their type.
    name = next((n for n, v in _policy().globals.items() if v is value), None)
    return name if name is not None else f"a {_describe(value)}"


def _describe(value: Any) -> str:
    # Names types only: repr of file content could be huge or deeply nested.
    if isinstance(value, str | bytes):
        return f"{type(value).__name__}[{len(value)}]"
    return type(value).__name__


class SealedUnpickler(PickleMachine):
    """The sealed unpickler: allow-listed globals as values, calls through argument rules, mutation of own objects."""

    patterns: ClassVar[tuple[str, ...]] = DEFAULT_PLACEHOLDER_GLOBALS
    # Storage keys declared by persistent ids, shared by the unpicklers of one restricted module (legacy format).
    declared_keys: ClassVar[set[str] | None] = None

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        # Placeholder classes are made per load, so that no load leaves a class (or a cache entry) behind.
        self._placeholders: dict[str, type[PickledObject]] = {}
        self._file_size: int | None = None
        try:
            self._file_size = os.fstat(file.fileno()).st_size
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            pass

    def is_placeholder(self, value: Any) -> bool:
        """Whether ``value`` is a placeholder class made by this load."""
        return isinstance(value, type) and self._placeholders.get(getattr(value, "global_name", "")) is value

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allow-listed global, or a placeholder class for a name matching ``patterns``; refuse others."""
        if type(module) is not str or type(name) is not str:
            self._corrupt("a global name is not text")
        # Protocol < 3 pickles written by Python 3 use Python 2 names (__builtin__.dict, copy_reg, ...).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        allowed = _policy().globals
        if full in allowed:
            return allowed[full]
        if any(fnmatch.fnmatchcase(full, pattern) for pattern in self.patterns):
            cls = self._placeholders.get(full)
            if cls is None:
                cls = type(f"PickledObject[{full}]", (PickledObject,), {"global_name": full})
                self._placeholders[full] = cls
            return cls
        raise UnsafeCheckpointError(
            f"refusing to unpickle {full[:200]} from {self.source} ({self._op_name} at byte {self._op_pos}): it is "
            "not on the allow-list of tensor and data globals (nothing was executed). If this global is known to be "
            "harmless data, pass its name in `allow_placeholders` to load it as an inert placeholder."
        )

    def call(self, func: Any, args: tuple[Any, ...]) -> tuple[Any, bool]:
        """REDUCE: placeholder classes record their arguments; allow-listed globals run after their argument rule."""
        if self.is_placeholder(func):
            return func(*args), True
        rule = _policy().rules.get(id(func))
        if rule is None or rule[0] is not func:
            self._refuse(f"to call {_global_name(func)}", "only allow-listed tensor and data constructors are called")
        _, name, check, fresh = rule
        if not check(self, args):
            self._refuse(
                f"to call {name} with ({', '.join(_describe(a) for a in args)})",
                "these are not arguments that torch.save or pickle write for it",
            )
        value = func(*args)
        np = _numpy()
        if fresh and np is not None and func is np.dtype and value is np.dtype(args[0]):
            self._refuse(
                f"to call {name}({args[0]!r:.40})", "numpy returned its shared descriptor, which must not get state"
            )
        return value, fresh

    def instantiate(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """NEWOBJ / INST / OBJ: only placeholder classes, which record what they are given."""
        if not self.is_placeholder(cls):
            self._refuse(
                f"to create {_global_name(cls)}", "only inert placeholders of allow-listed classes are created"
            )
        return cls(*args, **kwargs)

    def build(self, obj: Any, state: Any) -> None:
        """BUILD on an object this load created: placeholders, dict subclasses' attributes, numpy arrays/dtypes."""
        np = _numpy()
        if isinstance(obj, PickledObject):
            obj.__setstate__(state)
        elif type(obj) in (collections.OrderedDict, collections.defaultdict) and _attr_state(state):
            # e.g. the `_metadata` attribute torch puts on state dicts.
            for part in state if type(state) is tuple else (state,):
                obj.__dict__.update(part or {})
        elif np is not None and (type(obj) is np.ndarray or isinstance(obj, np.dtype)):
            if type(state) is not tuple:
                self._refuse(f"BUILD on {type(obj).__name__} with a {_describe(state)}", "numpy state is a tuple")
            obj.__setstate__(state)
        else:
            self._refuse(f"BUILD on {type(obj).__name__} with a {_describe(state)}", "it takes no such state")

    def record_item(self, obj: Any, key: Any, value: Any) -> None:
        """SETITEM on a placeholder records the item."""
        if not isinstance(obj, PickledObject):
            super().record_item(obj, key, value)
        obj[key] = value

    def record_append(self, obj: Any, values: list[Any]) -> None:
        """APPEND(S) on a placeholder records the items."""
        if not isinstance(obj, PickledObject):
            super().record_append(obj, values)
        obj.extend(values)

    def check_persistent_id(self, pid: Any) -> None:
        """Accept only torch storage references: ``('storage', type, key, location, numel[, view])``."""
        storage_type = torch.serialization.StorageType
        ok = (
            type(pid) is tuple
            and len(pid) in (5, 6)
            and pid[0] in ("storage", b"storage")
            and isinstance(pid[1], storage_type)
            and type(pid[2]) is str
            and type(pid[3]) in (str, bytes)
            and type(pid[4]) is int
            and pid[4] >= 0
        )
        if ok and len(pid) == 6:  # the legacy format's view of a storage: None or (key, offset, size)
            view = pid[5]
            ok = view is None or (
                type(view) is tuple and len(view) == 3 and type(view[0]) is str
                and all(type(v) is int and v >= 0 for v in view[1:])
            )  # fmt: skip
        if not ok:
            shown = f"({', '.join(_describe(p) for p in pid)})" if type(pid) is tuple else _describe(pid)
            self._refuse(f"persistent id {shown[:200]}", "only torch storage references are allowed")
        # In the legacy format the storage bytes follow in the same file: a larger claim is a forged size.
        nbytes = pid[4] * torch._utils._element_size(pid[1].dtype)
        if self._file_size is not None and nbytes > self._file_size:
            self._corrupt(f"a storage of {nbytes} bytes cannot fit in a file of {self._file_size} bytes")
        if self.declared_keys is not None:
            self.declared_keys.add(pid[2])


def restricted_pickle_module(
    source: str | os.PathLike[str], allow_placeholders: Iterable[str] = ()
) -> types.ModuleType:
    """Build a pickle-compatible module (``Unpickler`` and ``load``) around the sealed unpickler.

    It is passed to ``torch.load(..., pickle_module=...)`` so that torch still rebuilds storages, while every opcode
    goes through :class:`SealedUnpickler`. ``source`` names the file in error messages. Every refusal raises
    :class:`UnsafeCheckpointError`, every malformed stream :class:`CorruptCheckpointError`.
    """
    session = {"main_loaded": False}

    class RestrictedUnpickler(SealedUnpickler):
        def load(self) -> Any:
            obj = super().load()
            if self.persistent_load is not None:
                session["main_loaded"] = True
            return obj

    RestrictedUnpickler.source = os.fspath(source)
    RestrictedUnpickler.patterns = tuple(DEFAULT_PLACEHOLDER_GLOBALS) + tuple(allow_placeholders)
    RestrictedUnpickler.declared_keys = set()

    def load(file: Any, **kwargs: Any) -> Any:
        obj = RestrictedUnpickler(file, **kwargs).load()
        # torch's legacy format follows the main pickle with the list of storage keys whose bytes come next; torch
        # asserts on an unknown key, so check it here against the storages the main pickle declared.
        if session["main_loaded"]:
            declared = RestrictedUnpickler.declared_keys or set()
            if type(obj) is not list or not all(type(k) is str and k in declared for k in obj):
                raise CorruptCheckpointError(
                    f"cannot read {RestrictedUnpickler.source}: its list of storage keys names storages that its "
                    "pickle never declared; the file is truncated or corrupt"
                )
        return obj

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
    ``"__class__"``. Containers are updated in place; shared and cyclic references are preserved. Structures nested
    too deeply to walk raise :class:`CorruptCheckpointError`.
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

    try:
        return convert(obj)
    except RecursionError:
        raise CorruptCheckpointError("the loaded checkpoint is nested too deeply to convert") from None
