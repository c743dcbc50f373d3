"""Per-value shapes of an ONNX graph from ONNX's own shape inference (optional ``onnx`` package).

Inference runs on a copy of the model without the data of large tensors
(:func:`~paramscope.readers.onnx.proto.strip_tensor_data`), up to :data:`MAX_INFER_BYTES`. Symbolic input dimensions
(``batch``, ``sequence``) can be fixed by the ``inputs``/``input_size`` options, so that every
node's FLOPs become known.
"""

from __future__ import annotations

import re
from typing import Any

from paramscope.core.errors import ModelError

__all__ = ["infer_shapes", "parse_input_spec", "MAX_INFER_BYTES"]

MAX_INFER_BYTES = 64 * 2**20
_MAX_DEPTH = 32
_SPEC = re.compile(r"^\s*([^=\s]+)\s*=\s*([A-Za-z0-9_]*)\s*\[\s*([0-9,\s]*)\]\s*$")

Shape = tuple[int | None, ...]


def parse_input_spec(spec: str) -> tuple[str, tuple[int, ...]]:
    """``"input_ids=int64[1,128]"`` -> ``("input_ids", (1, 128))``.

    Raises:
        ModelError: the text is not ``NAME=dtype[d0,d1,...]``.

    Example:
        >>> parse_input_spec("x=float32[1,3,224,224]")
        ('x', (1, 3, 224, 224))
    """
    m = _SPEC.match(spec)
    if not m:
        raise ModelError(f"input {spec!r} is not NAME=dtype[d0,d1,...] (e.g. input_ids=int64[1,128])")
    dims = tuple(int(d) for d in m.group(3).replace(" ", "").split(",") if d)
    return m.group(1), dims


def _overrides(options: dict[str, Any], input_names: list[str]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for spec in options.get("inputs") or ():
        name, dims = parse_input_spec(str(spec))
        if name not in input_names:
            raise ModelError(f"the model has no input {name!r}; its inputs are {', '.join(input_names)}")
        out[name] = dims
    size = options.get("input_size")
    if size and input_names and input_names[0] not in out:
        out[input_names[0]] = tuple(int(d) for d in size)
    return out


def _dims(type_proto: Any) -> Shape | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in type_proto.tensor_type.shape.dim)


def _collect(graph: Any, out: dict[str, Shape | None], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    for v in (*graph.input, *graph.output, *graph.value_info):
        out[v.name] = _dims(v.type)
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("g"):
                _collect(a.g, out, depth + 1)
            for g in a.graphs:
                _collect(g, out, depth + 1)


def infer_shapes(stripped: bytes, options: dict[str, Any], notes: list[str]) -> dict[str, Shape | None]:
    """Shapes of every value ONNX shape inference can work out, or ``{}`` when it cannot run.

    Args:
        stripped: the model's bytes without large tensor data.
        options: reader options (``inputs``, ``input_size``).
        notes: sentences for the user; a reason is added when inference is skipped or fails.

    Returns:
        Value name -> shape (``None`` dims where symbolic).
    """
    try:
        import onnx
    except ImportError:
        notes.append("Install onnx (pip install onnx) for ONNX shape inference; shapes come from the file's value_info.")
        return {}
    if len(stripped) > MAX_INFER_BYTES:
        notes.append(
            f"The graph is larger than {MAX_INFER_BYTES >> 20} MiB without its weights, so ONNX shape "
            "inference was skipped; shapes come from the file's value_info."
        )
        return {}
    try:
        model = onnx.load_model_from_string(stripped)
    except Exception as e:  # the protobuf library's own errors; the file already passed our scan
        notes.append(f"ONNX could not load the file for shape inference ({type(e).__name__}).")
        return {}
    inits = {t.name for t in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in inits]
    fixed = _overrides(options, names)
    for v in model.graph.input:
        dims = fixed.get(v.name)
        if dims is None:
            continue
        shape = v.type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise ModelError(f"input {v.name!r} has {len(shape.dim)} dimensions, not {len(dims)}")
        for d, value in zip(shape.dim, dims):
            d.dim_value = value
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:  # inference errors are reported by onnx as several exception types
        notes.append(f"ONNX shape inference failed ({type(e).__name__}: {str(e)[:120]}).")
        return {}
    out: dict[str, Shape | None] = {}
    _collect(inferred.graph, out, 0)
    return out
