"""Terminal output with rich: tables and documents rendered to a string or a console."""

from __future__ import annotations

import io

from dataclasses import replace

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text

from paramscope.render.table import Document, Table

__all__ = ["fit", "to_rich", "render_text", "print_rich"]


def _needed(table: Table) -> int:
    # A table's narrowest comfortable width: numbers and headers whole, names and shapes at a
    # readable width, two spaces of padding per column.
    depths = table.depths or (0,) * len(table.rows)
    total = 0
    for i, col in enumerate(table.columns):
        cells = [len(r[i]) + (2 * d if i == 0 else 0) for r, d in zip(table.rows, depths)]
        widest = max([len(col.header.split()[0]) if col.header else 0] + cells)
        total += 2 + (widest if col.justify == "right" else min(widest, 24 if i == 0 else 14))
    return total


def fit(table: Table, width: int) -> Table:
    """The table without the optional columns a terminal of ``width`` has no room for.

    Columns go in the order their ``drop`` says; a footer line names them.
    """
    dropped: list[str] = []
    while _needed(table) > width:
        optional = [(c.drop, i) for i, c in enumerate(table.columns) if c.drop]
        if not optional:
            break
        _, i = max(optional)
        dropped.append(table.columns[i].header)
        table = replace(
            table,
            columns=table.columns[:i] + table.columns[i + 1 :],
            rows=tuple(r[:i] + r[i + 1 :] for r in table.rows),
        )
    if dropped:
        note = f"(columns left out for this width: {', '.join(dropped)}; see --width or --format json)"
        table = replace(table, footer=(*table.footer, note))
    return table


def to_rich(item: Table | Document | str, width: int | None = None) -> RenderableType:
    """A rich renderable for a table, a document or a paragraph (names never parsed as markup).

    With a ``width``, optional columns that do not fit are left out (see :func:`fit`).
    """
    if isinstance(item, str):
        return Text(item)
    if isinstance(item, Document):
        parts: list[RenderableType] = [Text(item.title, style="bold")] if item.title else []
        for block in item.blocks:
            parts.append(to_rich(block, width))
            parts.append(Text(""))
        return Group(*parts)
    if width is not None:
        item = fit(item, width)
    boxed = item.frame == "boxed"
    table = RichTable(
        title=Text(item.title, style="bold"),
        title_justify="left",
        box=box.HEAVY_HEAD if boxed else box.SIMPLE_HEAD,
        show_edge=boxed,
        show_lines=boxed,
        pad_edge=boxed,
    )
    for col in item.columns:
        numeric = col.justify == "right"
        # Numbers never wrap; headers keep their width; long text (formulas, reasons) folds.
        table.add_column(
            col.header,
            justify="right" if numeric else "left",
            overflow="fold",
            no_wrap=numeric,
            min_width=len(col.header) if numeric else None,
        )
    depths = item.depths or (0,) * len(item.rows)
    for cells, depth in zip(item.rows, depths):
        first = "  " * depth + cells[0]
        table.add_row(*(Text(c) for c in (first, *cells[1:])))
    if not item.footer:
        return table
    return Group(table, *(Text(line) for line in item.footer))


def render_text(item: Table | Document | str, *, width: int = 120) -> str:
    """Plain text (no colours) at a fixed width: what tests and pipes get."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False)
    console.print(to_rich(item, width))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def print_rich(item: Table | Document | str, *, console: Console | None = None) -> None:
    """Print to the terminal, with colours when it supports them."""
    console = console or Console()
    console.print(to_rich(item, console.width))
