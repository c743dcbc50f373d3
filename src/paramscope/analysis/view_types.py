"""The types of a report view: frozen, display-safe results that renderers format.

Every ``str`` field is display-safe (passed through :func:`paramscope.core.text.clean` when the
view was built); ``raw`` keeps the object as read, for the JSON renderer only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from paramscope.analysis.totals import Totals
from paramscope.core.anatomy import Anatomy, Compute, Formula, Layer, Role, Shape, Tensor, TensorGroup
from paramscope.core.errors import TargetError
from paramscope.core.text import clean

__all__ = ["TensorView", "LayerView", "Row", "ExtraView", "ReportView"]


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
