"""FLOPs of a whole model and of repeated blocks, unknown parts kept unknown."""

from __future__ import annotations

from paramscope.core.anatomy import Anatomy, Compute
from paramscope.core.compute import sum_compute

__all__ = ["compute_total", "times"]


def compute_total(anatomy: Anatomy) -> Compute | None:
    """FLOPs of the whole model: its own figure, else the sum over top-level layers.

    A top-level layer that was not measured makes every figure unknown rather than smaller
    (the one sum, :func:`paramscope.core.compute.sum_compute`).

    Example:
        >>> from paramscope.core import Layer
        >>> a = Layer("a", compute=Compute(100, 0, 4))
        >>> compute_total(Anatomy("m", "torch", (a, a.with_(name="b")))).flops
        200
    """
    if anatomy.compute is not None:
        return anatomy.compute
    return sum_compute(x.compute for x in anatomy.layers)


def times(c: Compute | None, n: int) -> Compute | None:
    """The FLOPs of ``n`` identical blocks (unknown stays unknown)."""
    if c is None or n == 1:
        return c

    def m(x: int | None) -> int | None:
        return None if x is None else x * n

    return Compute(m(c.flops), m(c.attention_flops), m(c.elementwise_flops), c.unknown_ops)
