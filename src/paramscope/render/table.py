"""A neutral table (columns, rows, footer lines) that text, Markdown and HTML all draw."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Column", "Table", "Document"]


@dataclass(frozen=True, slots=True)
class Column:
    """A column header and how the text renderer may treat it.

    Attributes:
        header: the header.
        justify: ``"left"`` or ``"right"`` (numbers).
        drop: 0 never left out; otherwise a narrow terminal leaves out columns with higher
            numbers first (a column whose every cell is ``0`` or empty goes before any of them).
        wrap: cells may wrap between words (never inside one); otherwise they stay on one line.
        min_width: for a wrapping column, the width it keeps when there is room for it.
    """

    header: str
    justify: str = "left"
    drop: int = 0
    wrap: bool = False
    min_width: int = 0


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of already formatted cells, plus the lines shown under the table.

    Attributes:
        title: shown above the table.
        columns: the column headers.
        rows: one tuple of cells per row; ``depth`` per row in :attr:`depths` for indentation.
        depths: nesting depth of each row (the first cell is indented by it).
        footer: lines shown after the table (totals, memory, notes).
        frame: ``"simple"`` (rules under the header) or ``"boxed"`` (Keras 3's look).
    """

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    depths: tuple[int, ...] = ()
    footer: tuple[str, ...] = ()
    frame: str = "simple"


@dataclass(frozen=True, slots=True)
class Document:
    """A sequence of tables and paragraphs: what the explain view produces."""

    title: str
    blocks: tuple[Table | str, ...] = field(default=())
