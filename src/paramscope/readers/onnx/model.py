"""ONNX models read from the protobuf wire format, tensor data never loaded.

Weights are the graph's initializers (and sparse initializers); ``Constant`` nodes hold more
tensors inside the graph, and ``If``/``Loop``/``Scan`` bodies and model-local functions hold
nodes of their own. Each node becomes a layer owning the initializers it is the first to use
(a second user shares the same tensor, counted once). Layers nest by the ``/`` parts of node
names, as ``torch.onnx.export`` writes them (``/encoder/layer.0/attention/MatMul``).

Shapes come from the graph's ``value_info`` and, when the ``onnx`` package is installed,
from ONNX shape inference run on a copy without large tensor data. External data files are
checked (inside the model's folder, large enough) but never opened. Files over 64 MiB are read
page by page, so only the pages holding message headers are read.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core import sniff
from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import CorruptFileError
from paramscope.core.compute import sum_compute
from paramscope.core.files import open_regular
from paramscope.readers.onnx.bounds import check_model
from paramscope.readers.onnx.layers import GraphBuilder, exporter_notes, walk
from paramscope.readers.onnx.proto import OGraph, parse_model, strip_tensor_data
from paramscope.readers.onnx.shapes import infer_shapes
from paramscope.parsers.protobuf import Buffer, FileBytes

__all__ = ["can_read", "read"]

#: Files up to this size are read into memory; larger ones are read page by page, headers only.
_READ_LIMIT = 64 * 2**20

Shape = tuple[int | None, ...]


def can_read(source: Any) -> bool:
    """Whether ``source`` is an ``.onnx`` file starting like a ModelProto (``ir_version`` first).

    Example:
        >>> can_read("missing.onnx")
        False
    """
    path = sniff.file_path(source)
    if path is None or path.suffix.lower() != ".onnx":
        return False
    # Serializers write fields in number order: ir_version (0x08) first, or, if it is missing,
    # the key of another ModelProto field (producer_name 0x12 ... graph 0x3a, opset_import 0x42).
    return sniff.head(path, 1) in (b"\x08", b"\x12", b"\x1a", b"\x22", b"\x28", b"\x32", b"\x3a", b"\x42")


def read(source: Any, **options: Any) -> Anatomy:
    """Read an ONNX model's tensors, nodes, shapes and FLOPs without loading tensor data.

    Args:
        source: path to the ``.onnx`` file.
        **options: ``inputs=["name=dtype[d0,d1]"]`` or ``input_size=(d0, d1, ...)`` fix symbolic
            input dimensions for shape inference; others are ignored.

    Returns:
        The anatomy: one layer per node (nested by node-name parts), FLOPs per node.

    Raises:
        CorruptFileError: malformed protobuf, sizes that do not add up.
        UnsafeFileError: external data pointing outside the model's folder.

    Example:
        >>> import os, tempfile, numpy as np, onnx  # onnx, the format's own library, writes the file
        >>> from onnx import TensorProto, helper, numpy_helper
        >>> graph = helper.make_graph(
        ...     [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        ...     initializer=[numpy_helper.from_array(np.zeros((4, 2), np.float32), "w")])
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "model.onnx")
        >>> onnx.save(helper.make_model(graph), path)
        >>> from paramscope.analysis import totals
        >>> anatomy = read(path)
        >>> anatomy.framework, totals(anatomy).params, anatomy.compute.flops  # 4 x 2 MACs = 16 FLOPs
        ('onnx', 8, 16)
        >>> folder.cleanup()
    """
    path = Path(source)
    where = str(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CorruptFileError("the file is empty", where=where)
        if size <= _READ_LIMIT:
            buf = Buffer(f.read(), where)
            model = parse_model(buf)
            check_model(model, where)
            stripped = strip_tensor_data(buf)
        else:
            buf = Buffer(FileBytes(f.fileno(), size), where)
            model = parse_model(buf)
            check_model(model, where)
            stripped = strip_tensor_data(buf)
    notes: list[str] = []
    meta: dict[str, str] = {
        "format": f"onnx (ir_version {model.ir_version})",
        "opsets": ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in model.opsets.items()),
    }
    if model.producer:
        meta["producer"] = f"{model.producer} {model.producer_version}".strip()
    for k, v in list(model.metadata.items())[:50]:
        meta[f"metadata.{k}"] = v[:200]
    shapes = _declared_shapes(model.graph)
    inferred = infer_shapes(stripped, options, notes)
    shapes.update({k: v for k, v in inferred.items() if v is not None})
    builder = GraphBuilder(path, model.graph, shapes, {(f.domain, f.name): f for f in model.functions}, notes)
    layers = builder.layers(model.graph, "", 0)
    extra_layers = builder.unused(model.graph)
    exporter_notes(model.producer, builder, notes)
    flops = [la.compute for la in walk(layers) if la.compute is not None and la.type not in ("", "Graph")]
    symbols = sorted({sym for v in model.graph.inputs for sym in v.symbols})
    unknown = sum(1 for c in flops if not c.unknown_ops and None in (c.flops, c.attention_flops, c.elementwise_flops))
    if unknown and symbols and not (options.get("inputs") or options.get("input_size")):
        first = next((v for v in model.graph.inputs if v.symbols), None)
        example = f"{first.name}=float32[...]" if first is not None else "NAME=dtype[...]"
        notes.append(
            f"FLOPs of {unknown} nodes are unknown because input dimensions are symbolic "
            f"({', '.join(symbols[:5])}); fix them with --input {example}."
        )
    init_names = {t.name for t in model.graph.initializers}
    inputs = tuple(shapes.get(v.name) or () for v in model.graph.inputs if v.name not in init_names)
    outputs = tuple(shapes.get(v.name) or () for v in model.graph.outputs)
    meta["nodes"] = str(builder.n_nodes)
    meta["initializers"] = str(len(model.graph.initializers))
    return Anatomy(
        name=path.name,
        framework="onnx",
        layers=layers + extra_layers,
        source=where,
        inputs=inputs,
        outputs=outputs,
        metadata=MappingProxyType(meta),
        notes=tuple(notes),
        compute=sum_compute(la.compute for la in layers),
    )


def _declared_shapes(graph: OGraph) -> dict[str, Shape]:
    out: dict[str, Shape] = {}
    for v in (*graph.inputs, *graph.outputs, *graph.value_info):
        if v.shape is not None:
            out[v.name] = v.shape
    for t in graph.initializers:
        out[t.name] = t.dims
    for node in graph.nodes:
        if node.op_type == "Constant" and node.outputs:
            value = node.attrs.get("value")
            if value is not None and value.tensors:
                out[node.outputs[0]] = value.tensors[0].dims
    return out
