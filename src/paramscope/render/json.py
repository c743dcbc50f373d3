"""The JSON document of an anatomy, schema ``paramscope/1`` (documented in docs/json-schema.md).

Layers are listed flat, depth first, each with its ``path`` and ``parent`` so that the tree can
be rebuilt; counts of a layer include its descendants. Unknown numbers are ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from paramscope.analysis.totals import Totals
from paramscope.analysis.view import LayerView, ReportView, TensorView
from paramscope.core.anatomy import Compute, Formula, Shape

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


# Strings come from the raw objects, not the display-safe copies: JSON is exact, and the
# encoder (ensure_ascii) writes every control character, BiDi override and lone surrogate as
# a \uXXXX escape.
def _tensor(tv: TensorView, shared: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    t = tv.raw
    d: dict[str, Any] = {
        "name": t.name,
        "shape": _shape(tv.shape),
        "dtype": t.dtype,
        "role": tv.role.value,
        "counted_as": tv.counted_as,
        "count": tv.count,
        "bytes": tv.n_bytes,
        "formula": _formula(t.formula),
        "why": t.why or None,
    }
    if t.key in shared:
        d["shared_with"] = list(shared[t.key])
    return d


def _layer(lv: LayerView, parent: str | None, shared: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    layer = lv.raw
    out = lv.output_shapes
    d: dict[str, Any] = {
        "name": layer.name,
        "type": layer.type,
        "path": layer.path,
        "parent": parent,
        "depth": lv.depth,
        "origin": layer.origin or None,
        "input_shapes": None if lv.input_shapes is None else [_shape(s) for s in lv.input_shapes],
        "output_shape": _shape(out[0]) if out else None,
        "output_shapes": None if out is None else [_shape(s) for s in out],
        "inbound": list(layer.inbound),
        "calls": lv.calls,
        "known": lv.known,
        "complete": lv.totals.complete,
        **_counts(lv.totals),
        "formula": _formula(layer.formula),
        "note": layer.note or None,
        "tensors": [_tensor(t, shared) for t in lv.tensors],
    }
    d.update(_compute(lv.compute))
    return d


def to_dict(view: ReportView, *, layers: Sequence[LayerView] | None = None) -> dict[str, Any]:
    """The view as a JSON-ready dict following schema ``paramscope/1``.

    Args:
        view: the finished view.
        layers: the layers to list (default: all of them).

    Example:
        >>> from paramscope.analysis.view import build_view
        >>> from paramscope.core import Anatomy
        >>> to_dict(build_view(Anatomy("m", "keras")))["totals"]["params"]
        0
    """
    anatomy = view.raw
    tot = view.totals
    shared = view.shared_raw
    parents: list[str] = []
    entries: list[dict[str, Any]] = []
    keep = None if layers is None else {id(x) for x in layers}
    for lv in view.layers:
        del parents[lv.depth :]
        if keep is None or id(lv) in keep:
            entries.append(_layer(lv, parents[-1] if parents else None, shared))
        parents.append(lv.raw.path)
    totals_d: dict[str, Any] = {
        **_counts(tot),
        "param_bytes": tot.param_bytes,
        "buffer_bytes": tot.buffer_bytes,
        "tensors": tot.n_tensors,
        "by_dtype": [{"dtype": d.dtype, "count": d.count, "bytes": d.n_bytes} for d in tot.by_dtype],
    }
    totals_d.update(_compute(view.compute))
    return {
        "schema": SCHEMA,
        "name": anatomy.name,
        "framework": anatomy.framework,
        "source": anatomy.source or None,
        "complete": tot.complete,
        "inputs": [_shape(s) for s in anatomy.inputs],
        "outputs": [_shape(s) for s in anatomy.outputs],
        "totals": totals_d,
        "layers": entries,
        "shared": {k: list(v) for k, v in shared.items()},
        "extras": [
            {
                "name": g.raw.name,
                "note": g.raw.note or None,
                "count": g.count,
                "bytes": g.n_bytes,
                "tensors": [_tensor(t, {}) for t in g.tensors],
            }
            for g in view.extras
        ],
        "metadata": dict(anatomy.metadata),
        "notes": list(anatomy.notes),
    }


def render_json(view: ReportView, *, layers: Sequence[LayerView] | None = None, indent: int | None = 2) -> str:
    """The view as a JSON string (schema ``paramscope/1``), ASCII only: every other code point,
    lone surrogates included, is written as a ``\\uXXXX`` escape."""
    return json.dumps(to_dict(view, layers=layers), indent=indent, ensure_ascii=True)
