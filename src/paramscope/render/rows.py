"""The rows of a summary: which layers to show, at what depth, with repeats collapsed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace

from paramscope.analysis.repeats import Run, collapse
from paramscope.analysis.totals import Totals, layer_totals
from paramscope.core.anatomy import Anatomy, Compute, Layer
from paramscope.core.compute import sum_compute

__all__ = ["Row", "rows", "compute_total"]


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a summary.

    Attributes:
        layer: the layer shown (the first of a run of repeats).
        depth: nesting depth (0 for top-level layers).
        repeat: how many identical siblings the row stands for.
        label: the name shown (``"layers.0-31"`` for a run).
        totals: counts of the layer and its descendants, times ``repeat``.
        compute: FLOPs of the layer (times ``repeat``), if measured.
        folded: whether the layer has children that are not shown as rows.
    """

    layer: Layer
    depth: int
    repeat: int
    label: str
    totals: Totals
    compute: Compute | None
    folded: bool


def _times(c: Compute | None, n: int) -> Compute | None:
    if c is None or n == 1:
        return c

    def m(x: int | None) -> int | None:
        return None if x is None else x * n

    return Compute(m(c.flops), m(c.attention_flops), m(c.elementwise_flops), c.unknown_ops)


def _times_totals(t: Totals, n: int) -> Totals:
    # Every count and byte figure scales with the repeat; the dtype breakdown and the
    # completeness flag describe one member and stay as they are.
    if n == 1:
        return t
    keep = {"by_dtype", "complete"}
    return replace(t, **{f.name: getattr(t, f.name) * n for f in fields(t) if f.name not in keep})


def rows(
    anatomy: Anatomy, *, depth: int | None = None, expand: bool = False
) -> Iterator[Row]:
    """The rows to show, depth first.

    Args:
        anatomy: the model.
        depth: deepest nesting level shown (0: top-level layers only; ``None``: all).
        expand: show each repeated block on its own row instead of ``x32``.
    """
    yield from _rows(anatomy.layers, 0, depth, expand)


def _rows(layers: Sequence[Layer], level: int, depth: int | None, expand: bool) -> Iterator[Row]:
    runs = [Run((x,)) for x in layers] if expand else collapse(layers)
    for run in runs:
        layer = run.first
        show_children = depth is None or level < depth
        yield Row(
            layer=layer,
            depth=level,
            repeat=run.n,
            label=run.label,
            totals=_times_totals(layer_totals(layer), run.n),
            compute=_times(layer.compute, run.n),
            folded=bool(layer.children) and not show_children,
        )
        if show_children and layer.children:
            yield from _rows(layer.children, level + 1, depth, expand)


def compute_total(anatomy: Anatomy) -> Compute | None:
    """FLOPs of the whole model: its own figure, else the sum over top-level layers."""
    if anatomy.compute is not None:
        return anatomy.compute
    # A layer that was not measured makes every figure unknown, not smaller.
    return sum_compute(x.compute for x in anatomy.layers)
