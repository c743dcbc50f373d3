"""The JSON document of an anatomy, schema ``paramscope/1`` (documented in docs/json-schema.md).

Layers are listed flat, depth first, each with its ``path`` and ``parent`` so that the tree can
be rebuilt; counts of a layer include its descendants. Unknown numbers are ``null``.
"""

from __future__ import annotations

import json
from typing import Any

from paramscope.analysis.totals import Totals, layer_totals, shared_tensors, totals
from paramscope.core.anatomy import Anatomy, Compute, Formula, Layer, Shape, Tensor
from paramscope.render.rows import compute_total

__all__ = ["SCHEMA", "to_dict", "render_json"]

#: The schema name and version; bumped on any incompatible change.
SCHEMA = "paramscope/1"


def _shape(s: Shape | None) -> list[int | None] | None:
    return None if s is None else list(s)


def _compute(c: Compute | None) -> dict[str, Any]:
    if c is None:
        return {"flops": None, "macs": None, "attention_flops": None, "elementwise_flops": None}
    return {
        "flops": c.flops,
        "macs": c.macs,
        "attention_flops": c.attention_flops,
        "elementwise_flops": c.elementwise_flops,
        "unknown_ops": list(c.unknown_ops),
    }


def _formula(f: Formula | None) -> dict[str, str] | None:
    return None if f is None else {"symbolic": f.symbolic, "numeric": f.numeric}


def _counts(tot: Totals) -> dict[str, Any]:
    """The counts a layer and the whole model both report, in schema order."""
    return {
        "params": tot.params,
        "trainable": tot.trainable,
        "non_trainable": tot.non_trainable,
        "unknown_role": tot.unknown_role,
        "buffers": tot.buffers,
        "bytes": tot.n_bytes,
    }


def _tensor(t: Tensor, shared: dict[str, list[str]]) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": t.name,
        "shape": _shape(t.shape),
        "dtype": t.dtype,
        "role": t.role.value,
        "counted_as": t.counted_as,
        "count": t.count,
        "bytes": t.n_bytes,
        "formula": _formula(t.formula),
        "why": t.why or None,
    }
    if t.key in shared:
        d["shared_with"] = shared[t.key]
    return d


def _layer(layer: Layer, parent: str | None, depth: int, shared: dict[str, list[str]]) -> dict[str, Any]:
    tot = layer_totals(layer)
    out = layer.output_shapes
    d: dict[str, Any] = {
        "name": layer.name,
        "type": layer.type,
        "path": layer.path,
        "parent": parent,
        "depth": depth,
        "origin": layer.origin or None,
        "input_shapes": None if layer.input_shapes is None else [_shape(s) for s in layer.input_shapes],
        "output_shape": _shape(out[0]) if out else None,
        "output_shapes": None if out is None else [_shape(s) for s in out],
        "inbound": list(layer.inbound),
        "calls": layer.calls,
        "known": layer.known,
        "complete": tot.complete,
        **_counts(tot),
        "formula": _formula(layer.formula),
        "note": layer.note or None,
        "tensors": [_tensor(t, shared) for t in layer.tensors],
    }
    d.update(_compute(layer.compute))
    return d


def to_dict(anatomy: Anatomy) -> dict[str, Any]:
    """The anatomy as a JSON-ready dict following schema ``paramscope/1``.

    Example:
        >>> from paramscope.core import Anatomy
        >>> to_dict(Anatomy("m", "keras"))["totals"]["params"]
        0
    """
    tot = totals(anatomy)
    shared = shared_tensors(anatomy)
    layers: list[dict[str, Any]] = []

    def visit(layer: Layer, parent: str | None, depth: int) -> None:
        layers.append(_layer(layer, parent, depth, shared))
        for child in layer.children:
            visit(child, layer.path, depth + 1)

    for layer in anatomy.layers:
        visit(layer, None, 0)
    totals_d: dict[str, Any] = {
        **_counts(tot),
        "param_bytes": tot.param_bytes,
        "buffer_bytes": tot.buffer_bytes,
        "tensors": tot.n_tensors,
        "by_dtype": [{"dtype": d.dtype, "count": d.count, "bytes": d.n_bytes} for d in tot.by_dtype],
    }
    totals_d.update(_compute(compute_total(anatomy)))
    return {
        "schema": SCHEMA,
        "name": anatomy.name,
        "framework": anatomy.framework,
        "source": anatomy.source or None,
        "complete": tot.complete,
        "inputs": [_shape(s) for s in anatomy.inputs],
        "outputs": [_shape(s) for s in anatomy.outputs],
        "totals": totals_d,
        "layers": layers,
        "shared": shared,
        "extras": [
            {
                "name": g.name,
                "note": g.note or None,
                "count": sum(t.count or 0 for t in g.tensors),
                "bytes": sum(t.n_bytes or 0 for t in g.tensors),
                "tensors": [_tensor(t, {}) for t in g.tensors],
            }
            for g in anatomy.extras
        ],
        "metadata": dict(anatomy.metadata),
        "notes": list(anatomy.notes),
    }


def render_json(anatomy: Anatomy, *, indent: int | None = 2) -> str:
    """The anatomy as a JSON string (schema ``paramscope/1``)."""
    return json.dumps(to_dict(anatomy), indent=indent, ensure_ascii=True)
