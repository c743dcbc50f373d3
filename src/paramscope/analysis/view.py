"""The report view: every analysis run once over an anatomy, frozen for the renderers.

A renderer receives a :class:`ReportView` and only formats it: totals, the rows of a summary
(repeated blocks collapsed, tied tensors counted where they are first owned), each layer's
counts and tensors, compute, notes and facts are all here, computed once.

Every ``str`` field is display-safe: text that came from a file has been passed through
:func:`paramscope.core.text.clean`, here and nowhere else. The raw objects (``raw``) stay
attached for the JSON renderer only, whose encoder escapes every code point exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from types import MappingProxyType

from paramscope.analysis.compute import compute_total, times
from paramscope.analysis.repeats import Run, collapse
from paramscope.analysis.totals import Totals, layer_totals, shared_tensors, sum_tensors, totals, unique_tensors
from paramscope.core.anatomy import ROLE_MEANING, Anatomy, Compute, Formula, Layer, Role, Shape, Tensor, TensorGroup
from paramscope.core.errors import TargetError
from paramscope.core.text import clean

__all__ = ["TensorView", "LayerView", "Row", "ExtraView", "ReportView", "build_view", "layer_formula", "sequential_like"]


@dataclass(frozen=True, slots=True)
class TensorView:
    """One tensor as shown: display-safe name, dtype and formula, its counts, role and why.

    Attributes:
        why: the tensor's own reason, else the meaning of a role that is not plain training.
        shared_with: every owner (``layer/tensor``) when the storage is shared, else empty.
    """

    name: str
    shape: Shape | None
    dtype: str
    count: int | None
    n_bytes: int | None
    role: Role
    counted_as: str
    formula: Formula | None
    why: str
    shared_with: tuple[str, ...]
    raw: Tensor


@dataclass(frozen=True, slots=True)
class LayerView:
    """One layer with its counts (its descendants included) and its own tensors.

    Attributes:
        depth: nesting depth (0 at the top).
        end: index (in :attr:`ReportView.layers`) just past this layer's descendants.
        formula: the numeric derivation of the layer's own parameter count (``""`` if none).
        symbolic: the symbolic form of the layer's rule (``"4 x features"``), if any.
    """

    name: str
    type: str
    path: str
    depth: int
    end: int
    totals: Totals
    formula: str
    symbolic: str
    tensors: tuple[TensorView, ...]
    note: str
    known: bool
    calls: int
    input_shapes: tuple[Shape, ...] | None
    output_shapes: tuple[Shape, ...] | None
    inbound: tuple[str, ...]
    compute: Compute | None
    n_children: int
    raw: Layer


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a summary.

    Attributes:
        layer: the layer shown (the first of a run of repeats).
        depth: nesting depth of the row.
        repeat: how many identical siblings the row stands for (``x12``).
        label: the name shown (``"h.0-11"`` for a run).
        totals: the layer's counts times ``repeat``, without tensors tied to a layer shown
            before it (so that the top-level rows add up to the model's total).
        compute: FLOPs of the layer times ``repeat``, if measured.
        folded: the layer has children that are not shown.
        each: the row sits inside a repeated block: its figures are per block.
        tied: ``(tensor, counted at)`` for each tensor left out of :attr:`totals` because an
            earlier layer owns the same storage.
    """

    layer: LayerView
    depth: int
    repeat: int
    label: str
    totals: Totals
    compute: Compute | None
    folded: bool
    each: bool
    tied: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ExtraView:
    """Tensors that travel with the model but are not part of it; ``None`` counts are unknown."""

    name: str
    note: str
    count: int | None
    n_bytes: int | None
    tensors: tuple[TensorView, ...]
    raw: TensorGroup


@dataclass(frozen=True, slots=True)
class ReportView:
    """Everything a renderer shows about one model, computed once.

    Attributes:
        totals: the model's totals, each storage once.
        compute: FLOPs of one forward pass, when measured.
        layers: every layer, depth first.
        rows: the summary's rows, for the ``depth`` and ``expand`` the view was built with.
        non_trainable_by_role: the non-trainable parameters split by why they are not trained.
        shared: the owners of each storage used in several places.
        extras: optimizer state and other tensors stored beside the model.
        incomplete: paths of the layers whose counts are unknown.
        notes: what the reader wants the user to know.
        facts: metadata read from the source, all of it.
        sequential_like: each top-level layer is called once, on the output of the one before.
        has_inbound: some top-level layer says what it is called on (a functional graph).
        raw: the anatomy itself, for the JSON renderer.
        shared_raw: :attr:`shared` keyed by storage, with the owners' names as read.
    """

    name: str
    framework: str
    source: str
    totals: Totals
    compute: Compute | None
    layers: tuple[LayerView, ...]
    rows: tuple[Row, ...]
    non_trainable_by_role: tuple[tuple[Role, int], ...]
    shared: tuple[tuple[str, ...], ...]
    extras: tuple[ExtraView, ...]
    incomplete: tuple[str, ...]
    notes: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]
    sequential_like: bool
    has_inbound: bool
    raw: Anatomy
    shared_raw: Mapping[str, tuple[str, ...]]

    def find(self, name_or_path: str) -> LayerView:
        """The layer with this path, else the first with this name.

        Raises:
            TargetError: no layer has it; the message lists some that exist.
        """
        by_name = None
        for lv in self.layers:
            if lv.raw.path == name_or_path:
                return lv
            if by_name is None and lv.raw.name == name_or_path:
                by_name = lv
        if by_name is not None:
            return by_name
        names = [lv.path or lv.name for lv in self.layers][:12]
        raise TargetError(
            f"no layer named {clean(name_or_path)!r} in {self.name}; layers include: {', '.join(names)}"
        )

    def subtree(self, lv: LayerView) -> tuple[LayerView, ...]:
        """The layer and its descendants, depth first."""
        start = next(i for i, x in enumerate(self.layers) if x is lv)
        return self.layers[start : lv.end]


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


def _tensor(t: Tensor, shared: Mapping[str, list[str]]) -> TensorView:
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
    keep = {"by_dtype", "complete", "bytes_complete"}
    return replace(t, **{f.name: getattr(t, f.name) * n for f in fields(t) if f.name not in keep})


class _Builder:
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
            tensors=tuple(_tensor(t, self.shared) for t in layer.tensors),
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
        tensors=tuple(_tensor(t, {}) for t in group.tensors),
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
    builder = _Builder(anatomy, shared)
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
