"""The pickle interpreter's bounds: nesting, shared references, opcodes, objects, inflated bytes.

Each attack is a few bytes to a few KB written here opcode by opcode (``Lib/pickletools.py``
names them). Through the command line each one ends in one line, exit 2 (or, for shared
references that are simply read once, exit 0), with no signal and a peak memory measured in
the child process. Where CPython's own unpickler is the victim, the test shows that too.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from paramscope.core.errors import CorruptFileError, ParamscopeError, UnsafeFileError
from paramscope.parsers.pickle import PickleLimits, scan_pickle
from paramscope.readers import read
from paramscope.readers.torch.tensor_pickle import TorchPickleRules

GIB = 1 << 30
PROTO = b"\x80\x04"


def text(s: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def get(i: int) -> bytes:
    """LONG_BINGET."""
    return b"j" + struct.pack("<I", i)


def dag(levels: int, leaf: bytes, pair: bytes) -> bytes:
    """Opcodes leaving one value on the stack whose references form a DAG of 2**levels leaves.

    Memo entry 0 is ``leaf``; entry i+1 is ``pair`` built from entry i twice. ``pair`` is a
    template where ``@`` stands for a reference to the level below.
    """
    out = leaf + b"\x940"
    for i in range(levels):
        out += pair.replace(b"@", get(i)) + b"\x940"
    return out + get(levels)


TUPLE_PAIR = b"@@\x86"
LIST_PAIR = b"]@a@a"
#: A 4-element float32 tensor on storage "0" (``torch._utils._rebuild_tensor_v2``).
TENSOR = (
    b"ctorch._utils\n_rebuild_tensor_v2\n((" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu")
    + b"K\x04tQK\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR"
)  # fmt: skip


def state_dict(value: bytes, key: bytes = text("w")) -> bytes:
    return PROTO + b"}" + key + value + b"s."


def zipped(data_pkl: bytes, *, storages: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/version", b"3\n")
        for key in range(storages):
            zf.writestr(f"archive/data/{key}", b"\x00" * 16)
    return buf.getvalue()


def cli(path: Path) -> tuple[int, str, int]:
    """(exit status, stderr, peak resident bytes) of ``python -m paramscope summary path``.

    A fresh wrapper process starts the command line as its only child, so the children's
    peak (``RUSAGE_CHILDREN``, in KiB on Linux) is the command line's own.
    """
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'paramscope', 'summary', sys.argv[1]], capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, str(path)], capture_output=True, text=True, timeout=600)
    code, peak = done.stdout.split()
    return int(code), done.stderr, int(peak)


def assert_refused(path: Path, *fragments: str) -> None:
    code, err, peak = cli(path)
    assert code == 2, (code, err)  # a signal would be a negative status
    assert err.count("\n") == 1 and err.startswith("paramscope: error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert peak < GIB, peak


def rules_kw() -> dict[str, object]:
    rules = TorchPickleRules("x")
    return {"resolve": rules.resolve, "reduce": rules.reduce, "build": rules.build,
            "persistent": rules.persistent, "newobj": rules.newobj}  # fmt: skip


# -- (a) nesting -----------------------------------------------------------------------------------

DEEP = b")" + b"\x85" * 300_000  # a 300,000-deep tuple: ((((),),),)...


def test_deep_tuple_key_kills_cpython(tmp_path: Path) -> None:
    # The attack is live: CPython's unpickler hashes the key recursively in C and dies by a signal.
    path = tmp_path / "deep.pkl"
    path.write_bytes(state_dict(b"K\x01", key=DEEP))
    done = subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads(open({str(path)!r}, 'rb').read())"],
                          capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode < 0


@pytest.mark.parametrize(
    "blob",
    [state_dict(b"K\x01", key=DEEP), PROTO + b"(" + DEEP + b"\x91.", PROTO + b"\x8f(" + DEEP + b"\x90."],
    ids=["dict_key", "frozenset", "additems"],
)
def test_deep_nesting_refused(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "deep.pt"
    path.write_bytes(zipped(blob))
    assert_refused(path, "nests tuples or sets 101 deep", "limit of 100 levels")


@pytest.mark.parametrize(
    "blob",
    [PROTO + b"]" * 300_000 + b"a" * 299_999 + b".", PROTO + b"}K\x01" * 300_000 + b"N" + b"s" * 300_000 + b"."],
    ids=["lists", "dicts"],
)
def test_deep_lists_and_dicts_refused(tmp_path: Path, blob: bytes) -> None:
    # Unhashable, so built without limit by the interpreter; the checkpoint walk bounds them.
    path = tmp_path / "deep.pt"
    path.write_bytes(blob)
    assert_refused(path, "values nested deeper than 64 levels")


def test_nesting_limit_counts_levels() -> None:
    ok = PROTO + b")" + b"\x85" * 99 + b"."
    assert scan_pickle(ok, **rules_kw()).value is not None  # type: ignore[arg-type]
    with pytest.raises(UnsafeFileError, match="nests tuples or sets 101 deep"):
        scan_pickle(PROTO + b")" + b"\x85" * 100 + b".", **rules_kw())  # type: ignore[arg-type]


# -- (b) shared references (billion laughs) ------------------------------------------------------


def test_dag_tuple_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "laughs.pt"
    path.write_bytes(zipped(state_dict(b"K\x01", key=dag(40, b")", TUPLE_PAIR))))
    assert_refused(path, "hashes more than 10,000,000 values", "billion-laughs")


def test_dag_frozenset_members_refused() -> None:
    blob = PROTO + b"(" + dag(40, b")", TUPLE_PAIR) + b"\x91."
    with pytest.raises(UnsafeFileError, match="hashes more than"):
        scan_pickle(blob, **rules_kw())  # type: ignore[arg-type]


def test_dag_of_lists_is_read_once(tmp_path: Path) -> None:
    # 2**40 paths to one empty list: each list is walked once, so the file reads at once.
    path = tmp_path / "lists.pt"
    path.write_bytes(zipped(state_dict(dag(40, b"]", LIST_PAIR))))
    code, err, peak = cli(path)
    assert code == 0, err
    assert peak < GIB


def test_dag_of_tensors_lists_each_tensor_once(tmp_path: Path) -> None:
    path = tmp_path / "tensors.pt"
    path.write_bytes(zipped(state_dict(dag(40, TENSOR, LIST_PAIR)), storages=1))
    anatomy = read(path)
    keys = {t.key for la in anatomy.layers for sub in la.walk() for t in sub.tensors}
    assert len(keys) == 1
    assert anatomy.metadata["storages"] == "1"
    code, err, peak = cli(path)
    assert code == 0 and peak < GIB, err


def test_many_entries_sharing_one_large_value_are_walked_once(tmp_path: Path) -> None:
    # 100,000 top-level entries all pointing at one list of 100,000 lists: walking each entry's
    # value afresh would take 10**10 steps; each container is walked once.
    big = b"](" + b"]" * 100_000 + b"e\x940"
    entries = b"".join(text(f"k{i}") + get(0) for i in range(100_000))
    path = tmp_path / "wide.pt"
    path.write_bytes(zipped(PROTO + big + b"}(" + entries + b"u."))
    code, err, peak = cli(path)
    assert code == 0 and peak < GIB, err


def _module(cls: bytes, state: bytes) -> bytes:
    return cls + b")\x81}(" + state + b"ub"


SEQUENTIAL = b"ctorch.nn.modules.container\nSequential\n"
IDENTITY = b"ctorch.nn.modules.linear\nIdentity\n"


def test_module_records_sharing_children_read_once(tmp_path: Path) -> None:
    # Each Sequential's _modules holds one child twice, 40 levels deep: 2**40 paths.
    pair = _module(SEQUENTIAL, text("_modules") + b"}(" + text("a") + b"@" + text("b") + b"@u")
    blob = PROTO + dag(40, _module(IDENTITY, b""), pair) + b"."
    path = tmp_path / "modules.pt"
    path.write_bytes(zipped(blob))
    anatomy = read(path)
    assert sum(1 for top in anatomy.layers for _ in top.walk()) <= 41
    assert any("is the same module object as" in n for n in anatomy.notes)
    code, err, peak = cli(path)
    assert code == 0 and peak < GIB, err


def test_shared_argument_of_allowed_call_is_never_turned_into_text(tmp_path: Path) -> None:
    path = tmp_path / "device.pt"
    path.write_bytes(zipped(state_dict(b"ctorch\ndevice\n" + dag(40, b"]", LIST_PAIR) + b"\x85R")))
    assert_refused(path, "torch.device", "arguments torch never writes")


def test_shared_set_members_are_scalars_only() -> None:
    blob = PROTO + b"cbuiltins\nset\n" + dag(40, b")", TUPLE_PAIR) + b"\x85\x85R."
    with pytest.raises(CorruptFileError, match="builtins.set .* arguments torch never writes"):
        scan_pickle(blob, **rules_kw())  # type: ignore[arg-type]


def test_shared_values_in_metadata_are_cut_short(tmp_path: Path) -> None:
    # A frozenset of 2**20-leaf DAG tuples (within the hashing budget) in a checkpoint's
    # metadata: str() would write megabytes; the metadata value is cut at 120 characters.
    frozen = b"(" + dag(20, b")", TUPLE_PAIR) + b"\x91"
    blob = PROTO + b"}(" + text("epoch") + b"K\x03" + text("tags") + b"]" + frozen + b"au."
    path = tmp_path / "meta.pt"
    path.write_bytes(zipped(blob))
    meta = read(path).metadata
    assert meta["epoch"] == "3"
    assert meta["tags"].startswith("[{((((") and len(meta["tags"]) <= 120


def test_hashing_budget_stops_wide_shared_set_members(tmp_path: Path) -> None:
    frozen = b"(" + dag(30, b")", TUPLE_PAIR) + b"\x91"
    path = tmp_path / "meta.pt"
    path.write_bytes(zipped(PROTO + b"}(" + text("tags") + b"]" + frozen + b"au."))
    with pytest.raises(UnsafeFileError, match="hashes more than 10,000,000 values"):
        read(path)


def _long(value: int) -> bytes:
    """LONG1."""
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def test_keys_sharing_one_hash_refused(tmp_path: Path) -> None:
    # Integers k * (2**61 - 1) all hash to 0 in CPython: a dict of n of them costs n**2 compares.
    prime = 2**61 - 1
    keys = [k * prime for k in range(1, 300_000)]
    assert {hash(k) for k in keys} == {0}  # the oracle: Python's own hash
    path = tmp_path / "collide.pt"
    path.write_bytes(zipped(PROTO + b"}(" + b"".join(_long(k) + b"N" for k in keys) + b"u."))
    assert_refused(path, "more than 64 different dict keys or set members sharing one hash value", "limit of 64 collisions")


def test_equal_keys_in_many_dicts_are_not_collisions() -> None:
    # -1 and -2 hash alike in CPython; 1, 1.0 and True are one key. Repeated in many dicts, fine.
    one = b"}(" + _long(-1) + b"N" + _long(-2) + b"N" + b"K\x01N" + b"G" + struct.pack(">d", 1.0) + b"Nu"
    blob = PROTO + b"(" + one * 500 + b"l."
    value = scan_pickle(blob, **rules_kw()).value  # type: ignore[arg-type]
    assert len(value) == 500 and value[0] == {-1: None, -2: None, 1: None}


# -- (c) opcodes, objects, inflated bytes -----------------------------------------------------------


def test_nineteen_million_empty_sets_in_a_zip(tmp_path: Path) -> None:
    data = PROTO + b"\x8f" * 19_000_000 + b"."
    path = tmp_path / "sets.pt"
    path.write_bytes(zipped(data))
    assert path.stat().st_size < 100_000  # inflates to 19 MB of opcodes, GBs as Python sets
    assert_refused(path, "builds more than 1,000,000 containers and records", "limit of 1,000,000 objects")


def test_empty_sets_popped_hit_the_opcode_limit(tmp_path: Path) -> None:
    path = tmp_path / "popped.pt"
    path.write_bytes(zipped(PROTO + b"\x8f0" * 5_000_000 + b"N."))
    assert_refused(path, "runs more than 2,000,000 opcodes", "limit of 2,000,000 opcodes")


def test_64_mib_of_text_opcodes(tmp_path: Path) -> None:
    n = (64 << 20) // 4 - 1
    path = tmp_path / "text.pt"
    path.write_bytes(zipped(b"\x80\x02" + b"I1\n0" * n + b"N."))
    assert_refused(path, "runs more than 2,000,000 opcodes")


def test_inflated_bytes_checked_while_inflating(tmp_path: Path) -> None:
    path = tmp_path / "big.pt"
    path.write_bytes(zipped(b"\x80\x02" + b"N0" * (33 << 20) + b"N."))
    assert_refused(path, "inflates past 67,108,864 bytes")


def test_object_limit_counts_records() -> None:
    many = PROTO + b"(" + (_module(IDENTITY, b"")) * 60 + b"l."
    with pytest.raises(UnsafeFileError, match="more than 50 containers and records"):
        scan_pickle(many, limits=PickleLimits(max_objects=50), **rules_kw())  # type: ignore[arg-type]


def test_limits_leave_real_pickles_alone() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(200)])
    opt = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 2)).sum().backward()
    opt.step()
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buf)
    with zipfile.ZipFile(buf) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    kw = rules_kw()
    value = scan_pickle(data, **kw).value  # type: ignore[arg-type]
    assert len(value["model"]) == 400 and len(value["optimizer"]["state"]) == 400
    # What it took, against each limit: a few percent at most.
    ops = sum(1 for _ in __import__("pickletools").genops(data))
    assert ops * 20 < PickleLimits().max_opcodes


def test_every_limit_message_is_one_line_naming_the_limit() -> None:
    cases = {
        "opcodes": (PROTO + b"N0" * 20 + b"N.", PickleLimits(max_opcodes=10)),
        "objects": (PROTO + b"]" * 20 + b"0" * 19 + b".", PickleLimits(max_objects=10)),
        "levels": (PROTO + b")" + b"\x85" * 20 + b".", PickleLimits(max_depth=10)),
        "values": (PROTO + b"(" + dag(8, b")", TUPLE_PAIR) + b"\x91.", PickleLimits(max_hash_values=100)),
        "collisions": (PROTO + b"(" + b"".join(_long(k * (2**61 - 1)) for k in range(1, 6)) + b"\x91.",
                       PickleLimits(max_hash_collisions=2)),
    }
    for unit, (blob, limits) in cases.items():
        with pytest.raises(UnsafeFileError) as info:
            scan_pickle(blob, where="f.pt: archive/data.pkl", limits=limits, **rules_kw())  # type: ignore[arg-type]
        message = str(info.value)
        assert "\n" not in message and message.startswith("f.pt: archive/data.pkl: the pickle ")
        assert f"limit of {getattr(limits, 'max_' + {'levels': 'depth', 'values': 'hash_values', 'collisions': 'hash_collisions'}.get(unit, unit)):,} {unit}" in message
        assert "nothing ran" in message


def test_errors_are_paramscope_errors_only() -> None:
    for blob in (PROTO + b")" * 5 + b"\x91.", PROTO + b"}" + DEEP + b"N.", PROTO + b"(" + b"]" * 3 + b"\x91."):
        try:
            scan_pickle(blob, **rules_kw())  # type: ignore[arg-type]
        except ParamscopeError:
            pass


def test_shared_submodule_counted_as_torch_counts_it(tmp_path: Path) -> None:
    # One Linear object under two names: torch's parameters() yields its tensors once.
    torch = pytest.importorskip("torch")
    from paramscope import totals

    shared = torch.nn.Linear(3, 4)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), shared, torch.nn.Linear(4, 2))
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    anatomy = read(path)
    assert totals(anatomy).params == sum(p.numel() for p in model.parameters())
    assert [name for name, _ in model.named_modules() if name] == [la.path for la in anatomy.layers]
    assert any(n.startswith("2 is the same module object as 0") for n in anatomy.notes)
