"""Side by side: ``paramscope summary`` against the onnx package on a 400 MiB ONNX model.

Run from the repository root:

    python bench/onnx_vs_onnx_load.py [--repeat 3]

It writes, in a temporary folder, an MLP of 100 blocks (MatMul 1024 x 1024 + bias + Relu,
float32, weights inline as raw_data, about 105 M parameters, 400 MiB) with onnx.helper. Each
tool then runs in a fresh subprocess, several times, and lists every initializer's name and
shape:

- ``paramscope summary model.onnx`` (the wire-format scanner, shape inference on a copy
  without the weights, per-node FLOPs);
- ``onnx.load(model.onnx)`` printing initializer names and dims;
- ``onnx.load`` followed by ``onnx.shape_inference.infer_shapes`` (what a per-node shape
  listing needs with the onnx package alone).

The table shows the median wall time and peak RSS (``ru_maxrss`` of each child) and the ratios
against paramscope. Needs onnx and numpy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
BLOCKS, WIDTH = 100, 1024

_MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "wall = time.perf_counter() - t\n"
    "if r.returncode: sys.exit(r.stderr.decode()[-2000:])\n"
    "print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)

_ONNX_LIST = (
    "import sys, onnx\n"
    "m = onnx.load(sys.argv[1])\n"
    "{infer}"
    "for t in m.graph.initializer: print(t.name, list(t.dims), t.data_type)\n"
)


def write_mlp(path: Path) -> int:
    """Write the MLP with onnx.helper; return its parameter count."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    prev = "x"
    for i in range(BLOCKS):
        w, b = f"blocks.{i}.fc.weight", f"blocks.{i}.fc.bias"
        inits += [numpy_helper.from_array(np.zeros((WIDTH, WIDTH), np.float32), w),
                  numpy_helper.from_array(np.zeros(WIDTH, np.float32), b)]  # fmt: skip
        nodes += [
            helper.make_node("MatMul", [prev, w], [f"m{i}"], name=f"/blocks.{i}/fc/MatMul"),
            helper.make_node("Add", [f"m{i}", b], [f"a{i}"], name=f"/blocks.{i}/fc/Add"),
            helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"/blocks.{i}/act/Relu"),
        ]
        prev = f"r{i}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, WIDTH])], initializer=inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return BLOCKS * (WIDTH * WIDTH + WIDTH)


def measure(cmd: list[str], repeat: int) -> tuple[float, float]:
    """Median wall seconds and median peak RSS (MiB) of ``cmd`` over ``repeat`` fresh runs."""
    walls, rss = [], []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], env=ENV, capture_output=True, text=True, check=True)
        wall, kib = out.stdout.split()
        walls.append(float(wall))
        rss.append(int(kib) / 1024)
    return statistics.median(walls), statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        n = write_mlp(path)
        size = path.stat().st_size
        check = subprocess.run([sys.executable, "-m", "paramscope", "summary", str(path), "--format", "json"],
                               env=ENV, capture_output=True, text=True, check=True)  # fmt: skip
        import json

        totals = json.loads(check.stdout)["totals"]
        assert totals["params"] == n, (totals["params"], n)
        assert totals["flops"] == 2 * BLOCKS * WIDTH * WIDTH, totals["flops"]
        print(f"model: {path.name}, {size / 2**20:.0f} MiB, {n:,} parameters, {totals['flops']:,} FLOPs "
              "(paramscope agrees)")  # fmt: skip
        rows = [
            ("paramscope summary", [sys.executable, "-m", "paramscope", "summary", str(path)]),
            ("onnx.load", [sys.executable, "-c", _ONNX_LIST.format(infer=""), str(path)]),
            ("onnx.load + infer_shapes", [sys.executable, "-c", _ONNX_LIST.format(
                infer="m = onnx.shape_inference.infer_shapes(m)\n"), str(path)]),
        ]  # fmt: skip
        results = [(label, *measure(cmd, args.repeat)) for label, cmd in rows]
    base_wall, base_rss = results[0][1], results[0][2]
    print(f"median of {args.repeat} fresh runs each")
    print(f"{'tool':<26}{'wall s':>9}{'peak RSS MiB':>15}{'wall / paramscope':>20}{'RSS / paramscope':>19}")
    for label, wall, rss in results:
        print(f"{label:<26}{wall:>9.2f}{rss:>15.0f}{wall / base_wall:>20.2f}{rss / base_rss:>19.2f}")


if __name__ == "__main__":
    main()
