"""The summary view: one row per layer with its counts, then totals, memory and notes.

Formats a finished :class:`~paramscope.analysis.view.ReportView`; computes nothing.
"""

from __future__ import annotations

from paramscope.analysis.view import ReportView, Row
from paramscope.core.anatomy import Compute, Role
from paramscope.render import fmt
from paramscope.render.table import Column, Table

__all__ = ["COLUMN_KEYS", "summary_table", "default_columns", "totals_lines", "row_label", "MAX_FACTS"]

#: How many metadata entries a summary shows; JSON output has them all.
MAX_FACTS = 16

_NON_TRAINABLE = {
    Role.STATISTIC: "running statistics, updated from data not by gradient",
    Role.FROZEN: "frozen weights",
    Role.BUFFER: "state",
    Role.TRAINABLE: "trainable",
    Role.UNKNOWN: "of unknown role",
}


def row_label(row: Row) -> str:
    """``h.0-11 (GPT2Block) x12``, with markers: ``[called 2x]``, ``[not called]`` (by the traced
    forward pass), ``[no rule]``, ``[each]`` (a
    row inside a repeated block: its figures are per block) and ``[tied to ...]`` (storage
    counted at the layer named)."""
    lv = row.layer
    text = f"{row.label} ({lv.type})" if lv.type else row.label
    if row.repeat > 1:
        text += f" x{row.repeat}"
    if lv.calls > 1:
        text += f" [called {lv.calls}x]"
    elif lv.calls == 0 and lv.compute is None:  # a container (ModuleList) has a sum, not a call
        text += " [not called]"
    if not lv.known:
        text += " [no rule]"
    if row.each:
        text += " [each]"
    if row.tied:
        text += f" [tied to {', '.join(owner for _, owner in row.tied)}]"
    return text


def _compute_cells(c: Compute | None, calls: int) -> tuple[str, str]:
    if c is None and calls == 0:  # the forward pass never ran it: nothing to cost, nothing unknown
        return ("-", "-")
    if c is None:
        return ("?", "?")
    return (fmt.si(c.flops), fmt.si(c.macs))


def totals_lines(view: ReportView) -> list[str]:
    """The lines under a summary: totals, trainable split, buffers, memory, FLOPs, notes."""
    tot = view.totals

    def size(n: int, elements: int | None = None) -> str:
        # No elements, no bytes, known or not; otherwise a figure may be a lower bound.
        return fmt.n_bytes(0) if elements == 0 else fmt.n_bytes_bound(n, tot.bytes_complete)

    lines = [
        f"Total params: {fmt.count(tot.params)} ({size(tot.param_bytes, tot.params)})",
        f"Trainable params: {fmt.count(tot.trainable)} ({size(tot.trainable_bytes, tot.trainable)})",
    ]
    nt = f"Non-trainable params: {fmt.count(tot.non_trainable)} ({size(tot.non_trainable_bytes, tot.non_trainable)})"
    breakdown = "; ".join(f"{fmt.count(n)} {_NON_TRAINABLE[r]}" for r, n in view.non_trainable_by_role)
    if tot.non_trainable and breakdown:
        nt += f": {breakdown}"
    lines.append(nt)
    if tot.unknown_role:
        lines.append(
            f"Params of unknown role: {fmt.count(tot.unknown_role)} (the source does not say "
            "whether they are trained; they are in the total, in neither split)"
        )
    if tot.buffers:
        lines.append(f"Buffers (not parameters): {fmt.count(tot.buffers)} ({size(tot.buffer_bytes, tot.buffers)})")
    if tot.by_dtype:
        parts = [f"{d.dtype} {fmt.count(d.count)} = {fmt.n_bytes(d.n_bytes)}" for d in tot.by_dtype]
        lines.append(f"Memory: {size(tot.n_bytes)} ({'; '.join(fmt.clean(p) for p in parts)})")
    c = view.compute
    if c is not None:
        lines.append(
            f"Forward pass: {fmt.si_unit(c.flops, 'FLOPs')} = {fmt.si_unit(c.macs, 'MACs')} "
            f"(matmul and conv; 1 MAC = 2 FLOPs); attention {fmt.si_unit(c.attention_flops, 'FLOPs')}; "
            f"elementwise {fmt.si_unit(c.elementwise_flops, 'FLOPs')}"
        )
        if c.unknown_ops:
            lines.append(f"FLOPs unknown for: {', '.join(fmt.clean(op) for op in c.unknown_ops)}")
    for owners in view.shared:
        lines.append(f"Shared: {' = '.join(owners)} (one tensor, counted once)")
    for group in view.extras:
        lines.append(
            f"{group.name.capitalize()} state (not part of the model's counts): "
            f"{fmt.count(group.count)} ({fmt.n_bytes(group.n_bytes)}) in {len(group.tensors)} tensors"
        )
    if not tot.counts_complete:
        shown = ", ".join(view.incomplete[:5]) + (" ..." if len(view.incomplete) > 5 else "")
        lines.append(
            f"INCOMPLETE: counts unknown for {len(view.incomplete)} layer(s) ({shown}); totals are lower bounds"
        )
    elif not tot.bytes_complete:
        lines.append("INCOMPLETE: the size of some dtype is unknown; byte totals are lower bounds")
    lines.extend(view.notes)
    lines.extend(_facts(view))
    return lines


def _facts(view: ReportView) -> list[str]:
    if not view.facts:
        return []
    out = ["Model facts:"]
    for key, text in view.facts[:MAX_FACTS]:
        out.append(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")
    if len(view.facts) > MAX_FACTS:
        out.append(f"  ... and {len(view.facts) - MAX_FACTS} more (all of them in --format json)")
    return out


#: Columns the summary can show (``--columns``), in their default order: key -> header.
COLUMN_KEYS = {
    "shape": "Output Shape",
    "params": "Param #",
    "trainable": "Trainable",
    "non_trainable": "Non-trainable",
    "buffers": "Buffers",
    "bytes": "Bytes",
    "dtype": "DType",
    "flops": "FLOPs",
    "macs": "MACs",
    "formula": "Formula",
}

_SPECS = {
    "shape": Column("Output Shape", drop=5, wrap=True, min_width=14),
    "params": Column("Param #", "right"),
    "trainable": Column("Trainable", "right", drop=4),
    "non_trainable": Column("Non-trainable", "right", drop=3),
    "buffers": Column("Buffers", "right", drop=6),
    "bytes": Column("Bytes", "right", drop=4),
    "dtype": Column("DType", drop=5, wrap=True, min_width=8),
    "flops": Column("FLOPs", "right", drop=1),
    "macs": Column("MACs", "right", drop=7),
    "formula": Column("Formula", drop=2, wrap=True, min_width=12),
}


def _cell(key: str, r: Row) -> str:
    t = r.totals
    if key == "shape":
        return fmt.shapes(r.layer.output_shapes) if r.layer.output_shapes is not None else ""
    if key == "params":
        return fmt.count(t.params) if t.counts_complete else f"{fmt.count(t.params)}+?"
    if key in ("trainable", "non_trainable", "buffers"):
        return fmt.count(getattr(t, key))
    if key == "bytes":
        return fmt.n_bytes(t.n_bytes) if t.bytes_complete else f"{fmt.n_bytes(t.n_bytes)}+?"
    if key == "dtype":
        return ", ".join(d.dtype for d in t.by_dtype)
    if key in ("flops", "macs"):
        return _compute_cells(r.compute, r.layer.calls)[0 if key == "flops" else 1]
    return r.layer.formula if not r.layer.n_children else ""


def default_columns(view: ReportView) -> tuple[str, ...]:
    """The columns shown when none are chosen: those with something to say for this model."""
    keys = ["shape"] if any(r.layer.output_shapes is not None for r in view.rows) else []
    keys += ["params", "trainable", "non_trainable"]
    if view.totals.buffers > 0:
        keys.append("buffers")
    if any(r.compute is not None for r in view.rows):
        keys += ["flops", "macs"]
    keys.append("formula")
    return tuple(keys)


def summary_table(view: ReportView, columns: tuple[str, ...] | None = None) -> Table:
    """The summary as a :class:`Table`: one row per row of the view.

    Args:
        view: the finished view.
        columns: keys of :data:`COLUMN_KEYS` to show, in order (the layer column always comes
            first); ``None`` for :func:`default_columns`.

    Example:
        >>> from paramscope.analysis.view import build_view
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> v = build_view(Anatomy("m", "torch", (Layer("fc", "Linear", "fc", (Tensor("w", (2, 3)),)),)))
        >>> summary_table(v).rows[0][:3]
        ('fc (Linear)', '6', '6')
        >>> summary_table(v, ("bytes", "dtype")).rows[0]
        ('fc (Linear)', '24 B', 'float32')
    """
    keys = default_columns(view) if columns is None else columns
    cols = [Column("Layer (type)", wrap=True, min_width=24)] + [_SPECS[k] for k in keys]
    rows = tuple((row_label(r), *(_cell(k, r) for k in keys)) for r in view.rows)
    return Table(
        title=f"Model: {view.name} ({view.framework})",
        columns=tuple(cols),
        rows=rows,
        depths=tuple(r.depth for r in view.rows),
        footer=tuple(totals_lines(view)),
    )
