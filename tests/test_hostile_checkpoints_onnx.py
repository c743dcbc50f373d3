"""Hostile checkpoints and ONNX files: refused with one paramscope error, and nothing runs."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from paramscope.core.errors import CorruptFileError, ParamscopeError, UnsafeFileError
from paramscope.readers import read
from paramscope.readers.torch import checkpoint as torch_checkpoint
from paramscope.parsers.pickle import PickleLimits, scan_pickle
from paramscope.readers.torch.tensor_pickle import TorchPickleRules


def _system_payload(marker: Path, protocol: int) -> bytes:
    """A pickle that, if loaded by pickle.loads, runs ``touch marker`` via os.system."""

    class _Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return os.system, (f"touch {marker}",)

    return pickle.dumps({"w": _Evil()}, protocol=protocol)


def _payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, text the refusal must name)."""
    cmd = f"touch {marker}".encode()
    n = struct.pack("<I", len(cmd))
    return {
        "global_reduce": (_system_payload(marker, 2), "system"),
        "stack_global": (_system_payload(marker, 4), "system"),
        "inst": (b"(S'" + cmd + b"'\nios\nsystem\n.", "os.system"),
        "obj": (b"(cos\nsystem\nS'" + cmd + b"'\no.", "os.system"),
        "newobj_on_allowed": (b"\x80\x02ctorch\nSize\n)\x81.", "NEWOBJ"),
        "getattr": (
            b"\x80\x02cbuiltins\ngetattr\ncbuiltins\n__builtins__\nX\x04\x00\x00\x00eval\x86R"
            b"X" + n + cmd + b"\x85R.",
            "builtins.getattr",
        ),
        "torch_utils_other": (b"\x80\x02ctorch._utils\n_rebuild_device_tensor_from_numpy\n)R.", "_rebuild_device_tensor_from_numpy"),
        "whole_module": (b"\x80\x02c__main__\nNet\n)\x81.", "whole pickled model"),
        "reduce_on_module_class": (b"\x80\x02ctorch.nn.modules.linear\nLinear\n)R.", "torch.nn.modules.linear.Linear"),
        "newobj_with_args": (b"\x80\x02ctorch.nn.modules.linear\nLinear\nK\x01\x85\x81.", "NEWOBJ"),
        "reduce_on_dtype": (b"\x80\x02ctorch\nFloatStorage\nX" + n + cmd + b"\x85R.", "does not allow"),
    }


def _legacy(payload: bytes) -> bytes:
    head = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    return head + payload + pickle.dumps([], protocol=2)


class _Unseekable(io.BytesIO):
    """A stream zipfile cannot seek back in, so it writes a data descriptor after each member."""

    def seekable(self) -> bool:
        return False

    def seek(self, *args: object) -> int:
        raise io.UnsupportedOperation("unseekable")


def _zip(payload: bytes, *, flag: int = 0, streamed: bool = False) -> bytes:
    buf = _Unseekable() if streamed else io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    data = bytearray(buf.getvalue())
    if flag:
        # Set general-purpose flag bits in the local header and the central directory entry.
        for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            i = -1
            while (i := data.find(sig, i + 1)) >= 0:
                data[i + off] |= flag
    return bytes(data)


def test_payloads_are_live(tmp_path: Path) -> None:
    """The hostile pickles really run their command under pickle.loads (in a child process)."""
    marker = tmp_path / "ran"
    for name in ("global_reduce", "stack_global", "inst", "obj"):
        payload, _ = _payloads(marker)[name]
        code = f"import pickle; pickle.loads({payload!r})"
        subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
        assert marker.exists(), name
        marker.unlink()


@pytest.mark.parametrize("container", ["bare", "zip", "zip_data_descriptor", "legacy"])
@pytest.mark.parametrize(
    "name",
    ["global_reduce", "stack_global", "inst", "obj", "newobj_on_allowed", "getattr", "torch_utils_other",
     "whole_module", "reduce_on_dtype", "reduce_on_module_class", "newobj_with_args"],
)  # fmt: skip
def test_code_in_pickle_refused_and_nothing_runs(tmp_path: Path, container: str, name: str) -> None:
    marker = tmp_path / "ran"
    payload, named = _payloads(marker)[name]
    path = tmp_path / "evil.pt"
    if container == "bare":
        path.write_bytes(payload if payload.startswith(b"\x80") else b"\x80\x02" + payload)
    elif container == "zip":
        path.write_bytes(_zip(payload))
    elif container == "zip_data_descriptor":
        path.write_bytes(_zip(payload, streamed=True))
    else:
        path.write_bytes(_legacy(payload if payload.startswith(b"\x80") else b"\x80\x02" + payload))
    with pytest.raises(UnsafeFileError) as info:
        read(path)
    message = str(info.value)
    assert named in message
    assert str(path) in message and "byte" in message
    assert "\n" not in message
    assert not marker.exists()


def test_encrypted_zip_flag_is_our_error(tmp_path: Path) -> None:
    path = tmp_path / "enc.pt"
    path.write_bytes(_zip(b"\x80\x02}.", flag=0x01))
    with pytest.raises(CorruptFileError, match="encrypted"):
        read(path)


def test_binunicode_length_beyond_file(tmp_path: Path) -> None:
    path = tmp_path / "long.pt"
    path.write_bytes(b"\x80\x02X\x00\x00\x00\x80abc.")
    with pytest.raises(CorruptFileError, match=r"2147483648 bytes runs past the end"):
        read(path)


def test_zip_bomb_data_pkl_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_checkpoint, "MAX_PICKLE_BYTES", 1 << 20)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/data.pkl", b"\x80\x02" + b"N0" * (2 << 20) + b"}.")
    path = tmp_path / "bomb.pt"
    path.write_bytes(buf.getvalue())
    assert path.stat().st_size < 100_000
    with pytest.raises(UnsafeFileError, match="inflates past"):
        read(path)


def test_memo_and_stack_bounds() -> None:
    rules = TorchPickleRules("x")
    kw = dict(resolve=rules.resolve, reduce=rules.reduce, limits=PickleLimits(max_items=1000))
    many_puts = b"\x80\x02N" + b"".join(b"r" + struct.pack("<I", i) for i in range(2000)) + b"."
    with pytest.raises(CorruptFileError, match="more than 1000"):
        scan_pickle(many_puts, **kw)  # type: ignore[arg-type]
    deep = b"\x80\x02" + b"(" * 5000 + b"."
    with pytest.raises(CorruptFileError, match="more than 1000 values on the stack"):  # MARKs count too
        scan_pickle(deep, **kw)  # type: ignore[arg-type]
    with pytest.raises(CorruptFileError, match="memo entry 7 is read before"):
        scan_pickle(b"\x80\x02h\x07.", **kw)  # type: ignore[arg-type]
    with pytest.raises(CorruptFileError, match="integer of"):
        scan_pickle(b"\x80\x02\x8b\x00\x00\x01\x00" + b"\x01" * 65536 + b".", **kw)  # type: ignore[arg-type]


def test_deeply_nested_values(tmp_path: Path) -> None:
    path = tmp_path / "deep.pt"
    path.write_bytes(b"\x80\x02" + b"]" * 3000 + b"a" * 2999 + b".")
    with pytest.raises(CorruptFileError, match="nested deeper"):
        read(path)


def test_self_containing_list_is_finite(tmp_path: Path) -> None:
    path = tmp_path / "loop.pt"
    path.write_bytes(b"\x80\x02]q\x00h\x00a.")
    a = read(path)
    assert a.layers == ()


@pytest.fixture
def torch() -> Any:
    # Only the tests that write a checkpoint with torch.save need torch; the rest of this file
    # reads hand-made bytes and must run without it.
    return pytest.importorskip("torch")


def test_zip_storage_larger_than_its_entry(tmp_path: Path, torch: Any) -> None:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(100)}, good)
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data[:40] if info.filename.endswith("data/0") else data)
    with pytest.raises(CorruptFileError, match=r"storage '0' declares 100 elements \(400 bytes\).*holds 40 bytes"):
        read(bad)


def test_legacy_storage_size_beyond_file(tmp_path: Path, torch: Any) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(10)}, path, _use_new_zipfile_serialization=False)
    data = bytearray(path.read_bytes())
    at = len(data) - 40 - 8  # the 8-byte element count before 10 float32 elements
    assert struct.unpack("<q", data[at : at + 8]) == (10,)
    data[at : at + 8] = struct.pack("<q", 1 << 40)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="declares 1099511627776 elements"):
        read(path)
    path.write_bytes(bytes(data[: at + 20]))
    with pytest.raises(CorruptFileError):
        read(path)


def test_tensor_reaching_past_its_storage(tmp_path: Path) -> None:
    # A storage of 4 elements holding a 2x3 tensor: the pickle lies about the extent.
    payload = (
        b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n("
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ"
        b"K\x00K\x02K\x03\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)RtRs."
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/data.pkl", payload)
        zf.writestr("a/data/0", b"\x00" * 16)
    path = tmp_path / "extent.pt"
    path.write_bytes(buf.getvalue())
    with pytest.raises(CorruptFileError, match="reaches element 5 of storage '0', which holds 4"):
        read(path)


def test_every_refusal_is_a_paramscope_error(tmp_path: Path) -> None:
    for i, blob in enumerate([b"PK\x03\x04garbage", b"\x80\x02", b"\x80\x09.", _zip(b"\x80\x02\xff.")]):
        path = tmp_path / f"junk{i}.pt"
        path.write_bytes(blob)
        with pytest.raises(ParamscopeError) as info:
            read(path)
        assert str(path) in str(info.value)


# -- ONNX -------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _onnx_model(graph: bytes) -> bytes:
    return b"\x08\x08" + _ld(7, graph)


def _nested_if(depth: int) -> bytes:
    graph = _ld(2, b"leaf")
    for _ in range(depth):
        attr = _ld(1, b"then_branch") + _ld(6, graph)
        node = _ld(4, b"If") + _ld(5, attr)
        graph = _ld(1, node)
    return graph


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"\x08" + b"\xff" * 11, "varint longer than 10 bytes"),
        (b"\x08\x08" + _varint(7 << 3 | 2) + _varint(1 << 40) + b"abc", "claims 1099511627776 bytes but 3 are left"),
        (b"\x08\x08" + _ld(7, _ld(5, _ld(8, b"w") + _varint(1 << 3 | 0) + b"\x80")), "varint runs past the end"),
        (b"\x08\x08" + _varint(7 << 3 | 3), "unsupported wire type 3"),
        (b"\x08\x08", "no graph"),
        (_onnx_model(_nested_if(40)), "nested more than 32 deep"),
        (_onnx_model(_ld(5, _ld(8, b"w") + b"\x08\x04\x08\x04\x10\x01" + _ld(9, b"\x00" * 10))), r"64 bytes but 10 bytes of raw_data"),
    ],
)  # fmt: skip
def test_onnx_malformed_refused(tmp_path: Path, blob: bytes, match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from paramscope.readers.onnx import model as onnx_file

    path = tmp_path / "bad.onnx"
    path.write_bytes(blob)
    for limit in (onnx_file._READ_LIMIT, 0):  # in memory, then page by page
        monkeypatch.setattr(onnx_file, "_READ_LIMIT", limit)
        with pytest.raises(CorruptFileError, match=match) as info:
            read(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_onnx_nesting_within_bound_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.onnx"
    path.write_bytes(_onnx_model(_nested_if(20)))
    a = read(path)
    assert a.metadata["nodes"] == "20"


def test_onnx_external_symlink_escape_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"\x00" * 64)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link").symlink_to(outside)
    w = helper.make_tensor("w", TensorProto.FLOAT, [16], vals=[0.0] * 16)
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    e = w.external_data.add()
    e.key, e.value = "location", "link/secret.bin"
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16])], [w])
    path = folder / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(UnsafeFileError, match="outside the model's folder"):
        read(path)


# -- Keras weights (HDF5) -------------------------------------------------------------------


def test_keras_weights_external_link_refused(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f.create_dataset("secret", data=[1.0, 2.0])
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group("layers/dense/vars")
        f["layers/dense/vars/0"] = h5py.ExternalLink(str(outside), "/secret")
    with pytest.raises(UnsafeFileError, match="link to another file") as info:
        read(path)
    assert str(path) in str(info.value)


def test_keras_weights_dataset_where_group_expected(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers", data=[0] * 1000)
    with pytest.raises(CorruptFileError, match="should be a group"):
        read(path)


def test_keras_weights_soft_link_cycle_bounded(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/dense")
        g.create_group("vars").create_dataset("0", data=[0.0] * 4)
        g["layers"] = h5py.SoftLink("/layers")  # the layer contains the whole model again
    with pytest.raises(CorruptFileError, match="nested deeper"):
        read(path)


def test_corrupt_deflated_pickle_is_our_error(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/data.pkl", b"\x80\x02}q\x00." * 50)
    data = bytearray(buf.getvalue())
    start = 30 + len("a/data.pkl")  # the deflate stream follows the local header
    for i in range(start, start + 8):
        data[i] ^= 0xFF
    path = tmp_path / "deflate.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as info:
        read(path)
    assert str(path) in str(info.value)


def test_persistent_id_outside_data_pickle_names_the_file(tmp_path: Path) -> None:
    # Found by fuzzing: a storage reference inside the legacy key list.
    data = _legacy(b"\x80\x02}.")
    data = data[: -len(pickle.dumps([], protocol=2))] + b"\x80\x02X\x01\x00\x00\x00aQ."
    path = tmp_path / "keys.pt"
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match="persistent id") as info:
        read(path)
    assert str(path) in str(info.value)
