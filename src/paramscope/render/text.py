"""Terminal output with rich: tables and documents rendered to a string or a console."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text

from paramscope.render.table import Document, Table

__all__ = ["to_rich", "render_text", "print_rich"]


def to_rich(item: Table | Document | str) -> RenderableType:
    """A rich renderable for a table, a document or a paragraph (names never parsed as markup)."""
    if isinstance(item, str):
        return Text(item)
    if isinstance(item, Document):
        parts: list[RenderableType] = [Text(item.title, style="bold")] if item.title else []
        for block in item.blocks:
            parts.append(to_rich(block))
            parts.append(Text(""))
        return Group(*parts)
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
    console.print(to_rich(item))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def print_rich(item: Table | Document | str, *, console: Console | None = None) -> None:
    """Print to the terminal, with colours when it supports them."""
    (console or Console()).print(to_rich(item))
