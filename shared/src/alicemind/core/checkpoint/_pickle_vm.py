"""A pickle opcode interpreter that only builds data, for :mod:`alicemind.core.checkpoint.safe_pickle`.

Why a hand-written interpreter rather than a ``pickle.Unpickler`` subclass: the C unpickler only lets a subclass
override ``find_class`` and ``persistent_load``. BUILD, SETITEM(S), APPEND(S), ADDITEMS and REDUCE then act on
whatever ``find_class`` returned, so a file could ``BUILD`` ``{"__defaults__": ...}`` onto an allow-listed function
(``torch._utils._rebuild_tensor_v2``) and break every later ``torch.load`` in the process. The pure-Python
``pickle._Unpickler`` has a dispatch table, but it is private and its internals change between Python versions.

Here every opcode is decoded by this module, and an object may only be mutated (BUILD, SETITEM, APPEND, ADDITEMS)
when this very load created it and registered it as *owned*: containers made by the container opcodes, and the
objects that :class:`PickleMachine`'s hooks declare fresh. Globals, memo hits of globals, and anything else are
values only. Reads are bounded and chunked, work done by calls is budgeted against the bytes read, and every failure
is raised as :class:`UnsafeCheckpointError` (refused) or :class:`CorruptCheckpointError` (malformed).
"""

from __future__ import annotations

import codecs
import collections
import struct
import sys
from typing import Any, NoReturn

from alicemind.core.checkpoint.errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError

__all__ = ["PickleMachine"]

_CHUNK = 1 << 20
# A legitimate pickle copies each container it passes to a call about once; a file that makes the same big list be
# copied over and over (BINGET + REDUCE is 4 bytes) is a denial of service. Work is counted in elements touched.
_WORK_PER_BYTE = 16
_WORK_BASE = 1 << 22
_DICT_TYPES = (dict, collections.OrderedDict, collections.defaultdict)
# Hashing a tuple recurses in C without a depth check: a dict key nested a million tuples deep crashes the process.
_MAX_TUPLE_DEPTH = 500

# Opcode byte -> (name, handler method name). Names follow pickletools for readable error messages.
_OPS: dict[int, tuple[str, str]] = {}


def _op(code: bytes, name: str):
    def register(method):
        _OPS[code[0]] = (name, method.__name__)
        return method

    return register


class PickleMachine:
    """Decode one pickle from ``file`` into plain data; subclasses decide which globals and calls are allowed."""

    persistent_load: Any = None  # set by torch.load to resolve storages, as on pickle.Unpickler
    source: str = "<pickle>"  # names the file in error messages

    def __init__(
        self,
        file: Any,
        *,
        fix_imports: bool = True,
        encoding: str = "ASCII",
        errors: str = "strict",
        buffers: Any = None,
    ) -> None:
        self._file = file
        self._encoding = encoding
        self._errors = errors
        self._pos = 0
        self._op_name = "start"
        self._op_pos = 0
        self._stack: list[Any] = []
        self._marks: list[list[Any]] = []
        self._memo: dict[int, Any] = {}
        self._owned: dict[int, Any] = {}
        self._depths: dict[int, tuple[tuple[Any, ...], int]] = {}
        self._work = 0
        if buffers is not None:
            self._refuse("out-of-band buffers", "checkpoints never use them")

    # -- hooks for subclasses -------------------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global; the default refuses every one."""
        self._refuse(f"global {module}.{name}", "this unpickler resolves no globals")

    def call(self, func: Any, args: tuple[Any, ...]) -> tuple[Any, bool]:
        """REDUCE: return ``(value, fresh)``; ``fresh`` registers the value as owned. The default refuses."""
        self._refuse(f"to call a {type(func).__name__}", "this unpickler calls nothing")

    def instantiate(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """NEWOBJ / NEWOBJ_EX / INST / OBJ: return a fresh instance (registered as owned). The default refuses."""
        self._refuse(f"to create a {type(cls).__name__}", "this unpickler creates no objects")

    def build(self, obj: Any, state: Any) -> None:
        """BUILD on an owned object that is not a plain container. The default refuses."""
        self._refuse(f"BUILD on {type(obj).__name__}", "only objects created by this load accept state")

    def check_persistent_id(self, pid: Any) -> None:
        """Validate a persistent id before ``persistent_load`` sees it. The default refuses every one."""
        self._refuse("a persistent id", "only torch storages are allowed")

    def record_item(self, obj: Any, key: Any, value: Any) -> None:
        """SETITEM on an owned object that is not a dict. The default refuses."""
        self._refuse(f"SETITEM on {type(obj).__name__}", "only containers created by this load accept items")

    def record_append(self, obj: Any, values: list[Any]) -> None:
        """APPEND(S) on an owned object that is not a list. The default refuses."""
        self._refuse(f"APPEND on {type(obj).__name__}", "only lists created by this load accept items")

    # -- helpers for subclasses -----------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.source} at byte {self._op_pos} ({self._op_name})"

    def _refuse(self, what: str, why: str) -> NoReturn:
        raise UnsafeCheckpointError(
            f"refusing {what} in {self._where()}: {why}. Nothing outside the allow-list ran and no global was "
            "changed; load it only if you trust it, or convert it to safetensors where it was made."
        )

    def _corrupt(self, why: str) -> NoReturn:
        raise CorruptCheckpointError(f"cannot unpickle {self._where()}: {why}; the file is truncated or corrupt")

    def _own(self, obj: Any) -> Any:
        # Holding the object keeps its id from being reused by another object during this load.
        self._owned[id(obj)] = obj
        return obj

    def _is_owned(self, obj: Any) -> bool:
        return self._owned.get(id(obj)) is obj

    def _depth(self, value: Any) -> int:
        entry = self._depths.get(id(value))
        return entry[1] if entry is not None and entry[0] is value else 0

    def _push(self, value: Any) -> None:
        # Every tuple that reaches the stack has its nesting depth noted, whoever built it.
        if isinstance(value, tuple) and value:
            depth = 1 + max([self._depth(v) for v in value if isinstance(v, tuple)], default=0)
            if depth > _MAX_TUPLE_DEPTH:
                self._corrupt(f"tuples are nested more than {_MAX_TUPLE_DEPTH} deep")
            self._depths[id(value)] = (value, depth)
        self._stack.append(value)

    def _charge(self, *values: Any) -> None:
        for value in values:
            if isinstance(value, str | bytes | bytearray | list | tuple | dict | set | frozenset):
                self._work += len(value) + 1
        if self._work > _WORK_BASE + _WORK_PER_BYTE * self._pos:
            self._refuse("the work this pickle asks for", "it copies far more data than the file holds")

    # -- reading ------------------------------------------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        if n < 0 or n > sys.maxsize:
            self._corrupt(f"length {n} out of range")
        # Chunked, so that a forged length costs at most what the file really holds.
        chunks, left = [], n
        while left:
            chunk = self._file.read(min(left, _CHUNK))
            if not chunk:
                self._corrupt(f"the stream ends {left} bytes short")
            chunks.append(chunk)
            left -= len(chunk)
        self._pos += n
        return b"".join(chunks)

    def _readline(self) -> bytes:
        line = self._file.readline()
        self._pos += len(line)
        if not line.endswith(b"\n"):
            self._corrupt("the stream ends inside a text argument")
        return line[:-1]

    def _unpack(self, fmt: str) -> int | float:
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    # -- stack ----------------------------------------------------------------------------------------------------

    def _pop(self) -> Any:
        if not self._stack:
            self._corrupt("stack underflow")
        return self._stack.pop()

    def _top(self) -> Any:
        if not self._stack:
            self._corrupt("stack underflow")
        return self._stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self._marks:
            self._corrupt("no MARK to pop")
        items, self._stack = self._stack, self._marks.pop()
        return items

    # -- main loop ------------------------------------------------------------------------------------------------

    def load(self) -> Any:
        """Read one pickle and return its object; raise :class:`UnsafeCheckpointError` or a corrupt-file error."""
        try:
            while True:
                self._op_pos = self._pos
                code = self._read(1)[0]
                entry = _OPS.get(code)
                if entry is None:
                    self._op_name = f"byte {code:#04x}"
                    self._corrupt("not a pickle opcode")
                self._op_name = entry[0]
                if code == 0x2E:  # STOP
                    return self._pop()
                getattr(self, entry[1])()
        except CheckpointError:
            raise
        except RecursionError:
            self._corrupt("the data is nested too deeply")
        except Exception as exc:  # any other failure of a step is a malformed stream, reported as such
            self._corrupt(f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            # Drop references so that a refused load keeps nothing alive.
            self._stack, self._marks, self._memo, self._owned, self._depths = [], [], {}, {}, {}

    # -- protocol and framing -------------------------------------------------------------------------------------

    @_op(b"\x80", "PROTO")
    def _proto(self) -> None:
        if self._read(1)[0] > 5:
            self._corrupt("unsupported pickle protocol")

    @_op(b"\x95", "FRAME")
    def _frame(self) -> None:
        self._read(8)  # frames only group reads; opcodes are decoded from the stream either way

    # -- scalars --------------------------------------------------------------------------------------------------

    @_op(b"N", "NONE")
    def _none(self) -> None:
        self._stack.append(None)

    @_op(b"\x88", "NEWTRUE")
    def _true(self) -> None:
        self._stack.append(True)

    @_op(b"\x89", "NEWFALSE")
    def _false(self) -> None:
        self._stack.append(False)

    @_op(b"I", "INT")
    def _int(self) -> None:
        line = self._readline()
        # Protocol 0 writes booleans as INT 00 / 01.
        self._stack.append(False if line == b"00" else True if line == b"01" else int(line, 0))

    @_op(b"J", "BININT")
    def _binint(self) -> None:
        self._stack.append(self._unpack("<i"))

    @_op(b"K", "BININT1")
    def _binint1(self) -> None:
        self._stack.append(self._read(1)[0])

    @_op(b"M", "BININT2")
    def _binint2(self) -> None:
        self._stack.append(self._unpack("<H"))

    @_op(b"L", "LONG")
    def _long(self) -> None:
        line = self._readline()
        self._stack.append(int(line[:-1] if line.endswith(b"L") else line, 0))

    @_op(b"\x8a", "LONG1")
    def _long1(self) -> None:
        self._stack.append(int.from_bytes(self._read(self._read(1)[0]), "little", signed=True))

    @_op(b"\x8b", "LONG4")
    def _long4(self) -> None:
        self._stack.append(int.from_bytes(self._read(self._unpack("<i")), "little", signed=True))

    @_op(b"F", "FLOAT")
    def _float(self) -> None:
        self._stack.append(float(self._readline()))

    @_op(b"G", "BINFLOAT")
    def _binfloat(self) -> None:
        self._stack.append(self._unpack(">d"))

    # -- strings and bytes ----------------------------------------------------------------------------------------

    def _py2_str(self, data: bytes) -> Any:
        # Python 2 `str`: bytes under encoding="bytes", else text in the caller's encoding (as pickle does).
        return data if self._encoding == "bytes" else data.decode(self._encoding, self._errors)

    @_op(b"S", "STRING")
    def _string(self) -> None:
        data = self._readline()
        if len(data) < 2 or data[:1] != data[-1:] or data[:1] not in (b'"', b"'"):
            self._corrupt("STRING argument is not quoted")
        self._stack.append(self._py2_str(codecs.escape_decode(data[1:-1])[0]))

    @_op(b"T", "BINSTRING")
    def _binstring(self) -> None:
        self._stack.append(self._py2_str(self._read(self._unpack("<i"))))

    @_op(b"U", "SHORT_BINSTRING")
    def _short_binstring(self) -> None:
        self._stack.append(self._py2_str(self._read(self._read(1)[0])))

    @_op(b"V", "UNICODE")
    def _unicode(self) -> None:
        self._stack.append(self._readline().decode("raw-unicode-escape"))

    @_op(b"X", "BINUNICODE")
    def _binunicode(self) -> None:
        self._stack.append(self._read(self._unpack("<I")).decode("utf-8", "surrogatepass"))

    @_op(b"\x8c", "SHORT_BINUNICODE")
    def _short_binunicode(self) -> None:
        self._stack.append(self._read(self._read(1)[0]).decode("utf-8", "surrogatepass"))

    @_op(b"\x8d", "BINUNICODE8")
    def _binunicode8(self) -> None:
        self._stack.append(self._read(self._unpack("<Q")).decode("utf-8", "surrogatepass"))

    @_op(b"B", "BINBYTES")
    def _binbytes(self) -> None:
        self._stack.append(self._read(self._unpack("<I")))

    @_op(b"C", "SHORT_BINBYTES")
    def _short_binbytes(self) -> None:
        self._stack.append(self._read(self._read(1)[0]))

    @_op(b"\x8e", "BINBYTES8")
    def _binbytes8(self) -> None:
        self._stack.append(self._read(self._unpack("<Q")))

    @_op(b"\x96", "BYTEARRAY8")
    def _bytearray8(self) -> None:
        self._stack.append(bytearray(self._read(self._unpack("<Q"))))

    @_op(b"\x97", "NEXT_BUFFER")
    def _next_buffer(self) -> None:
        self._refuse("an out-of-band buffer", "checkpoints never use them")

    @_op(b"\x98", "READONLY_BUFFER")
    def _readonly_buffer(self) -> None:
        self._refuse("an out-of-band buffer", "checkpoints never use them")

    # -- containers (created here, hence owned) -------------------------------------------------------------------

    @_op(b"(", "MARK")
    def _mark(self) -> None:
        self._marks.append(self._stack)
        self._stack = []

    @_op(b")", "EMPTY_TUPLE")
    def _empty_tuple(self) -> None:
        self._stack.append(())

    @_op(b"t", "TUPLE")
    def _tuple(self) -> None:
        items = self._pop_mark()  # rebinds self._stack: pop before pushing
        self._push(tuple(items))

    @_op(b"\x85", "TUPLE1")
    def _tuple1(self) -> None:
        self._push((self._pop(),))

    @_op(b"\x86", "TUPLE2")
    def _tuple2(self) -> None:
        b, a = self._pop(), self._pop()
        self._push((a, b))

    @_op(b"\x87", "TUPLE3")
    def _tuple3(self) -> None:
        c, b, a = self._pop(), self._pop(), self._pop()
        self._push((a, b, c))

    @_op(b"]", "EMPTY_LIST")
    def _empty_list(self) -> None:
        self._stack.append(self._own([]))

    @_op(b"l", "LIST")
    def _list(self) -> None:
        items = self._pop_mark()
        self._stack.append(self._own(items))

    @_op(b"}", "EMPTY_DICT")
    def _empty_dict(self) -> None:
        self._stack.append(self._own({}))

    @_op(b"d", "DICT")
    def _dict(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            self._corrupt("DICT needs key/value pairs")
        self._stack.append(self._own(dict(zip(items[::2], items[1::2], strict=True))))

    @_op(b"\x8f", "EMPTY_SET")
    def _empty_set(self) -> None:
        self._stack.append(self._own(set()))

    @_op(b"\x91", "FROZENSET")
    def _frozenset(self) -> None:
        items = self._pop_mark()
        self._stack.append(frozenset(items))

    # -- mutation: only of objects this load owns -----------------------------------------------------------------

    def _target(self, op: str) -> Any:
        target = self._top()
        if not self._is_owned(target):
            self._refuse(f"{op} on {type(target).__name__}", "only objects created by this load may be changed")
        return target

    @_op(b"a", "APPEND")
    def _append(self) -> None:
        value = self._pop()
        self._extend(self._target("APPEND"), [value])

    @_op(b"e", "APPENDS")
    def _appends(self) -> None:
        values = self._pop_mark()
        self._extend(self._target("APPENDS"), values)

    def _extend(self, target: Any, values: list[Any]) -> None:
        if type(target) is list:
            target.extend(values)
        else:
            self.record_append(target, values)

    @_op(b"s", "SETITEM")
    def _setitem(self) -> None:
        value, key = self._pop(), self._pop()
        self._set_items(self._target("SETITEM"), [key, value])

    @_op(b"u", "SETITEMS")
    def _setitems(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            self._corrupt("SETITEMS needs key/value pairs")
        self._set_items(self._target("SETITEMS"), items)

    def _set_items(self, target: Any, items: list[Any]) -> None:
        for i in range(0, len(items), 2):
            if type(target) in _DICT_TYPES:
                target[items[i]] = items[i + 1]
            else:
                self.record_item(target, items[i], items[i + 1])

    @_op(b"\x90", "ADDITEMS")
    def _additems(self) -> None:
        items = self._pop_mark()
        target = self._target("ADDITEMS")
        if type(target) is not set:
            self._refuse(f"ADDITEMS on {type(target).__name__}", "only sets accept ADDITEMS")
        target.update(items)

    @_op(b"b", "BUILD")
    def _build(self) -> None:
        state = self._pop()
        target = self._target("BUILD")
        self._charge(state)
        self.build(target, state)

    # -- globals, calls and objects -------------------------------------------------------------------------------

    @_op(b"c", "GLOBAL")
    def _global(self) -> None:
        module = self._readline().decode("utf-8")
        name = self._readline().decode("utf-8")
        self._stack.append(self.find_class(module, name))

    @_op(b"\x93", "STACK_GLOBAL")
    def _stack_global(self) -> None:
        name, module = self._pop(), self._pop()
        if type(name) is not str or type(module) is not str:
            self._corrupt("STACK_GLOBAL needs two strings")
        self._stack.append(self.find_class(module, name))

    @_op(b"R", "REDUCE")
    def _reduce(self) -> None:
        args = self._pop()
        func = self._pop()
        if type(args) is not tuple:
            self._corrupt("REDUCE arguments are not a tuple")
        self._charge(*args)
        value, fresh = self.call(func, args)
        self._push(self._own(value) if fresh else value)

    def _new(self, cls: Any, args: Any, kwargs: Any) -> None:
        if type(args) is not tuple or type(kwargs) is not dict:
            self._corrupt("class arguments are not a tuple and a dict")
        self._charge(*args, kwargs)
        self._stack.append(self._own(self.instantiate(cls, args, kwargs)))

    @_op(b"\x81", "NEWOBJ")
    def _newobj(self) -> None:
        args = self._pop()
        self._new(self._pop(), args, {})

    @_op(b"\x92", "NEWOBJ_EX")
    def _newobj_ex(self) -> None:
        kwargs, args = self._pop(), self._pop()
        self._new(self._pop(), args, kwargs)

    @_op(b"i", "INST")
    def _inst(self) -> None:
        module = self._readline().decode("utf-8")
        name = self._readline().decode("utf-8")
        cls = self.find_class(module, name)
        self._new(cls, tuple(self._pop_mark()), {})

    @_op(b"o", "OBJ")
    def _obj(self) -> None:
        items = self._pop_mark()
        if not items:
            self._corrupt("OBJ needs a class")
        self._new(items[0], tuple(items[1:]), {})

    @_op(b"P", "PERSID")
    def _persid(self) -> None:
        self._persistent(self._readline().decode("ascii"))

    @_op(b"Q", "BINPERSID")
    def _binpersid(self) -> None:
        self._persistent(self._pop())

    def _persistent(self, pid: Any) -> None:
        if self.persistent_load is None:
            self._refuse("a persistent id", "a plain pickle has no storages to refer to")
        self.check_persistent_id(pid)
        self._push(self.persistent_load(pid))

    @_op(b"\x82", "EXT1")
    def _ext1(self) -> None:
        self._refuse("a copyreg extension code", "checkpoints never use the extension registry")

    @_op(b"\x83", "EXT2")
    def _ext2(self) -> None:
        self._ext1()

    @_op(b"\x84", "EXT4")
    def _ext4(self) -> None:
        self._ext1()

    # -- stack and memo -------------------------------------------------------------------------------------------

    @_op(b"0", "POP")
    def _pop_op(self) -> None:
        if self._stack:
            self._stack.pop()
        else:
            self._pop_mark()

    @_op(b"1", "POP_MARK")
    def _pop_mark_op(self) -> None:
        self._pop_mark()

    @_op(b"2", "DUP")
    def _dup(self) -> None:
        self._stack.append(self._top())

    def _get(self, index: int) -> None:
        if index not in self._memo:
            self._corrupt(f"memo key {index} was never stored")
        self._stack.append(self._memo[index])

    @_op(b"g", "GET")
    def _get_op(self) -> None:
        self._get(int(self._readline()))

    @_op(b"h", "BINGET")
    def _binget(self) -> None:
        self._get(self._read(1)[0])

    @_op(b"j", "LONG_BINGET")
    def _long_binget(self) -> None:
        self._get(self._unpack("<I"))

    def _put(self, index: int) -> None:
        if index < 0:
            self._corrupt("negative memo key")
        self._memo[index] = self._top()

    @_op(b"p", "PUT")
    def _put_op(self) -> None:
        self._put(int(self._readline()))

    @_op(b"q", "BINPUT")
    def _binput(self) -> None:
        self._put(self._read(1)[0])

    @_op(b"r", "LONG_BINPUT")
    def _long_binput(self) -> None:
        self._put(self._unpack("<I"))

    @_op(b"\x94", "MEMOIZE")
    def _memoize(self) -> None:
        self._put(len(self._memo))


_OPS[0x2E] = ("STOP", "")
