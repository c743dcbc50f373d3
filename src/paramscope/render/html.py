"""HTML: a standalone page, or a fragment for notebooks, every rule scoped to the report.

Every CSS selector starts with the report's root class, so a report shown inside a notebook
(or any page) restyles nothing around it. All text is escaped.
"""

from __future__ import annotations

from html import escape

from paramscope.render.table import Document, Table

__all__ = ["ROOT_CLASS", "render_html", "render_html_fragment", "pre_fragment"]

#: The class of the element that holds a report; every style rule is scoped to it.
ROOT_CLASS = "paramscope-report"

_RULES = (
    ("", "font-family:system-ui,sans-serif;color:#222;background:#fff;line-height:1.4"),
    (" table", "border-collapse:collapse;margin:.5em 0 1em"),
    (" th, {root} td", "padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top"),
    (" td.r, {root} th.r", "text-align:right;font-variant-numeric:tabular-nums"),
    (" caption", "text-align:left;font-weight:bold;white-space:pre-wrap;padding:.3em 0"),
    (" ul.footer", "list-style:none;padding:0"),
    (" pre", "white-space:pre-wrap;font-family:ui-monospace,monospace"),
)
_STYLE = "".join(
    f".{ROOT_CLASS}{sel.format(root='.' + ROOT_CLASS)}{{{body}}}" for sel, body in _RULES
)


def _table(t: Table) -> str:
    head = "".join(
        f'<th class="{"r" if c.justify == "right" else "l"}">{escape(c.header)}</th>' for c in t.columns
    )
    depths = t.depths or (0,) * len(t.rows)
    body = []
    for cells, depth in zip(t.rows, depths):
        tds = []
        for i, (c, col) in enumerate(zip(cells, t.columns)):
            pad = f' style="padding-left:{0.6 + 1.2 * depth:.1f}em"' if i == 0 and depth else ""
            cls = "r" if col.justify == "right" else "l"
            tds.append(f'<td class="{cls}"{pad}>{escape(c)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    footer = ""
    if t.footer:
        footer = '<ul class="footer">' + "".join(f"<li>{escape(f)}</li>" for f in t.footer) + "</ul>"
    return (
        f"<table><caption>{escape(t.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{footer}"
    )


def _block(item: Table | Document | str) -> str:
    if isinstance(item, str):
        return f"<pre>{escape(item)}</pre>"
    if isinstance(item, Table):
        return _table(item)
    return f"<h2>{escape(item.title)}</h2>" + "".join(_block(b) for b in item.blocks)


def render_html_fragment(*items: Table | Document | str) -> str:
    """The report as one element with its own scoped style: what a notebook cell shows.

    Example:
        >>> render_html_fragment("a<b").startswith('<div class="paramscope-report"><style>.paramscope-report{')
        True
    """
    body = "".join(_block(i) for i in items)
    return f'<div class="{ROOT_CLASS}"><style>{_STYLE}</style>{body}</div>'


def pre_fragment(text: str) -> str:
    """Already rendered text (a text, Markdown or JSON report) as an escaped ``<pre>`` block."""
    return render_html_fragment(text)


def render_html(*items: Table | Document | str, title: str = "paramscope") -> str:
    """A complete HTML page holding the given tables and documents, all text escaped."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head>\n"
        f'<body style="margin:2em">{render_html_fragment(*items)}</body></html>\n'
    )
