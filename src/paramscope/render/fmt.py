"""Number, size and name formatting shared by all renderers."""

from __future__ import annotations

import re

from paramscope.core.anatomy import Shape

__all__ = ["count", "n_bytes", "shape", "shapes", "safe", "si", "si_unit"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: str) -> str:
    r"""Untrusted text (names from files) with control characters shown as escapes.

    Example:
        >>> safe("w\x1b[31m\x00")
        'w\\x1b[31m\\x00'
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text).replace("\n", "\\n").replace(
        "\t", "\\t"
    )


def count(n: int | None) -> str:
    """``2,097,664``; ``?`` when unknown."""
    return "?" if n is None else f"{n:,}"


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def n_bytes(n: int | None) -> str:
    """A byte size in binary units: ``8.17 MiB`` (1 MiB = 1,048,576 bytes); ``?`` when unknown.

    Example:
        >>> n_bytes(8563008)
        '8.17 MiB'
        >>> n_bytes(4096)
        '4.00 KiB'
    """
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in _UNITS[1:]:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.2f} {unit}"
    raise AssertionError("unreachable")


def si(n: int | None) -> str:
    """A large count in SI prefixes with three significant digits: ``4.52 G``; ``?`` if unknown."""
    if n is None:
        return "?"
    for div, p in ((10**15, "P"), (10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g} {p}"
    return str(n)


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
        >>> si_unit(4_280_000, "FLOPs"), si_unit(0, "MACs")
        ('4.28 MFLOPs', '0 MACs')
    """
    if n is None:
        return f"unknown {unit}"
    text = si(n)
    return f"{text}{unit}" if text[-1].isalpha() else f"{text} {unit}"
