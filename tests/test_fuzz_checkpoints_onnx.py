"""Fuzzing the checkpoint and ONNX readers: mutated real files either parse or raise a paramscope error.

Base files are written by torch.save (zip and legacy layouts) and onnx.helper. Hypothesis flips,
inserts and deletes bytes and truncates; for zip checkpoints the mutation is applied to the
data.pkl inside (mutating the zip itself only exercises its CRC check). Any exception other than
a paramscope error, or a slow read, fails the test.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

from paramscope.analysis import totals  # noqa: E402
from paramscope.core.errors import ParamscopeError  # noqa: E402
from paramscope.readers.onnx import model as onnx_file
from paramscope.readers.torch import checkpoint as torch_checkpoint

FUZZ = settings(
    max_examples=200,
    deadline=None,  # no wall-clock limits in tests: budgets are in bench/
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)

#: (kind, position as a fraction of the length, byte value)
_EDIT = hs.tuples(hs.sampled_from(["flip", "set", "insert", "delete", "truncate"]), hs.floats(0, 1), hs.integers(0, 255))


def _mutate(data: bytes, edits: list[tuple[str, float, int]]) -> bytes:
    buf = bytearray(data)
    for kind, where, value in edits:
        if not buf:
            break
        i = min(int(where * len(buf)), len(buf) - 1)
        if kind == "flip":
            buf[i] ^= 1 << (value % 8)
        elif kind == "set":
            buf[i] = value
        elif kind == "insert":
            buf[i:i] = bytes([value])
        elif kind == "delete":
            del buf[i]
        else:
            del buf[i:]
    return bytes(buf)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _state_dict() -> dict[str, object]:
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Embedding(5, 4))
    sd: dict[str, object] = dict(m.state_dict())
    sd["half"] = torch.zeros(2, 2, dtype=torch.bfloat16)
    sd["tied"] = sd["0.weight"]
    sd["view"] = m.state_dict()["0.weight"][1]
    sd["param"] = torch.nn.Parameter(torch.zeros(3))
    return {"model": sd, "epoch": 3, "optimizer": {"state": {0: {"step": torch.tensor(1.0)}}, "param_groups": [{"lr": 0.1}]}}


@pytest.fixture(scope="module")
def zip_parts(workdir: Path) -> tuple[dict[str, bytes], str]:
    path = workdir / "base.pt"
    torch.save(_state_dict(), path)
    with zipfile.ZipFile(path) as zf:
        entries = {i.filename: zf.read(i) for i in zf.infolist()}
    (pkl,) = [n for n in entries if n.endswith("/data.pkl")]
    return entries, pkl


@pytest.fixture(scope="module")
def legacy_bytes(workdir: Path) -> bytes:
    path = workdir / "legacy.pt"
    torch.save(_state_dict(), path, _use_new_zipfile_serialization=False)
    return path.read_bytes()


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    from onnx import TensorProto as TP
    from onnx import helper as h
    from onnx import numpy_helper as nh

    then_g = h.make_graph([h.make_node("Constant", [], ["t"], value=nh.from_array(np.ones(3, np.float32), "tv"))], "then", [],
                          [h.make_tensor_value_info("t", TP.FLOAT, [3])])  # fmt: skip
    graph = h.make_graph(
        [
            h.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul"),
            h.make_node("Add", ["y", "b"], ["z"], name="/fc/Add"),
            h.make_node("If", ["c"], ["t"], name="/If", then_branch=then_g, else_branch=then_g),
        ],
        "g",
        [h.make_tensor_value_info("x", TP.FLOAT, ["n", 4]), h.make_tensor_value_info("c", TP.BOOL, [])],
        [h.make_tensor_value_info("z", TP.FLOAT, ["n", 3]), h.make_tensor_value_info("t", TP.FLOAT, [3])],
        initializer=[nh.from_array(np.zeros((4, 3), np.float32), "w"), nh.from_array(np.zeros(3, np.float16), "b")],
    )
    return bytes(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString())


def _read_or_refuse(reader: object, path: Path) -> None:
    try:
        a = reader.read(path)  # type: ignore[attr-defined]
        totals(a)
    except ParamscopeError as e:
        assert str(path) in str(e), str(e)


@FUZZ
@given(edits=hs.lists(_EDIT, min_size=1, max_size=6))
def test_fuzz_zip_checkpoint_pickle(workdir: Path, zip_parts: tuple[dict[str, bytes], str], edits: list[tuple[str, float, int]]) -> None:
    entries, pkl = zip_parts
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, _mutate(data, edits) if name == pkl else data)
    path = workdir / "fuzz.pt"
    path.write_bytes(buf.getvalue())
    _read_or_refuse(torch_checkpoint, path)


@FUZZ
@given(edits=hs.lists(_EDIT, min_size=1, max_size=6))
def test_fuzz_zip_archive_bytes(workdir: Path, edits: list[tuple[str, float, int]]) -> None:
    base = workdir / "base.pt"
    if not base.exists():
        torch.save(_state_dict(), base)
    path = workdir / "fuzz_zip.pt"
    path.write_bytes(_mutate(base.read_bytes(), edits))
    _read_or_refuse(torch_checkpoint, path)


@FUZZ
@given(edits=hs.lists(_EDIT, min_size=1, max_size=6))
def test_fuzz_legacy_checkpoint(workdir: Path, legacy_bytes: bytes, edits: list[tuple[str, float, int]]) -> None:
    path = workdir / "fuzz_legacy.pt"
    path.write_bytes(_mutate(legacy_bytes, edits))
    _read_or_refuse(torch_checkpoint, path)


@FUZZ
@given(edits=hs.lists(_EDIT, min_size=1, max_size=6))
def test_fuzz_onnx(workdir: Path, onnx_bytes: bytes, edits: list[tuple[str, float, int]]) -> None:
    path = workdir / "fuzz.onnx"
    path.write_bytes(_mutate(onnx_bytes, edits))
    _read_or_refuse(onnx_file, path)
    # Reading page by page (as for files over 64 MiB) must give the same anatomy or the same error.
    outcomes = []
    for limit in (onnx_file._READ_LIMIT, 0):
        saved, onnx_file._READ_LIMIT = onnx_file._READ_LIMIT, limit
        try:
            outcomes.append(onnx_file.read(path))
        except ParamscopeError as e:
            outcomes.append(str(e))
        finally:
            onnx_file._READ_LIMIT = saved
    assert outcomes[0] == outcomes[1]


@FUZZ
@given(edits=hs.lists(_EDIT, min_size=1, max_size=6))
def test_fuzz_deflated_zip_bytes(workdir: Path, zip_parts: tuple[dict[str, bytes], str], edits: list[tuple[str, float, int]]) -> None:
    entries, _ = zip_parts
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    path = workdir / "fuzz_deflated.pt"
    path.write_bytes(_mutate(buf.getvalue(), edits))
    _read_or_refuse(torch_checkpoint, path)
