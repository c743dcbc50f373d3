"""A :class:`~paramscope.analysis.diff.Diff` as text, Markdown or JSON (``paramscope-diff/1``)."""

from __future__ import annotations

import json
from typing import Any

from paramscope.analysis.diff import Change, Diff, Side
from paramscope.analysis.totals import Totals
from paramscope.render.fmt import count, n_bytes, safe, shape

__all__ = ["SCHEMA", "diff_to_dict", "render_diff_json", "render_diff_text", "render_diff_markdown"]

SCHEMA = "paramscope-diff/1"


def _side_dict(s: Side) -> dict[str, Any]:
    return {
        "name": s.name,
        "shape": None if s.shape is None else list(s.shape),
        "dtype": s.dtype,
        "role": s.role.value,
        "n_bytes": s.n_bytes,
    }


def _change_dict(c: Change) -> dict[str, Any]:
    return {"name": c.a.name, "a": _side_dict(c.a), "b": _side_dict(c.b), "what": list(c.what), "note": c.note}


def _totals_dict(t: Totals) -> dict[str, Any]:
    return {
        "params": t.params, "trainable": t.trainable, "non_trainable": t.non_trainable,
        "buffers": t.buffers, "n_bytes": t.n_bytes, "n_tensors": t.n_tensors, "complete": t.complete,
    }


def diff_to_dict(d: Diff) -> dict[str, Any]:
    """The JSON document of a diff (documented in docs/json-schema.md)."""
    return {
        "schema": SCHEMA,
        "a": d.a_name,
        "b": d.b_name,
        "same": d.same,
        "n_same": d.n_same,
        "added": [_side_dict(s) for s in d.added],
        "removed": [_side_dict(s) for s in d.removed],
        "changed": [_change_dict(c) for c in d.changed],
        "renamed": [_change_dict(c) for c in d.renamed],
        "tied": list(d.tied),
        "unsaved": list(d.unsaved),
        "totals": {"a": _totals_dict(d.totals_a), "b": _totals_dict(d.totals_b)},
        "notes": list(d.notes),
    }


def render_diff_json(d: Diff) -> str:
    return json.dumps(diff_to_dict(d), indent=2) + "\n"


def _desc(s: Side) -> str:
    return f"{shape(s.shape)} {safe(s.dtype)} {s.role.value} {n_bytes(s.n_bytes)}"


def _change_line(c: Change) -> str:
    parts = []
    if "shape" in c.what:
        parts.append(f"shape {shape(c.a.shape)} -> {shape(c.b.shape)}")
    if "dtype" in c.what:
        parts.append(f"dtype {safe(c.a.dtype)} -> {safe(c.b.dtype)}")
    if "role" in c.what:
        parts.append(f"role {c.a.role.value} -> {c.b.role.value}")
    if "bytes" in c.what:
        parts.append(f"bytes {n_bytes(c.a.n_bytes)} -> {n_bytes(c.b.n_bytes)}")
    return ", ".join(parts) or "unchanged"


def _totals_rows(d: Diff) -> list[tuple[str, str, str]]:
    a, b = d.totals_a, d.totals_b
    rows = [
        ("tensors", count(a.n_tensors), count(b.n_tensors)),
        ("params", count(a.params) + ("" if a.complete else "+"), count(b.params) + ("" if b.complete else "+")),
        ("trainable", count(a.trainable), count(b.trainable)),
        ("non-trainable", count(a.non_trainable), count(b.non_trainable)),
        ("buffers", count(a.buffers), count(b.buffers)),
        ("bytes", n_bytes(a.n_bytes), n_bytes(b.n_bytes)),
    ]
    return rows


def _verdict(d: Diff) -> str:
    if d.same:
        return f"same: {d.n_same:,} tensors match" + (f" ({len(d.tied)} tied names)" if d.tied else "")
    return (f"different: {len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed, "
            f"{len(d.renamed)} renamed, {d.n_same:,} the same")


def render_diff_text(d: Diff) -> str:
    """Plain text: the verdict, then each difference on one line, then totals side by side."""
    out = [f"a: {safe(d.a_name)}", f"b: {safe(d.b_name)}", _verdict(d), ""]
    for title, sides, sign in (("added (only in b)", d.added, "+"), ("removed (only in a)", d.removed, "-")):
        if sides:
            out.append(f"{title}:")
            out.extend(f"  {sign} {safe(s.name)}  {_desc(s)}" for s in sides)
    if d.changed:
        out.append("changed:")
        for c in d.changed:
            out.append(f"  ~ {safe(c.a.name)}  {_change_line(c)}" + (f"  ({safe(c.note)})" if c.note else ""))
    if d.renamed:
        out.append("renamed (matched by position and shape):")
        for c in d.renamed:
            extra = "" if not c.what else f"  {_change_line(c)}"
            out.append(f"  > {safe(c.a.name)} -> {safe(c.b.name)}{extra}")
    if d.tied:
        out.append("tied (one storage under another name, counted once):")
        out.extend(f"  = {safe(n)}" for n in d.tied)
    if d.unsaved:
        out.append("not saved (non-persistent buffers of a live module, in no checkpoint):")
        out.extend(f"  . {safe(n)}" for n in d.unsaved)
    rows = _totals_rows(d)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "a", "")])
    w2 = max(len(r[2]) for r in rows + [("", "", "b")])
    out += ["", f"{'totals':<{w0}}  {'a':>{w1}}  {'b':>{w2}}"]
    out += [f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]:>{w2}}" for r in rows]
    out += [f"note: {safe(n)}" for n in d.notes]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    # HTML's own escapes for < > & (python-markdown does not honour a backslash before them),
    # a backslash before the characters Markdown gives a meaning.
    out = safe(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_[]|#":
        out = out.replace(ch, "\\" + ch)
    return out


def render_diff_markdown(d: Diff) -> str:
    """A Markdown report: verdict, a table of differences, totals side by side."""
    out = [f"**a:** {_md(d.a_name)}  ", f"**b:** {_md(d.b_name)}", "", f"**{_verdict(d)}**", ""]
    rows: list[tuple[str, str, str]] = []
    rows += [("added", _md(s.name), _md(_desc(s))) for s in d.added]
    rows += [("removed", _md(s.name), _md(_desc(s))) for s in d.removed]
    rows += [("changed", _md(c.a.name), _md(_change_line(c))) for c in d.changed]
    rows += [("renamed", f"{_md(c.a.name)} → {_md(c.b.name)}", _md(_change_line(c))) for c in d.renamed]
    rows += [("tied", _md(n), "shares storage with a matched tensor") for n in d.tied]
    rows += [("not saved", _md(n), "non-persistent buffer, in no checkpoint") for n in d.unsaved]
    if rows:
        out += ["| | tensor | difference |", "|---|---|---|"]
        out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
        out.append("")
    out += ["| totals | a | b |", "|---|---:|---:|"]
    out += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in _totals_rows(d)]
    out += [f"\n> {_md(n)}" for n in d.notes]
    return "\n".join(out) + "\n"
