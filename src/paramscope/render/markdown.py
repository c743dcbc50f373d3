"""Markdown output: GitHub-flavoured tables, cells escaped."""

from __future__ import annotations

from paramscope.render.table import Document, Table

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


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
