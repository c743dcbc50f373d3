"""One record per summary row, with raw numbers: what CSV files and pandas DataFrames hold.

Formats a finished :class:`~paramscope.analysis.view.ReportView`; computes nothing. Counts are
integers, unknown ones ``None`` (an empty CSV cell, a missing value in pandas).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from paramscope.analysis.view import ReportView
from paramscope.core.errors import MissingDependencyError
from paramscope.render import fmt

__all__ = ["COLUMNS", "layer_records", "render_csv", "to_pandas"]

#: The record's fields, in order.
COLUMNS = (
    "path", "name", "type", "depth", "repeat", "each", "output_shape", "params", "trainable",
    "non_trainable", "unknown_role", "buffers", "bytes", "dtypes", "flops", "macs", "formula",
    "tied_to", "complete",
)  # fmt: skip


def layer_records(view: ReportView) -> list[dict[str, Any]]:
    """The rows of the summary as dicts (keys: :data:`COLUMNS`).

    Example:
        >>> from paramscope.analysis.view import build_view
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> v = build_view(Anatomy("m", "torch", (Layer("fc", "Linear", "fc", (Tensor("weight", (2, 3)),)),)))
        >>> r = layer_records(v)[0]
        >>> r["path"], r["params"], r["bytes"], r["dtypes"]
        ('fc', 6, 24, 'float32')
    """
    out = []
    for row in view.rows:
        lv, t, c = row.layer, row.totals, row.compute
        out.append({
            "path": lv.path,
            "name": row.label,
            "type": lv.type,
            "depth": row.depth,
            "repeat": row.repeat,
            "each": row.each,
            "output_shape": fmt.shapes(lv.output_shapes) if lv.output_shapes is not None else None,
            "params": t.params if t.counts_complete else None,
            "trainable": t.trainable,
            "non_trainable": t.non_trainable,
            "unknown_role": t.unknown_role,
            "buffers": t.buffers,
            "bytes": t.n_bytes if t.bytes_complete else None,
            "dtypes": ",".join(d.dtype for d in t.by_dtype),
            "flops": None if c is None else c.flops,
            "macs": None if c is None else c.macs,
            "formula": lv.formula if not lv.n_children else "",
            "tied_to": ",".join(owner for _, owner in row.tied),
            "complete": t.complete,
        })  # fmt: skip
    return out


def render_csv(view: ReportView) -> str:
    """The summary as CSV: a header line, then one line per row (unknown counts empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for rec in layer_records(view):
        writer.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    return buf.getvalue()


def to_pandas(view: ReportView) -> Any:
    """The summary as a ``pandas.DataFrame``, one row per summary row, integer columns nullable."""
    try:
        import pandas as pd
    except ModuleNotFoundError:
        raise MissingDependencyError("pandas", "pandas", "a DataFrame of the summary") from None
    frame = pd.DataFrame(layer_records(view), columns=list(COLUMNS))
    for col in ("params", "trainable", "non_trainable", "unknown_role", "buffers", "bytes", "flops", "macs"):
        frame[col] = frame[col].astype("Int64")
    return frame
