"""The command line on PyTorch checkpoints, ONNX models and Keras weights: JSON, one-line errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_checkpoint_summary_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(2, 4)).sum().backward()
    opt.step()
    path = tmp_path / "train.ckpt"
    torch.save({"model": m.state_dict(), "optimizer": opt.state_dict(), "epoch": 7}, path)
    assert main(["summary", str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["framework"] == "torch"
    assert doc["totals"]["params"] == sum(p.numel() for p in m.parameters())
    assert doc["totals"]["buffers"] == sum(b.numel() for b in m.buffers())
    assert doc["metadata"]["epoch"] == "7"


def test_onnx_summary_json_has_flops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    np = pytest.importorskip("numpy")
    from onnx import TensorProto as TP
    from onnx import helper as h
    from onnx import numpy_helper as nh

    graph = h.make_graph(
        [h.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [h.make_tensor_value_info("x", TP.FLOAT, ["batch", 8])], [h.make_tensor_value_info("y", TP.FLOAT, ["batch", 2])],
        initializer=[nh.from_array(np.zeros((8, 2), np.float32), "w")],
    )  # fmt: skip
    path = tmp_path / "m.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    assert main(["summary", str(path), "--format", "json", "--input", "x=float32[4,8]"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["framework"] == "onnx"
    assert doc["totals"]["params"] == 16
    assert doc["totals"]["flops"] == 2 * 4 * 8 * 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_weights_summary_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4), keras.layers.BatchNormalization()])
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    assert main(["summary", str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["params"] == model.count_params()
    assert doc["totals"]["non_trainable"] == 8


@pytest.mark.parametrize("kind", ["pickle_code", "truncated", "onnx_escape"])
def test_bad_file_is_one_line_exit_2(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "ran"
    if kind == "pickle_code":

        class Evil:
            def __reduce__(self) -> tuple[object, tuple[str]]:
                return os.system, (f"touch {marker}",)

        f = tmp_path / "evil.pt"
        f.write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
        needle = "system"
    elif kind == "truncated":
        f = tmp_path / "cut.pt"
        f.write_bytes(pickle.dumps({"w": 1}, protocol=2)[:-3])
        needle = "byte"
    else:
        f = tmp_path / "x.onnx"
        # ModelProto: ir_version 8, graph with one initializer whose data lives in ../secret.
        def ld(n: int, b: bytes) -> bytes:
            return bytes([n << 3 | 2, len(b)]) + b

        tensor = ld(8, b"w") + b"\x08\x04\x10\x01" + ld(13, ld(1, b"location") + ld(2, b"../secret")) + b"\x70\x01"
        f.write_bytes(b"\x08\x08" + ld(7, ld(5, tensor)))
        needle = "outside the model's folder"
    r = subprocess.run([sys.executable, "-m", "paramscope", "summary", str(f)], env={**os.environ, "PYTHONPATH": SRC},
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("paramscope: error: "), r.stderr
    assert needle in r.stderr and str(f) in r.stderr
    assert not marker.exists()
