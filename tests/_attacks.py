"""Hostile files that ask for unbounded work, built here byte by byte (and by the formats' own
libraries where they can write them), and a runner that reads one with the CLI in a child
process and reports its exit status, stderr and peak memory (VmHWM from /proc/self/status)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHILD = (
    "import os, sys\n"
    "from paramscope.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "status = open('/proc/self/status').read()\n"
    "hwm = int(status.split('VmHWM:')[1].split()[0]) * 1024\n"
    "open(os.environ['ATTACK_HWM_FILE'], 'w').write(str(hwm))\n"
    "sys.exit(rc)\n"
)


@dataclass(frozen=True)
class Outcome:
    """What the CLI did with one file."""

    rc: int
    stdout: str
    stderr: str
    peak_bytes: int


def run_cli(target: Path | str, *args: str, tmp: Path) -> Outcome:
    """``paramscope summary TARGET`` in a fresh child; a generous timeout only guards a hang."""
    hwm = tmp / "hwm.txt"
    env = dict(os.environ, ATTACK_HWM_FILE=str(hwm))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "summary", str(target), "--width", "120", *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp,
    )  # fmt: skip
    peak = int(hwm.read_text()) if hwm.exists() else -1
    return Outcome(done.returncode, done.stdout, done.stderr, peak)


# --- safetensors and GGUF ----------------------------------------------------------------------


def safetensors_file(path: Path, names: list[str]) -> Path:
    """A valid safetensors file holding one uint8 element per name."""
    header = {n: {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i, n in enumerate(names)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * len(names))
    return path


def _gstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_file(path: Path, name: str, metadata: dict[str, str] | None = None) -> Path:
    """A valid GGUF v3 file with one F32 tensor of 4 x 2 named ``name``."""
    meta = {"general.architecture": "llama", **(metadata or {})}
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, len(meta))
    for k, v in meta.items():
        out += _gstr(k) + struct.pack("<I", 8) + _gstr(v)
    out += _gstr(name) + struct.pack("<I", 2) + struct.pack("<QQ", 4, 2) + struct.pack("<I", 0) + struct.pack("<Q", 0)
    out += b"\0" * ((32 - len(out) % 32) % 32) + b"\0" * 32
    path.write_bytes(out)
    return path


# --- ONNX -------------------------------------------------------------------------------------


def onnx_model(nodes: Sequence[Any], functions: Sequence[Any] = (), initializers: Sequence[Any] = ()) -> bytes:
    """A model around ``nodes`` (x -> ... -> y), written by the onnx package."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], list(initializers),
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    return helper.make_model(graph, functions=list(functions), opset_imports=opsets).SerializeToString()


def onnx_function_bomb(depth: int, calls: int = 2) -> bytes:
    """Functions f0..f{depth-1}, each calling the next ``calls`` times: calls**depth expansions."""
    from onnx import helper

    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    functions = []
    for d in range(depth):
        if d == depth - 1:
            body = [helper.make_node("Relu", ["a"], ["b"])]
        else:
            names = ["a", *(f"m{i}" for i in range(calls - 1)), "b"]
            body = [helper.make_node(f"f{d + 1}", [names[i]], [names[i + 1]], domain="local") for i in range(calls)]
        functions.append(helper.make_function("local", f"f{d}", ["a"], ["b"], body, opsets))
    return onnx_model([helper.make_node("f0", ["x"], ["y"], domain="local")], functions)


def onnx_self_call() -> bytes:
    """A function that calls itself (which ONNX forbids): an endless expansion."""
    from onnx import helper

    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    f = helper.make_function("local", "f", ["a"], ["b"], [helper.make_node("f", ["a"], ["b"], domain="local")], opsets)
    return onnx_model([helper.make_node("f", ["x"], ["y"], domain="local")], [f])


def onnx_named(name: str) -> bytes:
    """Two nodes, one with ``name`` (torch-export style ``/a/b/Op`` names)."""
    from onnx import helper

    return onnx_model([helper.make_node("Relu", ["x"], ["t"], name=name), helper.make_node("Relu", ["t"], ["y"], name="/b/Relu")])


def onnx_chain(n: int) -> bytes:
    """``n`` Relu nodes in a chain."""
    from onnx import helper

    names = ["x", *(f"t{i}" for i in range(n - 1)), "y"]
    return onnx_model([helper.make_node("Relu", [names[i]], [names[i + 1]]) for i in range(n)])


# --- Keras ------------------------------------------------------------------------------------


def keras2_concatenate(n: int) -> dict[str, Any]:
    """A Keras 2 functional config whose Concatenate takes the input ``n`` times."""
    return {
        "class_name": "Model",
        "config": {
            "name": "m",
            "layers": [
                {"class_name": "InputLayer", "name": "x", "config": {"batch_input_shape": [None, 1], "name": "x"},
                 "inbound_nodes": []},
                {"class_name": "Concatenate", "name": "c", "config": {"name": "c", "axis": -1},
                 "inbound_nodes": [[["x", 0, 0, {}]] * n]},
            ],
            "input_layers": [["x", 0, 0]],
            "output_layers": [["c", 0, 0]],
        },
    }  # fmt: skip


def keras_archive_bomb(path: Path, inflated_bytes: int) -> Path:
    """A ``.keras`` zip whose config.json inflates to ``inflated_bytes`` of ``{},`` (a few KB packed)."""
    body = b"[" + b"{}," * (inflated_bytes // 3) + b"{}]"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", b'{"keras_version": "3.0.0"}')
        z.writestr("config.json", body)
    return path
