"""Terminal output with rich: tables and documents rendered to a string or a console.

Column widths are chosen here, not by rich, so that no name is ever cut inside a word: a
column that wraps breaks only between words, every other column keeps its cells on one line,
and when the width cannot hold every column the least important ones are left out (a column
of zeros first) and a footer line names them.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import replace

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table as RichTable
from rich.text import Text

from paramscope.render.table import Document, Table

__all__ = ["DEFAULT_WIDTH", "fit", "to_rich", "render_text", "print_rich"]

#: The width of text written anywhere but a terminal (a pipe, a file, a test).
DEFAULT_WIDTH = 120

# rich's SIMPLE_HEAD with a rule of "-" instead of box drawing, for terminals without it.
_ASCII_SIMPLE_HEAD = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def _cells(table: Table, i: int) -> list[str]:
    depths = table.depths or (0,) * len(table.rows)
    if i == 0:
        return ["  " * d + r[0] for r, d in zip(table.rows, depths)]
    return [r[i] for r in table.rows]


def _natural(table: Table, i: int) -> int:
    return max([len(table.columns[i].header), *(len(c) for c in _cells(table, i))])


def _minimum(table: Table, i: int) -> int:
    col = table.columns[i]
    if not col.wrap:
        return _natural(table, i)
    # The longest word, indented as its row is, must fit on one line.
    words = [len(w) for w in col.header.split()]
    for cell in _cells(table, i):
        stripped = cell.lstrip(" ")
        indent = len(cell) - len(stripped)  # every line of a nested row is indented
        words.extend(indent + len(w) for w in stripped.split())
    return max(max(words, default=1), min(_natural(table, i), col.min_width))


def _overhead(table: Table) -> int:
    # Between two columns: one space of padding each side and the (blank or ruled) separator;
    # a boxed frame adds its two edges with their padding.
    n = len(table.columns)
    return 3 * (n - 1) + (4 if table.frame == "boxed" else 0)


def _all_zero(table: Table, i: int) -> bool:
    return all(c in ("0", "") for c in _cells(table, i))


def _without(table: Table, i: int) -> Table:
    return replace(
        table,
        columns=table.columns[:i] + table.columns[i + 1 :],
        rows=tuple(r[:i] + r[i + 1 :] for r in table.rows),
    )


def fit(table: Table, width: int) -> tuple[Table, tuple[int, ...]]:
    """The table without the columns a text of ``width`` has no room for, and each column's width.

    Columns are left out while the narrowest layout (every wrapping column at its longest
    word, the others whole) is wider than ``width``: first a column whose cells are all zero,
    then by :attr:`Column.drop`, highest first. A footer line names what was left out. The
    room that remains goes to the wrapping columns, the one that needs least first, up to
    their natural width.
    """
    dropped: list[str] = []
    while sum(_minimum(table, i) for i in range(len(table.columns))) + _overhead(table) > width:
        optional = [(_all_zero(table, i), c.drop, i) for i, c in enumerate(table.columns) if c.drop]
        if not optional:
            break
        zero, _, i = max(optional)
        dropped.append(table.columns[i].header + (" (all 0)" if zero else ""))
        table = _without(table, i)
    widths = [_minimum(table, i) for i in range(len(table.columns))]
    room = width - sum(widths) - _overhead(table)
    # The smallest shortfall first: as many columns as possible end up on one line each.
    wanting = sorted((_natural(table, i) - widths[i], i) for i, c in enumerate(table.columns) if c.wrap)
    for need, i in wanting:
        grow = min(room, need)
        if grow > 0:
            widths[i] += grow
            room -= grow
    if dropped:
        note = f"(columns left out for this width: {', '.join(dropped)}; see --width or --format json)"
        table = replace(table, footer=(*table.footer, note))
    return table, tuple(widths)


def _rich_table(item: Table, width: int | None, ascii_only: bool = False) -> RenderableType:
    widths: tuple[int | None, ...] = (None,) * len(item.columns)
    if width is not None:
        item, fitted = fit(item, width)
        widths = fitted
    boxed = item.frame == "boxed"
    table = RichTable(
        title=Text(item.title, style="bold"),
        title_justify="left",
        box=(box.ASCII2 if boxed else _ASCII_SIMPLE_HEAD) if ascii_only else (box.HEAVY_HEAD if boxed else box.SIMPLE_HEAD),
        show_edge=boxed,
        show_lines=boxed,
        pad_edge=boxed,
    )
    for col, w in zip(item.columns, widths):
        table.add_column(
            col.header,
            justify="right" if col.justify == "right" else "left",
            overflow="fold",
            no_wrap=not col.wrap,
            width=w,
        )
    depths = item.depths or (0,) * len(item.rows)
    first_width = widths[0] if widths else None
    for cells, depth in zip(item.rows, depths):
        first: RenderableType
        indent = "  " * depth
        if depth and first_width is not None and len(indent) + len(cells[0]) > first_width:
            # Wrapped here, between words, each line under the row's indentation (rich would
            # start the second line at the edge; a Padding per row costs rich a table each).
            lines = textwrap.wrap(cells[0], max(1, first_width - len(indent)), break_long_words=False,
                                  break_on_hyphens=False)
            first = Text("\n".join(indent + line for line in lines))
        elif depth and first_width is None:
            first = Padding(Text(cells[0]), (0, 0, 0, 2 * depth))
        else:
            first = Text(indent + cells[0])
        table.add_row(first, *(Text(c) for c in cells[1:]))
    if not item.footer:
        return table
    return Group(table, *(Text(line) for line in item.footer))



def to_rich(item: Table | Document | str, width: int | None = None, ascii_only: bool = False) -> RenderableType:
    """A rich renderable for a table, a document or a paragraph (names never parsed as markup).

    With a ``width``, columns are sized and left out to fit it (see :func:`fit`); with
    ``ascii_only``, tables are ruled with ``-`` and ``+`` instead of box-drawing characters.
    """
    if isinstance(item, str):
        return Text(item)
    if isinstance(item, Document):
        parts: list[RenderableType] = [Text(item.title, style="bold")] if item.title else []
        for block in item.blocks:
            parts.append(to_rich(block, width, ascii_only))
            parts.append(Text(""))
        return Group(*parts)
    return _rich_table(item, width, ascii_only)


def render_text(item: Table | Document | str, *, width: int = DEFAULT_WIDTH, ascii_only: bool = False) -> str:
    """Plain text (no colours) at a fixed width: what tests and pipes get."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False)
    console.print(to_rich(item, width, ascii_only))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def print_rich(item: Table | Document | str, *, console: Console | None = None, ascii_only: bool = False) -> None:
    """Print to the terminal, with colours when it supports them."""
    console = console or Console()
    console.print(to_rich(item, console.width, ascii_only))
