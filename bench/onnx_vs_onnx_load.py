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

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import arg_parser, measure, paramscope_totals, table  # noqa: E402

BLOCKS, WIDTH = 100, 1024

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


def main() -> None:
    parser = arg_parser(__doc__)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        n = write_mlp(path)
        size = path.stat().st_size
        totals = paramscope_totals(path)
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
        results = [measure(label, cmd, repeat=args.repeat) for label, cmd in rows]
    table(f"{path.name}: list every initializer's name and shape", results)


if __name__ == "__main__":
    main()
