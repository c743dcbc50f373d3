"""One walk over an anatomy: every layer's view, and the rows of a summary.

The walk keeps, for each shared storage, the layer that owns it first, so that a row leaves
out a tensor tied to a layer shown before it (GPT-2's head, tied to the token embedding) and
the top-level rows add up to the model's total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, replace

from paramscope.analysis.compute import times
from paramscope.analysis.repeats import Run, collapse
from paramscope.analysis.totals import Totals, layer_totals, sum_tensors
from paramscope.analysis.view_types import LayerView, Row, TensorView
from paramscope.core.anatomy import ROLE_MEANING, Anatomy, Formula, Layer, Role, Tensor
from paramscope.core.text import clean

__all__ = ["Walk", "layer_formula", "tensor_view"]


def layer_formula(layer: Layer) -> str:
    """The numeric derivation of a layer's own parameter count: its rule's, else the sum of
    its parameters' (buffers are not part of the count this explains).

    Example:
        >>> from paramscope.core import Formula, Tensor
        >>> layer_formula(Layer("d", tensors=(Tensor("w", (2, 3), formula=Formula("i x o", "2 x 3")),)))
        '2 x 3'
    """
    params = [t for t in layer.tensors if t.is_param]
    if not params:
        return ""
    if layer.formula is not None:
        return layer.formula.numeric
    parts = [t.formula.numeric for t in params if t.formula is not None]
    if not parts or len(parts) != len(params):
        return ""
    if len(parts) == 1:
        return parts[0]
    return " + ".join(f"({p})" if "+" in p else p for p in parts)


def _owner(layer: Layer, t: Tensor) -> str:
    return f"{layer.path}/{t.name}" if layer.path else t.name


def tensor_view(t: Tensor, shared: Mapping[str, list[str]]) -> TensorView:
    """The tensor as shown, its owners listed when its storage is shared."""
    f = t.formula
    why = t.why
    if not why and t.role not in (Role.TRAINABLE, Role.UNKNOWN):
        why = ROLE_MEANING[t.role]
    return TensorView(
        name=clean(t.name),
        shape=t.shape,
        dtype=clean(t.dtype),
        count=t.count,
        n_bytes=t.n_bytes,
        role=t.role,
        counted_as=t.counted_as,
        formula=None if f is None else Formula(clean(f.symbolic), clean(f.numeric)),
        why=clean(why),
        shared_with=tuple(clean(o) for o in shared.get(t.key, ())) if t.key else (),
        raw=t,
    )


def _times_totals(t: Totals, n: int) -> Totals:
    # Every count and byte figure scales with the repeat; the dtype breakdown and the
    # completeness flag describe one member and stay as they are.
    if n == 1:
        return t
    keep = {"by_dtype", "complete", "bytes_complete", "counts_complete"}
    return replace(t, **{f.name: getattr(t, f.name) * n for f in fields(t) if f.name not in keep})


class Walk:
    """Walks the anatomy once, keeping what the rows need (first owners of shared storage)."""

    def __init__(self, anatomy: Anatomy, shared: Mapping[str, list[str]]) -> None:
        self.shared = shared
        self.layers: list[LayerView] = []
        self.first_owner: dict[str, tuple[int, str]] = {}  # storage key -> (position, owner)
        self._walk(anatomy.layers, 0)

    def _walk(self, layers: Sequence[Layer], depth: int) -> None:
        # An explicit stack: a model with thousands of nested layers must not hit the recursion
        # limit. An entry with a position closes that layer's subtree.
        order: list[tuple[Layer, int]] = []
        ends: list[int] = []
        stack: list[tuple[Layer, int, int]] = [(x, depth, -1) for x in reversed(layers)]
        while stack:
            layer, level, closing = stack.pop()
            if closing >= 0:
                ends[closing] = len(order)
                continue
            i = len(order)
            for t in layer.tensors:
                if t.key and t.key not in self.first_owner:
                    self.first_owner[t.key] = (i, _owner(layer, t))
            order.append((layer, level))
            ends.append(i + 1)
            stack.append((layer, level, i))
            stack.extend((c, level + 1, -1) for c in reversed(layer.children))
        self.layers = [self._layer(layer, level, end) for (layer, level), end in zip(order, ends)]

    def _layer(self, layer: Layer, depth: int, end: int) -> LayerView:
        return LayerView(
            name=clean(layer.name),
            type=clean(layer.type),
            path=clean(layer.path),
            depth=depth,
            end=end,
            totals=layer_totals(layer),
            formula=clean(layer_formula(layer)),
            symbolic=clean(layer.formula.symbolic) if layer.formula is not None else "",
            tensors=tuple(tensor_view(t, self.shared) for t in layer.tensors),
            note=clean(layer.note),
            known=layer.known,
            calls=layer.calls,
            input_shapes=layer.input_shapes,
            output_shapes=layer.output_shapes,
            inbound=tuple(clean(x) for x in layer.inbound),
            compute=layer.compute,
            n_children=len(layer.children),
            raw=layer,
        )

    def owned(self, lv: LayerView, i: int) -> tuple[Totals, tuple[tuple[str, str], ...]]:
        """The layer's totals without tensors whose storage a layer outside it owns first."""
        tied: list[tuple[str, str]] = []
        keep: list[Tensor] = []
        for j in range(i, lv.end):
            member = self.layers[j].raw
            for t in member.tensors:
                first = self.first_owner.get(t.key) if t.key else None
                if first is not None and not i <= first[0] < lv.end:
                    tied.append((clean(_owner(member, t)), clean(first[1])))
                else:
                    keep.append(t)
        if not tied:
            return lv.totals, ()
        known = all(self.layers[j].known for j in range(i, lv.end))
        return sum_tensors(keep, known), tuple(tied)

    def rows(self, layers: Sequence[Layer], depth: int | None, expand: bool) -> list[Row]:
        out: list[Row] = []
        # (run, position of its first member, level, inside a repeated block); children are
        # pushed after their parent is shown, so rows come out depth first.
        stack: list[tuple[Run, int, int, bool]] = []

        def push(siblings: Sequence[Layer], start: int, level: int, each: bool) -> None:
            runs = [Run((x,)) for x in siblings] if expand else collapse(siblings)
            found: list[tuple[Run, int, int, bool]] = []
            pos = start
            for run in runs:
                found.append((run, pos, level, each))
                for _ in run.layers:
                    pos = self.layers[pos].end
            stack.extend(reversed(found))

        push(layers, 0, 0, False)
        while stack:
            run, i, level, each = stack.pop()
            lv = self.layers[i]
            show_children = depth is None or level < depth
            own, tied = self.owned(lv, i)
            out.append(
                Row(
                    layer=lv,
                    depth=level,
                    repeat=run.n,
                    label=clean(run.label),
                    totals=_times_totals(own, run.n),
                    compute=times(lv.compute, run.n),
                    folded=bool(run.first.children) and not show_children,
                    each=each,
                    tied=tied,
                )
            )
            if show_children and run.first.children:
                push(run.first.children, i + 1, level + 1, each or run.n > 1)
        return out
