"""FLOPs of a whole model and of repeated blocks, unknown parts kept unknown."""

from __future__ import annotations

from paramscope.core.anatomy import Anatomy, Compute

__all__ = ["compute_total", "times"]


def compute_total(anatomy: Anatomy) -> Compute | None:
    """FLOPs of the whole model: its own figure, else the sum over top-level layers.

    A top-level layer that was not measured makes every figure unknown rather than smaller.

    Example:
        >>> from paramscope.core import Layer
        >>> a = Layer("a", compute=Compute(100, 0, 4))
        >>> compute_total(Anatomy("m", "torch", (a, a.with_(name="b")))).flops
        200
    """
    if anatomy.compute is not None:
        return anatomy.compute
    parts = [x.compute for x in anatomy.layers]
    if all(c is None for c in parts):
        return None
    flops: int | None = 0
    att: int | None = 0
    elem: int | None = 0
    unknown: list[str] = []
    for c in parts:
        if c is None:
            c = Compute(None, None, None)
        flops = None if flops is None or c.flops is None else flops + c.flops
        att = None if att is None or c.attention_flops is None else att + c.attention_flops
        elem = None if elem is None or c.elementwise_flops is None else elem + c.elementwise_flops
        unknown.extend(u for u in c.unknown_ops if u not in unknown)
    return Compute(flops, att, elem, tuple(unknown))


def times(c: Compute | None, n: int) -> Compute | None:
    """The FLOPs of ``n`` identical blocks (unknown stays unknown)."""
    if c is None or n == 1:
        return c

    def m(x: int | None) -> int | None:
        return None if x is None else x * n

    return Compute(m(c.flops), m(c.attention_flops), m(c.elementwise_flops), c.unknown_ops)
