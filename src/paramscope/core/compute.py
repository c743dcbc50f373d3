"""One way to add FLOPs: the sum of several layers' :class:`Compute`, unknown kept unknown.

Every source (Keras configs and live models, PyTorch modules, ONNX graphs) and every view
sums compute with :func:`sum_compute`, so a model's figure means the same wherever it came
from: a figure is known only when it is known for every part.
"""

from __future__ import annotations

from collections.abc import Iterable

from paramscope.core.anatomy import Compute

__all__ = ["sum_compute", "ZERO"]

#: The compute of something that does no arithmetic (a reshape, an empty container).
ZERO = Compute(0, 0, 0)


def _add(values: list[int | None]) -> int | None:
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def sum_compute(parts: Iterable[Compute | None], *, empty: Compute | None = None) -> Compute | None:
    """The sum of several computes, figure by figure; an unknown part makes that figure unknown.

    A ``None`` part (not measured) is unknown in every figure. Callers for which a missing
    compute means "did no work" (a PyTorch module the forward pass never called) leave it out
    before summing; the sum itself never guesses.

    Args:
        parts: the computes to add.
        empty: the result when there are no parts (``ZERO`` for a container known to be empty).

    Returns:
        The sum, with the unknown operators of all parts in first-seen order; ``empty`` when
        ``parts`` is empty; ``None`` when every part is ``None`` (nothing was measured).

    Example:
        >>> sum_compute([Compute(4, 0, 1), Compute(None, 0, 2, ("Foo",))])
        Compute(flops=None, attention_flops=0, elementwise_flops=3, unknown_ops=('Foo',))
        >>> sum_compute([Compute(4, 0, 1), None]).flops is None
        True
        >>> sum_compute([], empty=ZERO)
        Compute(flops=0, attention_flops=0, elementwise_flops=0, unknown_ops=())
    """
    items = list(parts)
    if not items:
        return empty
    if all(c is None for c in items):
        return None
    known = [c if c is not None else Compute() for c in items]
    unknown = tuple(dict.fromkeys(u for c in known for u in c.unknown_ops))
    return Compute(
        _add([c.flops for c in known]),
        _add([c.attention_flops for c in known]),
        _add([c.elementwise_flops for c in known]),
        unknown,
    )
