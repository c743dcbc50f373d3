"""The report view: every analysis run once over an anatomy, frozen for the renderers.

A renderer receives a :class:`ReportView` and only formats it: totals, the rows of a summary
(repeated blocks collapsed, tied tensors counted where they are first owned), each layer's
counts and tensors, compute, notes and facts are all here, computed once.

Every ``str`` field is display-safe: text that came from a file has been passed through
:func:`paramscope.core.text.clean`, here and nowhere else. The raw objects (``raw``) stay
attached for the JSON renderer only, whose encoder escapes every code point exactly.
"""


from __future__ import annotations

from types import MappingProxyType

from paramscope.analysis.compute import compute_total
from paramscope.analysis.totals import shared_tensors, totals, unique_tensors
from paramscope.analysis.view_types import ExtraView, LayerView, ReportView, Row, TensorView
from paramscope.analysis.walk import Walk, layer_formula, tensor_view
from paramscope.core.anatomy import Anatomy, Layer, Role, TensorGroup
from paramscope.core.text import clean

__all__ = [
    "TensorView",
    "LayerView",
    "Row",
    "ExtraView",
    "ReportView",
    "build_view",
    "layer_formula",
    "sequential_like",
]


def sequential_like(anatomy: Anatomy) -> bool:
    """Whether each layer is called once, on the output of the layer before it (Keras's test)."""
    prev: Layer | None = None
    for layer in anatomy.layers:
        if layer.calls > 1 or len(layer.inbound) > 1:
            return False
        if prev is not None and layer.inbound and not layer.inbound[0].startswith(f"{prev.name}["):
            return False
        prev = layer
    return True


def _non_trainable_by_role(anatomy: Anatomy) -> tuple[tuple[Role, int], ...]:
    by_role: dict[Role, int] = {}
    for t in unique_tensors(t for layer in anatomy.walk() for t in layer.tensors):
        if t.counted_as == "non_trainable" and t.count is not None:
            by_role[t.role] = by_role.get(t.role, 0) + t.count
    return tuple(by_role.items())


def _extra(group: TensorGroup) -> ExtraView:
    counts = [t.count for t in group.tensors]
    sizes = [t.n_bytes for t in group.tensors]
    return ExtraView(
        name=clean(group.name),
        note=clean(group.note),
        count=None if None in counts else sum(c for c in counts if c is not None),
        n_bytes=None if None in sizes else sum(b for b in sizes if b is not None),
        tensors=tuple(tensor_view(t, {}) for t in group.tensors),
        raw=group,
    )


def build_view(
    anatomy: Anatomy, *, depth: int | None = None, expand: bool = False, rows: bool = True
) -> ReportView:
    """Run every analysis once and freeze the result for the renderers.

    Args:
        anatomy: the model.
        depth: deepest nesting level of the summary's rows (0: top-level only; ``None``: all).
        expand: one row per repeated block instead of one row with ``xN``.
        rows: ``False`` leaves the summary's rows out (JSON and explain views list every layer
            and do not need them).

    Example:
        >>> from paramscope.core import Tensor
        >>> blocks = tuple(Layer(str(i), "Block", f"h.{i}", (Tensor("w", (2, 2)),)) for i in range(3))
        >>> v = build_view(Anatomy("m", "torch", (Layer("h", "ModuleList", "h", children=blocks),)))
        >>> [(r.label, r.repeat, r.totals.params, r.each) for r in v.rows]
        [('h', 1, 12, False), ('0-2', 3, 12, False)]
    """
    shared = shared_tensors(anatomy)
    builder = Walk(anatomy, shared)
    tot = totals(anatomy)
    incomplete = tuple(
        clean(x.path or x.name)
        for x in anatomy.walk()
        if not x.known or any(t.count is None for t in x.tensors)
    )
    return ReportView(
        name=clean(anatomy.name),
        framework=clean(anatomy.framework),
        source=clean(anatomy.source),
        totals=tot,
        compute=compute_total(anatomy),
        layers=tuple(builder.layers),
        rows=tuple(builder.rows(anatomy.layers, depth, expand)) if rows else (),
        non_trainable_by_role=_non_trainable_by_role(anatomy),
        shared=tuple(tuple(clean(o) for o in owners) for owners in shared.values()),
        extras=tuple(_extra(g) for g in anatomy.extras),
        incomplete=incomplete,
        notes=tuple(clean(n) for n in anatomy.notes),
        facts=tuple((clean(str(k)), clean(str(v))) for k, v in anatomy.metadata.items()),
        sequential_like=sequential_like(anatomy),
        has_inbound=any(x.inbound for x in anatomy.layers),
        raw=anatomy,
        shared_raw=MappingProxyType({k: tuple(v) for k, v in shared.items()}),
    )
