"""A standalone HTML page: the summary table, then each layer's tensors in collapsible details."""

from __future__ import annotations

from html import escape

from paramscope.render.table import Document, Table

__all__ = ["render_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:bold;white-space:pre-wrap;padding:.3em 0}
ul.footer{list-style:none;padding:0} pre{white-space:pre-wrap}
"""


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


def render_html(*items: Table | Document | str, title: str = "paramscope") -> str:
    """A complete HTML page holding the given tables and documents, all text escaped."""
    body = "".join(_block(i) for i in items)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>{body}</body></html>\n"
    )
