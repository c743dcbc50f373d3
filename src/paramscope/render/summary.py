"""The summary view: one row per layer with its counts, then totals, memory and notes."""

from __future__ import annotations

from paramscope.analysis.totals import Totals, shared_tensors, totals, unique_tensors
from paramscope.core.anatomy import Anatomy, Compute, Layer, Role, Tensor
from paramscope.render import fmt
from paramscope.render.rows import Row, compute_total, rows
from paramscope.render.table import Column, Table

__all__ = ["summary_table", "layer_formula", "totals_lines"]


def layer_formula(layer: Layer) -> str:
    """The numeric derivation of a layer's own parameter count: its rule's, else the sum of its
    parameters' (buffers are not part of the count this explains)."""
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


def _label(row: Row) -> str:
    name = fmt.safe(row.label)
    typ = fmt.safe(row.layer.type)
    text = f"{name} ({typ})" if typ else name
    if row.repeat > 1:
        text += f" x{row.repeat}"
    if row.layer.calls > 1:
        text += f" [called {row.layer.calls}x]"
    if not row.layer.known:
        text += " [no rule]"
    return text


def _compute_cells(c: Compute | None) -> tuple[str, str]:
    if c is None:
        return ("", "")
    return (fmt.si(c.flops), fmt.si(c.macs))


def _non_trainable_breakdown(anatomy: Anatomy) -> str:
    by_role: dict[Role, int] = {}
    for t in unique_tensors(t for layer in anatomy.walk() for t in layer.tensors):
        if t.counted_as == "non_trainable" and t.count is not None:
            by_role[t.role] = by_role.get(t.role, 0) + t.count
    names = {
        Role.STATISTIC: "running statistics, updated from data not by gradient",
        Role.FROZEN: "frozen weights",
        Role.BUFFER: "state",
        Role.TRAINABLE: "trainable",
    }
    return "; ".join(f"{fmt.count(n)} {names[r]}" for r, n in by_role.items())


def totals_lines(anatomy: Anatomy, tot: Totals | None = None) -> list[str]:
    """The lines under a summary: totals, trainable split, buffers, memory, FLOPs, notes."""
    tot = tot or totals(anatomy)
    lines = [
        f"Total params: {fmt.count(tot.params)} ({fmt.n_bytes(tot.param_bytes)})",
        f"Trainable params: {fmt.count(tot.trainable)} ({fmt.n_bytes(tot.trainable_bytes)})",
    ]
    nt = f"Non-trainable params: {fmt.count(tot.non_trainable)} ({fmt.n_bytes(tot.non_trainable_bytes)})"
    breakdown = _non_trainable_breakdown(anatomy)
    if tot.non_trainable and breakdown:
        nt += f": {breakdown}"
    lines.append(nt)
    if tot.unknown_role:
        lines.append(
            f"Params of unknown role: {fmt.count(tot.unknown_role)} (the source does not say "
            "whether they are trained; they are in the total, in neither split)"
        )
    if tot.buffers:
        lines.append(
            f"Buffers (not parameters): {fmt.count(tot.buffers)} ({fmt.n_bytes(tot.buffer_bytes)})"
        )
    if tot.by_dtype:
        parts = [f"{d.dtype} {fmt.count(d.count)} = {fmt.n_bytes(d.n_bytes)}" for d in tot.by_dtype]
        lines.append(f"Memory: {fmt.n_bytes(tot.n_bytes)} ({'; '.join(parts)})")
    c = compute_total(anatomy)
    if c is not None:
        lines.append(
            f"Forward pass: {fmt.si_unit(c.flops, 'FLOPs')} = {fmt.si_unit(c.macs, 'MACs')} "
            f"(matmul and conv; 1 MAC = 2 FLOPs); attention {fmt.si_unit(c.attention_flops, 'FLOPs')}; "
            f"elementwise {fmt.si_unit(c.elementwise_flops, 'FLOPs')}"
        )
        if c.unknown_ops:
            lines.append(f"FLOPs unknown for: {', '.join(c.unknown_ops)}")
    for key, owners in shared_tensors(anatomy).items():
        lines.append(f"Shared: {' = '.join(fmt.safe(o) for o in owners)} (one tensor, counted once)")
    for group in anatomy.extras:
        n = sum(t.count or 0 for t in group.tensors)
        b = sum(t.n_bytes or 0 for t in group.tensors)
        lines.append(
            f"{group.name.capitalize()} state (not part of the model's counts): "
            f"{fmt.count(n)} ({fmt.n_bytes(b)}) in {len(group.tensors)} tensors"
        )
    if not tot.complete:
        unknown = [x.path or x.name for x in anatomy.walk() if not x.known or any(t.count is None for t in x.tensors)]
        shown = ", ".join(fmt.safe(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        lines.append(f"INCOMPLETE: counts unknown for {len(unknown)} layer(s) ({shown}); totals are lower bounds")
    lines.extend(fmt.safe(n) for n in anatomy.notes)
    lines.extend(_facts(anatomy))
    return lines


#: How many metadata entries a summary shows; JSON output has them all.
MAX_FACTS = 16


def _facts(anatomy: Anatomy) -> list[str]:
    items = list(anatomy.metadata.items())
    if not items:
        return []
    out = ["Model facts:"]
    for key, value in items[:MAX_FACTS]:
        text = fmt.safe(str(value))
        out.append(f"  {fmt.safe(key)}: {text if len(text) <= 100 else text[:97] + '...'}")
    if len(items) > MAX_FACTS:
        out.append(f"  ... and {len(items) - MAX_FACTS} more (all of them in --format json)")
    return out


def summary_table(
    anatomy: Anatomy, *, depth: int | None = None, expand: bool = False
) -> Table:
    """The summary of an anatomy as a :class:`Table`.

    Args:
        anatomy: the model.
        depth: deepest nesting level shown (``None``: all).
        expand: one row per repeated block instead of one row with ``xN``.
    """
    all_rows = list(rows(anatomy, depth=depth, expand=expand))
    tot = totals(anatomy)
    has_buffers = tot.buffers > 0
    has_compute = any(r.compute is not None for r in all_rows)
    cols = [
        Column("Layer (type)"),
        Column("Output Shape"),
        Column("Param #", "right"),
        Column("Trainable", "right"),
        Column("Non-trainable", "right"),
    ]
    if has_buffers:
        cols.append(Column("Buffers", "right", drop=1))
    if has_compute:
        cols += [Column("FLOPs", "right", drop=2), Column("MACs", "right", drop=4)]
    cols.append(Column("Formula", drop=3))
    out = []
    for r in all_rows:
        t = r.totals
        known = t.complete
        cells = [
            _label(r),
            fmt.shapes(r.layer.output_shapes) if r.layer.output_shapes is not None else "",
            fmt.count(t.params) if known else f"{fmt.count(t.params)}+?",
            fmt.count(t.trainable),
            fmt.count(t.non_trainable),
        ]
        if has_buffers:
            cells.append(fmt.count(t.buffers))
        if has_compute:
            cells.extend(_compute_cells(r.compute))
        formula = layer_formula(r.layer) if not r.layer.children else ""
        cells.append(formula)
        out.append(tuple(cells))
    title = f"Model: {fmt.safe(anatomy.name)} ({anatomy.framework})"
    return Table(
        title=title,
        columns=tuple(cols),
        rows=tuple(out),
        depths=tuple(r.depth for r in all_rows),
        footer=tuple(totals_lines(anatomy, tot)),
    )


def tensor_role_text(t: Tensor) -> str:
    """``trainable``, ``non-trainable (statistic)``, ``buffer``... as shown in explain views."""
    counted = {
        "trainable": "trainable",
        "non_trainable": "non-trainable",
        "buffer": "buffer",
        "unknown": "param, role unknown",
    }[t.counted_as]
    if t.counted_as == "unknown":
        return counted
    if t.role in (Role.TRAINABLE,) or (t.role is Role.BUFFER and t.counted_as == "buffer"):
        return counted
    return f"{counted}, {t.role.value}"
