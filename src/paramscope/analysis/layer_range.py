"""Keras's ``layer_range``: the summary rows from one top-level layer to another, by name.

``FROM`` and ``TO`` are regular expressions matched (``re.match``) against the top-level layers'
names; the rows kept run from the first layer ``FROM`` matches to the last layer ``TO`` matches,
both included, with their nested rows, as Keras's ``summary(layer_range=...)`` does. The totals
stay those of the whole model, as in Keras.
"""

from __future__ import annotations

import re

from paramscope.analysis.view_types import Row
from paramscope.core.errors import ParamscopeError

__all__ = ["select_layer_range", "parse_layer_range"]


def parse_layer_range(text: str) -> tuple[str, str]:
    """``"dense:dense_1"`` -> ``("dense", "dense_1")``; one name alone selects that layer.

    Example:
        >>> parse_layer_range("conv.*:pool"), parse_layer_range("dense")
        (('conv.*', 'pool'), ('dense', 'dense'))
    """
    start, sep, end = text.partition(":")
    if not start or (sep and not end):
        raise ParamscopeError(f"--layers {text!r} must be FROM:TO (two layer names or patterns), e.g. dense:dense_2")
    return start, (end if sep else start)


def select_layer_range(rows: tuple[Row, ...], start: str, end: str) -> tuple[Row, ...]:
    """The rows from the first top-level layer matching ``start`` to the last matching ``end``.

    Raises:
        ParamscopeError: a pattern is not a valid regular expression, or matches no layer.
    """
    try:
        lo, hi = re.compile(start), re.compile(end)
    except re.error as e:
        raise ParamscopeError(f"--layers: {e.pattern!r} is not a valid pattern ({e})") from None
    top = [i for i, r in enumerate(rows) if r.depth == 0]
    names = [rows[i].layer.name for i in top]
    lower = [k for k, name in enumerate(names) if lo.match(name)]
    upper = [k for k, name in enumerate(names) if hi.match(name)]
    if not lower or not upper:
        missing = start if not lower else end
        raise ParamscopeError(
            f"--layers: no top-level layer's name matches {missing!r}; the layers are: {', '.join(names[:12])}"
            + (" ..." if len(names) > 12 else "")
        )
    first, last = (min(lower), max(upper)) if min(lower) <= max(upper) else (min(upper), max(lower))
    begin = top[first]
    stop = top[last + 1] if last + 1 < len(top) else len(rows)
    return rows[begin:stop]
