"""A treemap as inline SVG: nested rectangles whose areas are a model's parameters, bytes or FLOPs.

The layout is the squarified treemap of Bruls, Huizing and van Wijk (2000): children are laid
out largest first, in rows along the shorter side of the free rectangle, a row being closed
when adding the next child would make its worst aspect ratio worse. This keeps rectangles
close to square, so that areas can be compared by eye.

Every module is a ``<rect class="module">`` and every tensor a ``<rect class="leaf">``, each
with ``data-path`` (the module's path), ``data-value`` (its figure for the metric) and
``data-i`` (the module's index, for its explanation); the leaves' values add up to the total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from paramscope.analysis.treemap import Leaf, Node, TreemapView

__all__ = ["Rect", "squarify", "treemap_svg"]


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float


def _worst(row: Sequence[float], side: float) -> float:
    s = sum(row)
    if s <= 0 or side <= 0:
        return float("inf")
    big, small = max(row), min(row)
    return max(side * side * big / (s * s), (s * s) / (side * side * small))


def squarify(values: Sequence[float], box: Rect) -> list[Rect]:
    """Rectangles for ``values`` (all > 0, largest first) filling ``box``, in the same order.

    Example:
        >>> rs = squarify([6, 6, 4, 3, 2, 2, 1], Rect(0, 0, 6, 4))
        >>> round(sum(r.w * r.h for r in rs), 6), [round(r.w * r.h, 6) for r in rs][:2]
        (24.0, [6.0, 6.0])
    """
    total = sum(values)
    if total <= 0 or box.w <= 0 or box.h <= 0:
        return [Rect(box.x, box.y, 0, 0) for _ in values]
    scale = box.w * box.h / total
    areas = [v * scale for v in values]
    out: list[Rect] = []
    x, y, w, h = box.x, box.y, box.w, box.h
    i = 0
    while i < len(areas):
        side = min(w, h)
        row = [areas[i]]
        j = i + 1
        while j < len(areas) and _worst(row + [areas[j]], side) <= _worst(row, side):
            row.append(areas[j])
            j += 1
        s = sum(row)
        if w >= h:  # a column on the left, as wide as the row's area needs
            cw = s / h if h else 0
            cy = y
            for a in row:
                ch = a / cw if cw else 0
                out.append(Rect(x, cy, cw, ch))
                cy += ch
            x, w = x + cw, w - cw
        else:  # a row on top
            rh = s / w if w else 0
            cx = x
            for a in row:
                cw2 = a / rh if rh else 0
                out.append(Rect(cx, y, cw2, rh))
                cx += cw2
            y, h = y + rh, h - rh
        i = j
    return out


def _leaf_value(leaf: Leaf, metric: str) -> int:
    v = {"params": leaf.params, "bytes": leaf.n_bytes, "flops": leaf.flops}[metric]
    return v or 0


def _node_value(node: Node, metric: str) -> int:
    v = {"params": node.params, "bytes": node.n_bytes, "flops": node.flops}[metric]
    return v or 0


_HEADER = 14.0  # px kept for a module's label when it is large enough to show one
_PAD = 2.0


def treemap_svg(tm: TreemapView, metric: str, *, width: int = 960, height: int = 540) -> str:
    """The treemap of one metric as an ``<svg>`` element.

    Example:
        >>> from paramscope.analysis.treemap import build_treemap
        >>> from paramscope.analysis.view import build_view
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> a = Anatomy("m", "torch", (Layer("fc", "Linear", "fc", (Tensor("weight", (4, 8)), Tensor("bias", (4,)))),))
        >>> svg = treemap_svg(build_treemap(build_view(a)), "params")
        >>> svg.count('class="leaf"'), 'data-value="32"' in svg
        (2, True)
    """
    parts: list[str] = [
        f'<svg class="treemap" data-metric="{metric}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="none" role="img" aria-label="treemap of {escape(metric)}">'
    ]
    # (kind, item, box): kind "node" lays out a module's contents, "leaves" draws a box's tensors.
    items: list[tuple[int | None, Rect]] = []
    roots = [r for r in tm.roots if _node_value(tm.nodes[r], metric) > 0]
    top = tm.top_flops if metric == "flops" else 0
    values = [float(_node_value(tm.nodes[r], metric)) for r in roots]
    order = sorted(range(len(roots)), key=lambda k: -values[k])
    entries: list[tuple[int | None, float]] = [(roots[k], values[k]) for k in order]
    if top:
        entries.append((None, float(top)))
        entries.sort(key=lambda e: -e[1])
    for (root, _), rect in zip(entries, squarify([v for _, v in entries], Rect(0, 0, width, height))):
        items.append((root, rect))
    stack = list(reversed(items))
    while stack:
        index, box = stack.pop()
        if index is None:
            parts.append(_rect("leaf top", box, "", "", top, "", "(outside every module)", "", -1))
            continue
        node = tm.nodes[index]
        label = f"{node.path or node.label} ({node.type})" if node.type else (node.path or node.label)
        parts.append(_rect("module", box, node.path, "", _node_value(node, metric), "", label,
                           "" if node.called else "not called", node.index))
        if box.w > 40 and box.h > 2 * _HEADER:
            parts.append(f'<text x="{box.x + 3:.1f}" y="{box.y + 11:.1f}" class="label">'
                         f"{escape(_fit(node.label or node.path, box.w))}</text>")
            inner = Rect(box.x + _PAD, box.y + _HEADER, max(0.0, box.w - 2 * _PAD), max(0.0, box.h - _HEADER - _PAD))
        else:
            inner = Rect(box.x + 0.5, box.y + 0.5, max(0.0, box.w - 1), max(0.0, box.h - 1))
        content: list[tuple[object, float]] = []
        for leaf in node.leaves:
            v = _leaf_value(leaf, metric)
            if v > 0:
                content.append((leaf, float(v)))
        for c in node.children:
            v = _node_value(tm.nodes[c], metric)
            if v > 0:
                content.append((c, float(v)))
        content.sort(key=lambda e: -e[1])
        rects = squarify([v for _, v in content], inner)
        children: list[tuple[int | None, Rect]] = []
        for (item, area), rect in zip(content, rects):
            if isinstance(item, Leaf):
                role = item.role.value if item.role is not None else "compute"
                name = item.name or "own FLOPs"
                title = f"{node.path}/{name}" if node.path else name
                parts.append(_rect("leaf", rect, node.path, item.name, int(area), role, title, item.dtype, node.index))
            else:
                assert isinstance(item, int)
                children.append((item, rect))
        stack.extend(reversed(children))
    parts.append("</svg>")
    return "".join(parts)


def _fit(text: str, w: float) -> str:
    room = max(1, int(w / 6.5))
    return text if len(text) <= room else text[: max(1, room - 1)] + "…"


def _rect(cls: str, r: Rect, path: str, tensor: str, value: int, role: str, title: str, extra: str, index: int) -> str:
    attrs = [
        f'class="{cls}"', f'x="{r.x:.2f}"', f'y="{r.y:.2f}"', f'width="{r.w:.2f}"', f'height="{r.h:.2f}"',
        f'data-path="{escape(path)}"', f'data-value="{value}"', f'data-i="{index}"',
    ]
    if tensor:
        attrs.append(f'data-tensor="{escape(tensor)}"')
    if role:
        attrs.append(f'data-role="{escape(role)}"')
    if extra and cls.startswith("leaf"):
        attrs.append(f'data-dtype="{escape(extra)}"')
    note = f" — {extra}" if extra and cls == "module" else ""
    return f"<rect {' '.join(attrs)}><title>{escape(title)}: {value:,}{escape(note)}</title></rect>"
