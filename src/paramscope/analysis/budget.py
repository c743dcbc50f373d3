"""Budgets for CI: is the model within its parameter, byte and FLOP limits?

A budget is read from the command line (``--max-params 7G``) or from ``pyproject.toml``::

    [tool.paramscope]
    max-params = "150M"
    max-bytes = "600MiB"
    max-flops = "2T"

Counts take SI suffixes (``k``/``K`` = 10^3, ``M`` = 10^6, ``G`` or ``B`` (billion) = 10^9,
``T`` = 10^12, ``P``);
byte sizes take binary ones (``KiB`` = 1,024, ``MiB``, ``GiB``, ``TiB``) or decimal ones (``kB``
= 1,000, ``MB``, ``GB``, ``TB``), or plain bytes. A figure that cannot be known (FLOPs of a file
read without a forward pass) does not pass: a budget that cannot be checked is reported as such.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paramscope.analysis.totals import totals
from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import ParamscopeError, TargetError

__all__ = ["BUDGET_KEYS", "Budget", "Verdict", "parse_quantity", "check_budgets", "budgets_from_pyproject"]

#: The budgets there are: key -> (what it limits, whether it is a byte size).
BUDGET_KEYS: Mapping[str, tuple[str, bool]] = {
    "params": ("parameters", False),
    "bytes": ("bytes of parameters and buffers", True),
    "flops": ("FLOPs of one forward pass (matmul and convolution)", False),
}

_SI = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12, "P": 10**15}
_BYTES = {
    "": 1, "B": 1,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50,
    "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
}
_QUANTITY = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_quantity(text: str | int | float, *, is_bytes: bool = False) -> int:
    """``"7G"`` -> 7,000,000,000; ``"1.5GiB"`` -> 1,610,612,736 (with ``is_bytes``).

    Raises:
        ParamscopeError: the text is not a number with a known suffix.

    Example:
        >>> parse_quantity("150M"), parse_quantity("2KiB", is_bytes=True), parse_quantity(10)
        (150000000, 2048, 10)
    """
    if isinstance(text, bool):
        raise ParamscopeError(f"budget {text!r} is not a number")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ParamscopeError(f"budget {text!r} is negative")
        return int(text)
    m = _QUANTITY.match(text)
    table = _BYTES if is_bytes else _SI
    if not m or m.group(2) not in table:
        units = "B, KiB, MiB, GiB, TiB, kB, MB, GB, TB" if is_bytes else "k, M, G, T, P"
        raise ParamscopeError(f"budget {text!r} is not a number with a known suffix ({units}), e.g. "
                              + ("'600MiB'" if is_bytes else "'150M'"))
    return int(float(m.group(1).replace(",", "").replace("_", "")) * table[m.group(2)])


@dataclass(frozen=True, slots=True)
class Budget:
    """One limit: ``key`` is ``"params"``, ``"bytes"`` or ``"flops"``."""

    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """A budget checked: the model's figure (``None`` when it cannot be known) and the outcome.

    Attributes:
        budget: the limit checked.
        value: the model's figure.
        ok: ``True`` within the budget, ``False`` over it or unknown.
    """

    budget: Budget
    value: int | None

    @property
    def ok(self) -> bool:
        return self.value is not None and self.value <= self.budget.limit


def _model_flops(anatomy: Anatomy) -> int | None:
    if anatomy.compute is not None:
        return anatomy.compute.flops
    parts = [layer.compute for layer in anatomy.layers]
    if not parts or any(c is None or c.flops is None for c in parts):
        return None
    return sum(c.flops for c in parts if c is not None and c.flops is not None)


def check_budgets(anatomy: Anatomy, budgets: tuple[Budget, ...]) -> tuple[Verdict, ...]:
    """Each budget checked against the model.

    Example:
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> m = Anatomy("m", "torch", (Layer("fc", "Linear", "fc", (Tensor("weight", (10, 10)),)),))
        >>> [v.ok for v in check_budgets(m, (Budget("params", 100), Budget("bytes", 399)))]
        [True, False]
    """
    t = totals(anatomy)
    figures: dict[str, int | None] = {
        "params": t.params if t.complete else None,
        "bytes": t.n_bytes if t.complete else None,
        "flops": _model_flops(anatomy) if any(b.key == "flops" for b in budgets) else None,
    }
    return tuple(Verdict(b, figures[b.key]) for b in budgets)


def budgets_from_mapping(table: Mapping[str, Any], where: str) -> tuple[Budget, ...]:
    """Budgets from ``{"max-params": "150M", ...}`` (``max_params`` also accepted)."""
    out: list[Budget] = []
    for raw_key, value in table.items():
        key = raw_key.replace("_", "-")
        if not key.startswith("max-") or key[4:] not in BUDGET_KEYS:
            continue
        name = key[4:]
        try:
            out.append(Budget(name, parse_quantity(value, is_bytes=BUDGET_KEYS[name][1])))
        except ParamscopeError as e:
            raise ParamscopeError(f"[tool.paramscope] {raw_key}: {e}", where=where) from None
    return tuple(out)


def budgets_from_pyproject(folder: str = ".") -> tuple[tuple[Budget, ...], str | None]:
    """The budgets in the nearest ``pyproject.toml`` at or above ``folder``, and its path.

    Returns ``((), None)`` when there is no such file or it has no ``[tool.paramscope]`` budgets.
    """
    here = os.path.abspath(folder)
    while True:
        path = os.path.join(here, "pyproject.toml")
        if os.path.isfile(path):
            break
        parent = os.path.dirname(here)
        if parent == here:
            return (), None
        here = parent
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TargetError(f"cannot read it as TOML: {e}", where=path) from None
    table = doc.get("tool", {}).get("paramscope", {})
    if not isinstance(table, dict):
        raise TargetError("[tool.paramscope] is not a table", where=path)
    budgets = budgets_from_mapping(table, path)
    return budgets, (path if budgets else None)
