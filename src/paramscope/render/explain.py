"""The explain view: for each layer, every tensor with shape, count, role, formula and why."""

from __future__ import annotations

from paramscope.analysis.totals import layer_totals, shared_tensors
from paramscope.core.anatomy import ROLE_MEANING, Anatomy, Layer, Role, Tensor
from paramscope.core.errors import TargetError
from paramscope.render import fmt
from paramscope.render.summary import layer_formula, tensor_role_text, totals_lines
from paramscope.render.table import Column, Document, Table

__all__ = ["explain_document", "layer_headline", "find_layer"]

_COLUMNS = (
    Column("Tensor"),
    Column("Shape"),
    Column("DType"),
    Column("Count", "right"),
    Column("= Formula"),
    Column("Role"),
    Column("Why"),
)


def layer_headline(layer: Layer) -> str:
    """``batch_normalization (BatchNormalization): 2,048 params = 4 x 512`` and the split."""
    t = layer_totals(layer)
    name = fmt.safe(layer.path or layer.name)
    typ = f" ({fmt.safe(layer.type)})" if layer.type else ""
    formula = layer_formula(layer) if not layer.children else ""
    head = f"{name}{typ}: {fmt.count(t.params)} params"
    if formula and formula != fmt.count(t.params).replace(",", ""):
        head += f" = {formula}"
    if layer.formula is not None and layer.formula.symbolic:
        head += f"  [{layer.formula.symbolic}]"
    split = f"trainable {fmt.count(t.trainable)}, non-trainable {fmt.count(t.non_trainable)}"
    if t.buffers:
        split += f", buffers {fmt.count(t.buffers)}"
    if layer.output_shapes is not None:
        split += f"; output {fmt.shapes(layer.output_shapes)}"
    if layer.calls > 1:
        split += f"; called {layer.calls} times, weights stored once"
    return f"{head}\n  {split}"


def _why(t: Tensor, shared: dict[str, list[str]]) -> str:
    parts = []
    if t.why:
        parts.append(t.why)
    elif t.role not in (Role.TRAINABLE, Role.UNKNOWN):
        parts.append(ROLE_MEANING[t.role])
    if t.key in shared:
        parts.append("shared: " + " = ".join(shared[t.key]))
    return fmt.safe(" ".join(parts))


def _tensor_row(t: Tensor, shared: dict[str, list[str]]) -> tuple[str, ...]:
    f = t.formula
    formula = "" if f is None else (f.numeric if f.symbolic in ("", f.numeric) else f"{f.numeric}  ({f.symbolic})")
    return (
        fmt.safe(t.name),
        fmt.shape(t.shape),
        t.dtype,
        fmt.count(t.count),
        formula,
        tensor_role_text(t),
        _why(t, shared),
    )


def _layer_blocks(layer: Layer, shared: dict[str, list[str]]) -> list[Table | str]:
    blocks: list[Table | str] = []
    head = layer_headline(layer)
    if layer.tensors:
        blocks.append(
            Table(
                title=head,
                columns=_COLUMNS,
                rows=tuple(_tensor_row(t, shared) for t in layer.tensors),
                footer=tuple(fmt.safe(n) for n in (layer.note,) if n),
            )
        )
    elif not layer.children:
        what = "no weights" if layer.known else "no rule explains this layer type; its tensors are unknown"
        note = f"\n  {fmt.safe(layer.note)}" if layer.note else ""
        blocks.append(f"{head}\n  {what}{note}")
    else:
        note = f"\n  {fmt.safe(layer.note)}" if layer.note else ""
        blocks.append(f"{head}\n  made of {len(layer.children)} sub-layers{note}")
    for child in layer.children:
        blocks.extend(_layer_blocks(child, shared))
    return blocks


def find_layer(anatomy: Anatomy, layer: str) -> Layer:
    """The layer with this path or name.

    Raises:
        TargetError: no layer has it; the message lists some that exist.
    """
    found = anatomy.find(layer)
    if found is None:
        names = [fmt.safe(x.path or x.name) for x in anatomy.walk()][:12]
        raise TargetError(
            f"no layer named {fmt.safe(layer)!r} in {fmt.safe(anatomy.name)}; "
            f"layers include: {', '.join(names)}"
        )
    return found


def explain_document(anatomy: Anatomy, *, layer: str | None = None) -> Document:
    """The explain view of a whole model, or of one layer (by path or name).

    Raises:
        TargetError: ``layer`` names no layer of the model.
    """
    shared = shared_tensors(anatomy)
    if layer is not None:
        found = find_layer(anatomy, layer)
        return Document("", tuple(_layer_blocks(found, shared)))
    blocks: list[Table | str] = []
    for top in anatomy.layers:
        blocks.extend(_layer_blocks(top, shared))
    blocks.append("\n".join(totals_lines(anatomy)))
    return Document(f"Model: {fmt.safe(anatomy.name)} ({anatomy.framework})", tuple(blocks))
