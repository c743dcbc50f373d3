"""Checked budgets as one line each: ``params  2,140,752 <= 3,000,000  ok``."""

from __future__ import annotations

import json

from paramscope.analysis.budget import BUDGET_KEYS, Verdict
from paramscope.render.fmt import count, n_bytes, si

__all__ = ["SCHEMA", "render_budget_text", "render_budget_json"]

SCHEMA = "paramscope-check/1"


def _figure(key: str, value: int | None) -> str:
    if value is None:
        return "unknown"
    if BUDGET_KEYS[key][1]:
        return f"{n_bytes(value)} ({value:,} B)"
    return f"{count(value)} ({si(value)})" if value >= 1000 else count(value)


def render_budget_text(target: str, verdicts: tuple[Verdict, ...]) -> str:
    """One line per budget, then the verdict.

    Example:
        >>> from paramscope.analysis.budget import Budget, Verdict
        >>> print(render_budget_text("m.keras", (Verdict(Budget("params", 10), 12),)), end="")
        params: 12 > 10: over budget by 2
        m.keras: 1 of 1 budgets exceeded
    """
    lines = []
    for v in verdicts:
        key, limit = v.budget.key, v.budget.limit
        if v.value is None:
            lines.append(f"{key}: unknown, cannot be checked against {_figure(key, limit)}: "
                         f"{BUDGET_KEYS[key][0]} are not known for this source")
        elif v.ok:
            lines.append(f"{key}: {_figure(key, v.value)} <= {_figure(key, limit)}: ok")
        else:
            over = v.value - limit
            lines.append(f"{key}: {_figure(key, v.value)} > {_figure(key, limit)}: over budget by "
                         f"{_figure(key, over)}")
    failed = sum(not v.ok for v in verdicts)
    verdict = "within every budget" if not failed else f"{failed} of {len(verdicts)} budgets exceeded"
    lines.append(f"{target}: {verdict}")
    return "\n".join(lines) + "\n"


def render_budget_json(target: str, verdicts: tuple[Verdict, ...]) -> str:
    doc = {
        "schema": SCHEMA,
        "target": target,
        "ok": all(v.ok for v in verdicts),
        "budgets": [
            {"key": v.budget.key, "limit": v.budget.limit, "value": v.value, "ok": v.ok} for v in verdicts
        ],
    }
    return json.dumps(doc, indent=2) + "\n"
