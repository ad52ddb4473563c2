"""The sealed unpickler: hostile pickles that would change allow-listed globals, refusals, and a fuzz sweep."""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest
import torch

from alicemind.core.checkpoint import CorruptCheckpointError, UnsafeCheckpointError, load_checkpoint_object
from alicemind.core.checkpoint import safe_pickle as sp

P2 = b"\x80\x02"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ustr(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def valid_object() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "model": collections.OrderedDict(w=torch.randn(3, 2, generator=g), b=torch.zeros(2)),
        "args": argparse.Namespace(lr=0.5, arch="palm"),  # a non-tensor global: the sealed unpickler has to run
        "extra": {"steps": [1, 2], "best": np.float64(2.5)},
    }


def zip_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def legacy_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def with_data_pkl(archive: bytes, data_pkl: bytes) -> bytes:
    """The torch zip ``archive`` with its data.pkl replaced."""
    src = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            dst.writestr(name, data_pkl if name.endswith("/data.pkl") else src.read(name))
    return out.getvalue()


def data_pkl_of(archive: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(archive))
    return src.read(next(n for n in src.namelist() if n.endswith("/data.pkl")))


def legacy_with_main_pickle(main: bytes, keys: list[str] = ()) -> bytes:
    """A legacy-format torch file around a hand-written main pickle."""
    header = pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(1001, 2) + pickle.dumps({"protocol_version": 1001}, 2)
    return header + main + pickle.dumps(list(keys), 2)


def snapshot_globals() -> dict:
    """The mutable surface of every allow-listed global: function attributes, class dicts, dtype state."""
    torch.serialization._get_layout("torch.strided")  # fill torch's lazy cache first: that change is torch's own
    snap = {}
    for name, value in sp._allowed_globals().items():
        if isinstance(value, types.FunctionType):
            snap[name] = (value.__defaults__, value.__kwdefaults__, dict(value.__dict__), value.__code__,
                          value.__name__, value.__qualname__)  # fmt: skip
        elif isinstance(value, type):
            # copyreg caches __slotnames__ on a class the first time one of its instances is pickled: not a load.
            snap[name] = {k: v for k, v in vars(value).items() if k != "__slotnames__"}
        else:
            snap[name] = (repr(value), value.__reduce__() if isinstance(value, np.dtype) else None)
    for code in ("f8", "f4", "i8", "O"):
        snap[f"np.dtype({code})"] = (np.dtype(code).str, np.dtype(code).__reduce__())
    return snap


@pytest.fixture
def guarded_globals():
    """Snapshot the globals; restore function attributes afterwards so that a failing test cannot poison others."""
    before = snapshot_globals()
    saved = {
        name: (v, v.__defaults__, v.__kwdefaults__, dict(v.__dict__))
        for name, v in sp._allowed_globals().items()
        if isinstance(v, types.FunctionType)
    }
    yield before
    for func, defaults, kwdefaults, attrs in saved.values():
        func.__defaults__, func.__kwdefaults__ = defaults, kwdefaults
        func.__dict__.clear()
        func.__dict__.update(attrs)


def assert_valid_load_still_works(tmp_path) -> None:
    obj = valid_object()
    for name, data in (("ok_zip.pt", zip_bytes(obj)), ("ok_legacy.pt", legacy_bytes(obj))):
        path = tmp_path / name
        path.write_bytes(data)
        got = load_checkpoint_object(path)
        assert got["args"] == {"lr": 0.5, "arch": "palm"}
        assert torch.equal(got["model"]["w"], obj["model"]["w"])
        assert got["extra"]["best"] == 2.5
    sd_path = tmp_path / "sd.pt"
    torch.save(obj["model"], sd_path)
    assert torch.equal(torch.load(sd_path, weights_only=True)["w"], obj["model"]["w"])


DEFAULTS_ATTACK = (
    glob("torch._utils", "_rebuild_tensor_v2")
    + b"N}" + ustr("__defaults__") + ustr("pwned") + b"\x85s\x86"  # state (None, {"__defaults__": ("pwned",)})
    + b"b."
)  # fmt: skip


@pytest.mark.parametrize("container", ["zip", "legacy", "pickle"])
def test_build_on_rebuild_tensor_defaults_is_refused(tmp_path, guarded_globals, container):
    defaults = torch._utils._rebuild_tensor_v2.__defaults__
    path = tmp_path / "attack.pt"
    if container == "zip":
        path.write_bytes(with_data_pkl(zip_bytes(valid_object()), P2 + DEFAULTS_ATTACK))
    elif container == "legacy":
        path.write_bytes(legacy_with_main_pickle(P2 + DEFAULTS_ATTACK))
    else:
        path.write_bytes(P2 + DEFAULTS_ATTACK)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_object(path)
    message = str(info.value)
    assert str(path) in message and "BUILD" in message and "only objects created by this load" in message
    assert torch._utils._rebuild_tensor_v2.__defaults__ is defaults
    assert snapshot_globals() == guarded_globals
    assert_valid_load_still_works(tmp_path)


GLOBAL_ATTACKS = {
    # name: (stream after PROTO 2, opcode named in the refusal)
    "layout_cache": (glob("torch.serialization", "_get_layout") + b"}" + ustr("cache") + b"}sb.", "BUILD"),
    "parameter_kwdefaults": (
        glob("torch._utils", "_rebuild_parameter") + b"N}" + ustr("__kwdefaults__") + b"}\x86b.",
        "BUILD",
    ),
    "namespace_class_attr": (
        glob("argparse", "Namespace") + b"N}" + ustr("global_name") + ustr("evil") + b"s\x86b.",
        "BUILD",
    ),
    "ordereddict_class_item": (glob("collections", "OrderedDict") + ustr("k") + ustr("v") + b"s.", "SETITEM"),
    "list_class_append": (glob("builtins", "list") + b"(K\x01e.", "APPENDS"),
    "dtype_value_build": (glob("torch", "float32") + b"}b.", "BUILD"),
    "memo_copy_of_global": (glob("torch._utils", "_rebuild_tensor") + b"q\x00" + b"0h\x00}b.", "BUILD"),
    "stack_global_build": (
        ustr("torch._utils") + ustr("_rebuild_tensor_v2") + b"\x93N}" + ustr("__name__") + ustr("x") + b"s\x86b.",
        "BUILD",
    ),
    "numpy_shared_descriptor": (
        glob("numpy", "dtype") + ustr("f8") + b"\x89\x89\x87R" + b"(K\x03" + ustr(">") + b"NNNJ\xff\xff\xff\xffJ"
        b"\xff\xff\xff\xffK\x00tb.",
        "REDUCE",
    ),
    "placeholder_class_setitem": (glob("argparse", "Namespace") + ustr("k") + b"Ns.", "SETITEM"),
}


@pytest.mark.parametrize("name", sorted(GLOBAL_ATTACKS))
def test_changing_any_allow_listed_global_is_refused(tmp_path, guarded_globals, name):
    stream, opcode = GLOBAL_ATTACKS[name]
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(P2 + stream)
    with pytest.raises(UnsafeCheckpointError, match=rf"\({opcode}\)") as info:
        load_checkpoint_object(path)
    assert str(path) in str(info.value)
    assert snapshot_globals() == guarded_globals
    assert_valid_load_still_works(tmp_path)


REFUSALS = {
    # name: (stream after PROTO 2, text the refusal must contain)
    "stack_global_os_system": (ustr("os") + ustr("system") + b"\x93" + ustr("id") + b"\x85R.", "os.system"),
    "inst_os_system": (b"(" + ustr("id") + b"ios\nsystem\n.", "os.system"),
    "newobj_on_dict": (glob("builtins", "dict") + b")\x81.", "to create builtins.dict"),
    "obj_on_ordereddict": (b"(" + glob("collections", "OrderedDict") + b"o.", "to create collections.OrderedDict"),
    "reduce_on_tensor_class": (glob("torch", "Tensor") + b")R.", "to call torch.Tensor"),
    "bytearray_of_huge_size": (glob("builtins", "bytearray") + b"\x8a\x05\x00\x00\x00\x00\x01\x85R.", "bytearray"),
    "defaultdict_calling_loader": (
        glob("collections", "defaultdict") + glob("torch.storage", "_load_from_bytes") + b"\x85R.",
        "collections.defaultdict",
    ),
    "reconstructor_of_dict": (
        glob("copy_reg", "_reconstructor") + glob("builtins", "dict") + glob("builtins", "object") + b"N\x87R.",
        "copyreg._reconstructor",
    ),
    "persid_in_plain_pickle": (b"P0\n.", "persistent id"),
    "ext1": (b"\x82\x01.", "extension"),
    "next_buffer": (b"\x97.", "out-of-band"),
    "additems_on_global": (glob("builtins", "set") + b"(K\x01\x90.", "ADDITEMS"),
    "setitems_on_tuple": (b")(K\x01K\x02u.", "SETITEMS"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refusals_are_one_error_naming_file_and_opcode(tmp_path, guarded_globals, name):
    stream, expected = REFUSALS[name]
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(P2 + stream)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_object(path)
    message = str(info.value)
    assert type(info.value) is UnsafeCheckpointError
    assert expected in message and str(path) in message and "at byte" in message
    assert snapshot_globals() == guarded_globals


def test_zip_persistent_ids_other_than_storages_are_refused(tmp_path):
    archive = zip_bytes(valid_object())
    # ('module', <FloatStorage>, 'x', 'cpu', 1): torch itself would assert on it.
    pid = b"(" + ustr("module") + glob("torch", "FloatStorage") + ustr("0") + ustr("cpu") + b"K\x01tQ."
    path = tmp_path / "pid.pt"
    path.write_bytes(with_data_pkl(archive, P2 + pid))
    with pytest.raises(UnsafeCheckpointError, match=r"persistent id \(str\[6\], StorageType"):
        load_checkpoint_object(path)


def test_legacy_storage_key_list_must_match_the_pickle(tmp_path):
    path = tmp_path / "keys.pt"
    path.write_bytes(legacy_with_main_pickle(P2 + b"}" + ustr("args") + glob("argparse", "Namespace") + b")\x81s.",
                                             keys=["123"]))  # fmt: skip
    with pytest.raises(CorruptCheckpointError, match="storage keys"):
        load_checkpoint_object(path)


MALFORMED = {
    "empty_after_proto": b"",
    "unknown_opcode": b"\xff.",
    "stack_underflow": b"s.",
    "missing_memo": b"h\x07.",
    "odd_dict": b"(K\x01d.",
    "truncated_string": b"X\xff\x00\x00\x00abc",
    "no_stop": b"K\x01",
    "forged_length": b"\x8e" + struct.pack("<Q", 2**62) + b".",
    "deep_tuple_key": b"}" + b")" + b"\x85" * 2000 + b"K\x01s.",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_streams_raise_corrupt_error(tmp_path, name):
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(P2 + MALFORMED[name])
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_object(path)
    assert type(info.value) is CorruptCheckpointError and str(path) in str(info.value)


def test_copying_a_big_list_over_and_over_is_refused(tmp_path):
    big = b"]q\x00(" + b"K\x01" * 50_000 + b"e0"
    copy = glob("builtins", "tuple") + b"q\x01" + b"0" + b"h\x01h\x00\x85R0" * 20_000
    path = tmp_path / "amplify.pkl"
    path.write_bytes(P2 + big + copy + b"N.")
    with pytest.raises(UnsafeCheckpointError, match="copies far more data"):
        load_checkpoint_object(path)


class _Meter:
    def __init__(self):
        self.sum, self.count = 3.0, 2


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_plain_data_of_every_protocol_loads(tmp_path, monkeypatch, protocol):
    pkg, mod = types.ModuleType("fairseq"), types.ModuleType("fairseq.meters")
    pkg.meters = mod
    monkeypatch.setitem(sys.modules, "fairseq", pkg)
    _Meter.__module__, _Meter.__qualname__ = "fairseq.meters", "AverageMeter"
    mod.AverageMeter = _Meter
    monkeypatch.setitem(sys.modules, "fairseq.meters", mod)
    sd = collections.OrderedDict(w=torch.arange(6.0).reshape(2, 3))
    sd._metadata = {"": {"version": 1}}
    obj = {
        "model": sd,
        "args": argparse.Namespace(lr=0.1, langs=("en", "zh")),
        "meters": {"loss": _Meter()},
        "misc": [{1, 2}, frozenset({3}), b"\x00\xff", bytearray(b"ab"), 1 + 2j, 2**80, None, True, 1.5, "ü"],
        "np": [np.arange(3, dtype=np.int64), np.float32(0.25)],
        "size": torch.Size([2, 3]),
        "hist": collections.defaultdict(list, {"a": [1]}),
    }
    if protocol == 5:
        del obj["np"]  # numpy writes protocol-5 arrays with _frombuffer, which is not allow-listed
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    with path.open("rb") as f:  # detect_format knows protocols 2+ only, so use the module directly
        got = sp.placeholders_to_dicts(sp.restricted_pickle_module(path).load(f, encoding="utf-8"))
    if 2 <= protocol <= 4:
        assert repr(load_checkpoint_object(path)) == repr(got)
    assert torch.equal(got["model"]["w"], sd["w"]) and got["model"]._metadata == sd._metadata
    assert got["args"] == {"lr": 0.1, "langs": ("en", "zh")}
    assert got["meters"] == {"loss": {"__class__": "fairseq.meters.AverageMeter", "sum": 3.0, "count": 2}}
    assert got["misc"] == obj["misc"]
    if protocol < 5:
        assert got["np"][0].tolist() == [0, 1, 2] and got["np"][1] == np.float32(0.25)
    assert got["size"] == torch.Size([2, 3]) and got["hist"] == {"a": [1]}


# -- fuzz sweep ---------------------------------------------------------------------------------------------------

FUZZ_GLOBALS = [
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"), ("collections", "OrderedDict"),
    ("collections", "defaultdict"), ("builtins", "set"), ("builtins", "list"), ("builtins", "dict"),
    ("argparse", "Namespace"), ("torch.optim.adam", "Adam"), ("torch", "float32"), ("torch", "Size"),
    ("torch", "FloatStorage"), ("torch", "Tensor"), ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"), ("copy_reg", "_reconstructor"),
    ("__builtin__", "object"), ("torch.serialization", "_get_layout"), ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.storage", "_load_from_bytes"), ("_codecs", "encode"), ("builtins", "bytearray"),
    # never allowed
    ("os", "system"), ("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen"), ("torch", "load"),
    ("torch.nn.modules.linear", "Linear"), ("numpy", "load"),
]  # fmt: skip
SIMPLE_OPS = list(b"N\x88\x89)]}\x8f(t\x85\x86\x87ld\x91\x90aesubR\x81\x92oQ012\x94\x97\x98")


def random_op(rng) -> bytes:
    """One opcode with plausible arguments, biased towards the ones that touch objects."""
    kind = rng.random()
    if kind < 0.35:
        return bytes([rng.choice(SIMPLE_OPS)])
    if kind < 0.5:
        module, name = rng.choice(FUZZ_GLOBALS)
        if rng.random() < 0.5:
            return glob(module, name)
        return b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93"
    choices = [
        lambda: b"K" + bytes([rng.randrange(256)]),
        lambda: b"J" + struct.pack("<i", rng.randrange(-(2**31), 2**31)),
        lambda: b"\x8a\x02" + struct.pack("<h", rng.randrange(-(2**15), 2**15)),
        lambda: b"G" + struct.pack(">d", rng.random()),
        lambda: ustr(rng.choice(["storage", "cpu", "0", "__defaults__", "__dict__", "f8", "latin1", "_metadata"])),
        lambda: b"C\x03abc",
        lambda: b"h" + bytes([rng.randrange(8)]),
        lambda: b"q" + bytes([rng.randrange(8)]),
        lambda: b"j" + struct.pack("<I", rng.randrange(8)),
        lambda: b"r" + struct.pack("<I", rng.randrange(8)),
        lambda: b"g%d\n" % rng.randrange(8),
        lambda: b"p%d\n" % rng.randrange(8),
        lambda: b"I%d\n" % rng.randrange(-5, 300),
        lambda: b"L%dL\n" % rng.randrange(10**30),
        lambda: b"F1.5\n",
        lambda: b"S'abc'\n",
        lambda: b"Vab\\u00fc\n",
        lambda: b"P" + rng.choice([b"0", b"storage", b"x"]) + b"\n",
        lambda: b"i" + b"\n".join(s.encode() for s in rng.choice(FUZZ_GLOBALS)) + b"\n",
        lambda: rng.choice([b"\x82\x01", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00"]),
        lambda: b"\x80" + bytes([rng.randrange(7)]),
        lambda: b"\x95" + struct.pack("<Q", rng.randrange(2**20)),
        lambda: b"\x8e" + struct.pack("<Q", rng.choice([3, 2**40, 2**63])) + b"abc",
    ]
    return rng.choice(choices)()


def mutate(rng, data: bytes) -> bytes:
    """A byte flip, truncation, opcode insertion, deletion or duplication somewhere in ``data``."""
    kind, pos = rng.randrange(5), rng.randrange(len(data))
    if kind == 0:
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if kind == 1:
        return data[:pos]
    if kind == 2:
        return data[:pos] + b"".join(random_op(rng) for _ in range(rng.randint(1, 3))) + data[pos:]
    if kind == 3:
        return data[:pos] + data[pos + rng.randint(1, 16) :]
    end = min(len(data), pos + rng.randint(1, 24))
    return data[:end] + data[pos:end] + data[end:]


def crafted_stream(rng) -> bytes:
    body = b"".join(random_op(rng) for _ in range(rng.randint(1, 40)))
    return P2 + body + (b"." if rng.random() < 0.9 else b"")


def torch_load_as_torch_files_retries(path):
    """torch.load with the sealed module, translating only the errors torch's archive reader itself raises.

    Stricter than torch_files (which turns any exception into CorruptCheckpointError): an unexpected exception
    type coming out of the sealed unpickler escapes here and fails the sweep.
    """
    module = sp.restricted_pickle_module(path)
    try:
        return sp.placeholders_to_dicts(torch.load(path, map_location="cpu", pickle_module=module, weights_only=False))
    except (UnsafeCheckpointError, CorruptCheckpointError):
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, OSError) as exc:
        raise CorruptCheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc


def test_fuzz_sweep_refuses_with_one_error_and_leaves_globals_alone(tmp_path, guarded_globals):
    import random
    import time
    import traceback

    rng = random.Random(20240609)
    obj = valid_object()
    zip_archive, legacy = zip_bytes(obj), legacy_bytes(obj)
    data_pkl = data_pkl_of(zip_archive)
    plain = {p: pickle.dumps(obj | {"model": dict(obj["model"])}, protocol=p) for p in (2, 4)}
    path = tmp_path / "case.pt"
    module = sp.restricted_pickle_module("crafted")

    def from_file(data: bytes):  # plain pickles: load_checkpoint_object runs only the sealed unpickler on them
        path.write_bytes(data)
        return load_checkpoint_object(path)

    def sealed_torch_load(data: bytes):
        path.write_bytes(data)
        return torch_load_as_torch_files_retries(path)

    def direct(data: bytes):
        return module.load(io.BytesIO(data), encoding="utf-8")

    cases = [("zip", 500), ("legacy", 500), ("plain", 300), ("crafted", 3000), ("crafted-zip", 300),
             ("crafted-legacy", 300)]  # fmt: skip
    outcomes, failures, slowest = collections.Counter(), [], 0.0
    for kind, count in cases:
        for i in range(count):
            if kind == "zip":
                run, data = sealed_torch_load, with_data_pkl(zip_archive, mutate(rng, data_pkl))
            elif kind == "legacy":
                run, data = sealed_torch_load, mutate(rng, legacy)
            elif kind == "plain":
                run, data = from_file, mutate(rng, plain[rng.choice((2, 4))])
            elif kind == "crafted":
                run, data = direct, crafted_stream(rng)
            elif kind == "crafted-zip":
                run, data = sealed_torch_load, with_data_pkl(zip_archive, crafted_stream(rng))
            else:
                run, data = sealed_torch_load, legacy_with_main_pickle(crafted_stream(rng), keys=["0"])
            start = time.perf_counter()
            try:
                run(data)
            except (UnsafeCheckpointError, CorruptCheckpointError) as exc:
                outcomes[f"{kind}:{type(exc).__name__}"] += 1
            except BaseException as exc:  # noqa: BLE001 - the point is that nothing else escapes
                where = traceback.extract_tb(exc.__traceback__)[-1]
                failures.append(f"{kind}#{i}: {type(exc).__name__}: {str(exc)[:160]} ({where.filename}:{where.lineno})")
            else:
                outcomes[f"{kind}:loaded"] += 1
            slowest = max(slowest, time.perf_counter() - start)
    assert failures == [], f"{len(failures)} cases raised other errors, e.g. {failures[:5]}" + "\n".join(
        sorted({f.split(": ", 1)[1][-90:] for f in failures})
    )
    assert slowest < 2.0, f"one case took {slowest:.2f}s"
    # Every kind of case both loads and is refused sometimes, or the sweep would not be testing much.
    assert sum(outcomes.values()) == sum(n for _, n in cases)
    for kind in ("zip", "legacy", "plain"):
        assert outcomes[f"{kind}:loaded"] > 0 and outcomes[f"{kind}:UnsafeCheckpointError"] > 0, outcomes
    assert outcomes["crafted:UnsafeCheckpointError"] > 300 and outcomes["crafted:CorruptCheckpointError"] > 300
    assert snapshot_globals() == guarded_globals
    assert_valid_load_still_works(tmp_path)


def test_mangled_zip_through_load_checkpoint_object_raises_only_checkpoint_errors(tmp_path):
    import random

    rng = random.Random(7)
    archive = zip_bytes(valid_object())
    data_pkl = data_pkl_of(archive)
    path = tmp_path / "case.pt"
    escaped = []
    for _ in range(150):
        path.write_bytes(with_data_pkl(archive, mutate(rng, data_pkl)))
        try:
            load_checkpoint_object(path)
        except (UnsafeCheckpointError, CorruptCheckpointError):
            pass
        except Exception as exc:  # noqa: BLE001
            escaped.append(type(exc).__name__)
    assert escaped == []
