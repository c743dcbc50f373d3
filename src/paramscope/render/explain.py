"""The explain view: for each layer, every tensor with shape, count, role, formula and why.

Formats a finished :class:`~paramscope.analysis.view.ReportView`; computes nothing.
"""

from __future__ import annotations

from paramscope.analysis.view import LayerView, ReportView, TensorView
from paramscope.core.anatomy import Role
from paramscope.render import fmt
from paramscope.render.summary import totals_lines
from paramscope.render.table import Column, Document, Table

__all__ = ["explain_document", "layer_headline", "tensor_role_text"]

# Only "Why" wraps; a narrow terminal leaves out DType, then Shape, then the formula (the
# headline above the table already gives the layer's), then Role.
_COLUMNS = (
    Column("Tensor"),
    Column("Shape", drop=4),
    Column("DType", drop=5),
    Column("Count", "right"),
    Column("= Formula", drop=3),
    Column("Role", drop=2),
    Column("Why", wrap=True, min_width=24),
)


def tensor_role_text(t: TensorView) -> str:
    """``trainable``, ``non-trainable, statistic``, ``buffer``... as shown in explain views."""
    counted = {
        "trainable": "trainable",
        "non_trainable": "non-trainable",
        "buffer": "buffer",
        "unknown": "param, role unknown",
    }[t.counted_as]
    if t.counted_as == "unknown":
        return counted
    if t.role is Role.TRAINABLE or (t.role is Role.BUFFER and t.counted_as == "buffer"):
        return counted
    return f"{counted}, {t.role.value}"


def layer_headline(lv: LayerView) -> str:
    """``batch_normalization (BatchNormalization): 2,048 params = 4 x 512`` and the split."""
    t = lv.totals
    typ = f" ({lv.type})" if lv.type else ""
    formula = lv.formula if not lv.n_children else ""
    head = f"{lv.path or lv.name}{typ}: {fmt.count(t.params)} params"
    if formula and formula != fmt.count(t.params).replace(",", ""):
        head += f" = {formula}"
    if lv.symbolic:
        head += f"  [{lv.symbolic}]"
    split = f"trainable {fmt.count(t.trainable)}, non-trainable {fmt.count(t.non_trainable)}"
    if t.buffers:
        split += f", buffers {fmt.count(t.buffers)}"
    if lv.output_shapes is not None:
        split += f"; output {fmt.shapes(lv.output_shapes)}"
    if lv.calls > 1:
        split += f"; called {lv.calls} times, weights stored once"
    return f"{head}\n  {split}"


def _tensor_row(t: TensorView) -> tuple[str, ...]:
    f = t.formula
    formula = "" if f is None else (f.numeric if f.symbolic in ("", f.numeric) else f"{f.numeric}  ({f.symbolic})")
    why = t.why
    if t.shared_with:
        why = f"{why} shared: {' = '.join(t.shared_with)}".strip()
    return (t.name, fmt.shape(t.shape), t.dtype, fmt.count(t.count), formula, tensor_role_text(t), why)


def _layer_block(lv: LayerView) -> Table | str:
    head = layer_headline(lv)
    if lv.tensors:
        return Table(
            title=head,
            columns=_COLUMNS,
            rows=tuple(_tensor_row(t) for t in lv.tensors),
            footer=(lv.note,) if lv.note else (),
        )
    note = f"\n  {lv.note}" if lv.note else ""
    if lv.n_children:
        return f"{head}\n  made of {lv.n_children} sub-layers{note}"
    what = "no weights" if lv.known else "no rule explains this layer type; its tensors are unknown"
    return f"{head}\n  {what}{note}"


def explain_document(view: ReportView, *, layer: str | None = None) -> Document:
    """The explain view of a whole model, or of one layer (by path or name) and its sub-layers.

    Raises:
        TargetError: ``layer`` names no layer of the model.
    """
    if layer is not None:
        return Document("", tuple(_layer_block(x) for x in view.subtree(view.find(layer))))
    blocks: list[Table | str] = [_layer_block(x) for x in view.layers]
    blocks.append("\n".join(totals_lines(view)))
    return Document(f"Model: {view.name} ({view.framework})", tuple(blocks))
