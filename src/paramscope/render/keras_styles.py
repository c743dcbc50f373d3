"""The two layouts Keras users know: the classic Keras 1/2 ``summary()`` and Keras 3's table.

``keras2`` reproduces the classic fixed-width layout (the one in countless forum posts) with its
``Connected to`` column for functional models. ``keras3`` reproduces the current rich table.
Both show the same numbers as the default view; byte sizes use binary units named correctly
(1 KiB = 1,024 bytes), where Keras 3 prints ``KB``/``MB`` for the same binary values.
"""

from __future__ import annotations

from paramscope.analysis.view import ReportView
from paramscope.render import fmt
from paramscope.render.table import Column, Table

__all__ = ["render_keras2", "keras3_table"]


def _print_row(fields: list[str], positions: list[int]) -> str:
    # Each field is cut at its column's end; the last character before the next field becomes a
    # space, exactly as Keras 1/2's print_row did (hence "batchnormalization_1 (BatchNorma").
    line = ""
    for i, f in enumerate(fields):
        if i > 0:
            line = line[:-1] + " "
        line += f
        line = line[: positions[i]]
        line += " " * (positions[i] - len(line))
    return line.rstrip()


def render_keras2(view: ReportView) -> str:
    """The classic Keras 1/2 summary: 100 columns with ``Connected to`` for functional models,
    65 columns for sequential ones; parameter counts without separators, totals with them.

    The view's rows should be built with ``expand=True`` (Keras lists every layer).

    Example:
        >>> from paramscope.analysis.view import build_view
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> a = Anatomy("m", "keras", (Layer("d", "Dense", "d", (Tensor("kernel", (2, 3)),), output_shapes=((None, 3),)),))
        >>> print(render_keras2(build_view(a, depth=0, expand=True)).splitlines()[3])
        d (Dense)                    (None, 3)                 6
    """
    functional = view.has_inbound or not view.sequential_like
    if functional:
        line_length, positions = 100, [33, 55, 67, 100]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
    else:
        line_length, positions = 65, [29, 55, 65]
        header = ["Layer (type)", "Output Shape", "Param #"]
    out = ["_" * line_length, _print_row(header, positions), "=" * line_length]
    shown = view.rows
    for i, r in enumerate(shown):
        layer = r.layer
        name = "  " * r.depth + f"{layer.name} ({layer.type})"
        t = layer.totals
        params = str(t.params) if t.counts_complete else f"{t.params}+?"
        out_shape = fmt.shapes(layer.output_shapes) if layer.output_shapes is not None else "?"
        fields = [name, out_shape, params]
        if functional:
            fields.append(layer.inbound[0] if layer.inbound else "")
        out.append(_print_row(fields, positions))
        if functional:
            for ref in layer.inbound[1:]:
                out.append(_print_row(["", "", "", ref], positions))
        out.append(("=" if i == len(shown) - 1 else "_") * line_length)
    tot = view.totals
    out.append(f"Total params: {fmt.count(tot.params)}")
    out.append(f"Trainable params: {fmt.count(tot.trainable)}")
    out.append(f"Non-trainable params: {fmt.count(tot.non_trainable)}")
    if tot.unknown_role:
        out.append(f"Params of unknown role: {fmt.count(tot.unknown_role)}")
    if tot.buffers:
        out.append(f"Buffers (not parameters): {fmt.count(tot.buffers)}")
    if not tot.counts_complete:
        out.append("INCOMPLETE: some layers have unknown counts; totals are lower bounds")
    out.append("_" * line_length)
    return "\n".join(out) + "\n"


def keras3_table(view: ReportView) -> Table:
    """Keras 3's summary table: ``Connected to`` only for models that are not sequential-like.

    The view's rows should be built with ``expand=True`` (Keras lists every layer).
    """
    connected = not view.sequential_like
    cols = [
        Column("Layer (type)", wrap=True, min_width=24),
        Column("Output Shape", wrap=True, min_width=14),
        Column("Param #", "right"),
    ]
    if connected:
        cols.append(Column("Connected to", drop=1, wrap=True, min_width=16))
    out = []
    shown = view.rows
    for r in shown:
        layer = r.layer
        t = layer.totals
        cells = [
            f"{layer.name} ({layer.type})",
            fmt.shapes(layer.output_shapes) if layer.output_shapes is not None else "?",
            fmt.count(t.params) if t.counts_complete else f"{fmt.count(t.params)}+?",
        ]
        if connected:
            cells.append(", ".join(layer.inbound) or "-")
        out.append(tuple(cells))
    tot = view.totals
    footer = [
        f" Total params: {fmt.count(tot.params)} ({fmt.n_bytes_bound(tot.param_bytes, tot.bytes_complete)})",
        f" Trainable params: {fmt.count(tot.trainable)} ({fmt.n_bytes_bound(tot.trainable_bytes, tot.bytes_complete)})",
        " Non-trainable params: "
        f"{fmt.count(tot.non_trainable)} ({fmt.n_bytes_bound(tot.non_trainable_bytes, tot.bytes_complete)})",
    ]
    for group in view.extras:
        footer.append(f" {group.name.capitalize()} params (not counted above): {fmt.count(group.count)}")
    return Table(
        title=f'Model: "{view.name}"',
        columns=tuple(cols),
        rows=tuple(out),
        depths=tuple(r.depth for r in shown),
        footer=tuple(footer),
        frame="boxed",
    )
