"""Number, size and text formatting shared by all renderers (and by the CLI's messages).

One rule for every count: three significant digits, rolling over to the next unit when the
rounded figure reaches 1,000 (``999.5 K`` -> ``1.00 M``), so that no figure reads
``1e+03 K`` or ``1024.00 KiB``.
"""

from __future__ import annotations

from paramscope.core.anatomy import Shape
from paramscope.core.text import clean

__all__ = ["clean", "count", "n_bytes", "n_bytes_bound", "shape", "shapes", "safe", "si", "si_unit", "three_digits"]

#: The name the CLI's messages use; the same function.
safe = clean

_SI = ("", "K", "M", "G", "T", "P", "E", "Z", "Y", "R", "Q")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def three_digits(value: float) -> str:
    """A figure in ``[0.1, 1000)`` with three significant digits: ``4.19``, ``41.0``, ``819``.

    Example:
        >>> three_digits(4.194), three_digits(41), three_digits(0.9766)
        ('4.19', '41.0', '0.977')
    """
    if value >= 99.95:
        return f"{value:.0f}"
    if value >= 9.995:
        return f"{value:.1f}"
    if value >= 0.9995:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _scaled(value: float, base: int, units: tuple[str, ...]) -> tuple[str, str]:
    # Divide until the figure, rounded to three significant digits, stays below 1,000; the last
    # unit keeps whatever is left (shown with thousands separators, never in e-notation).
    for i, unit in enumerate(units):
        if i == len(units) - 1:
            return (three_digits(value) if value < 999.5 else f"{value:,.0f}", unit)
        if value < 999.5:
            return three_digits(value), unit
        value /= base
    raise AssertionError("unreachable")


def count(n: int | None) -> str:
    """``2,097,664``; ``?`` when unknown."""
    return "?" if n is None else f"{n:,}"


def n_bytes(n: int | None) -> str:
    """A byte size in binary units with three significant digits: ``8.17 MiB`` (1 MiB =
    1,048,576 bytes); exact below 1 KiB (``1023 B``); ``?`` when unknown.

    Example:
        >>> n_bytes(8563008), n_bytes(4096), n_bytes(1023), n_bytes(1024 * 1023 + 1000)
        ('8.17 MiB', '4.00 KiB', '1023 B', '1.00 MiB')
    """
    if n is None:
        return "?"
    if abs(n) < 1024:
        return f"{n} B"
    text, unit = _scaled(abs(n) / 1024, 1024, _BINARY[1:])
    return f"{'-' if n < 0 else ''}{text} {unit}"


def n_bytes_bound(n: int, complete: bool) -> str:
    """A byte total that may miss some tensors: ``8.17 MiB``, ``8.17 MiB+?`` (a lower bound),
    or ``?`` when nothing is known.

    Example:
        >>> n_bytes_bound(4096, True), n_bytes_bound(4096, False), n_bytes_bound(0, False)
        ('4.00 KiB', '4.00 KiB+?', '?')
    """
    if complete:
        return n_bytes(n)
    return "?" if n == 0 else f"{n_bytes(n)}+?"


def si(n: int | None) -> str:
    """A count in SI prefixes with three significant digits: ``4.52 G``, ``41.0 K``, ``999``;
    ``?`` if unknown.

    Example:
        >>> si(4_280_000), si(41_040), si(999_499), si(999_500), si(999)
        ('4.28 M', '41.0 K', '999 K', '1.00 M', '999')
    """
    if n is None:
        return "?"
    if abs(n) < 1000:
        return str(n)
    text, unit = _scaled(float(abs(n)), 1000, _SI)
    return f"{'-' if n < 0 else ''}{text} {unit}"


def shape(s: Shape | None) -> str:
    """``(None, 512)`` like Python's tuple repr; ``?`` when unknown."""
    if s is None:
        return "?"
    inner = ", ".join("None" if d is None else str(d) for d in s)
    return f"({inner},)" if len(s) == 1 else f"({inner})"


def shapes(ss: tuple[Shape, ...] | None) -> str:
    """One shape, or a bracketed list of several; ``?`` when unknown."""
    if not ss:
        return "?"
    if len(ss) == 1:
        return shape(ss[0])
    return "[" + ", ".join(shape(s) for s in ss) + "]"


def si_unit(n: int | None, unit: str) -> str:
    """``4.28 MFLOPs``, ``0 FLOPs``, ``unknown FLOPs``: a count with its unit, prefixed.

    Example:
        >>> si_unit(4_280_000, "FLOPs"), si_unit(0, "MACs"), si_unit(999_999, "FLOPs")
        ('4.28 MFLOPs', '0 MACs', '1.00 MFLOPs')
    """
    if n is None:
        return f"unknown {unit}"
    text = si(n)
    return f"{text}{unit}" if text[-1].isalpha() else f"{text} {unit}"
