"""Markdown output: GitHub-flavoured tables, every cell escaped for Markdown and HTML.

Text in the cells has already been made display-safe by the view (no control characters);
here it is escaped so that a name such as ``<img src=x onerror=...>`` or ``**bold**`` stays
text once the Markdown is rendered (GitHub, python-markdown, MkDocs).
"""

from __future__ import annotations

from paramscope.render.table import Document, Table

__all__ = ["render_markdown", "escape"]

# Backslash first, so that the escapes added after it are not escaped again. HTML's three
# become entities (a backslash does not stop a raw HTML tag in every renderer); the rest are
# Markdown's inline syntax: code, emphasis, links and images, table cells, strikethrough (a
# heading needs "#" at the start of a line, where no escaped text ever stands).
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SYNTAX = "`*_[]|~"
_TABLE = str.maketrans({**_ENTITIES, **{ch: "\\" + ch for ch in _SYNTAX}, "\\": "\\\\"})


def escape(text: str) -> str:
    r"""Text shown literally by any Markdown renderer.

    Example:
        >>> escape("<img src=x> | **b** _i_ [l](u)")
        '&lt;img src=x&gt; \\| \\*\\*b\\*\\* \\_i\\_ \\[l\\](u)'
    """
    return text.translate(_TABLE)


def _cell(text: str) -> str:
    return escape(text).replace("\n", "<br>")


def _table(t: Table) -> str:
    lines = []
    title = t.title.split("\n")
    lines.append(f"**{_cell(title[0])}**")
    lines.extend(_cell(x.strip()) for x in title[1:])
    lines.append("")
    lines.append("| " + " | ".join(_cell(c.header) for c in t.columns) + " |")
    lines.append("|" + "|".join("---:" if c.justify == "right" else "---" for c in t.columns) + "|")
    depths = t.depths or (0,) * len(t.rows)
    for cells, depth in zip(t.rows, depths):
        first = "&nbsp;&nbsp;" * depth + _cell(cells[0])
        lines.append("| " + " | ".join((first, *(_cell(c) for c in cells[1:]))) + " |")
    if t.footer:
        lines.append("")
        lines.extend(f"- {_cell(f)}" for f in t.footer)
    return "\n".join(lines)


def render_markdown(item: Table | Document | str) -> str:
    """Markdown for a table, a document or a paragraph."""
    if isinstance(item, str):
        return "\n".join(_cell(x) + "  " for x in item.splitlines()).rstrip() + "\n"
    if isinstance(item, Table):
        return _table(item) + "\n"
    parts = [f"## {_cell(item.title)}", ""] if item.title else []
    for block in item.blocks:
        parts.append(render_markdown(block))
    return "\n".join(parts)
