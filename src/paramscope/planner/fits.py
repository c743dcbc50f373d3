"""Does a plan fit a device, with what headroom, and what are the limits that do.

The limits search the same computation as the plan (:func:`paramscope.planner.plan.evaluate`)
with one setting changed, by bisection: the peak grows with the batch and the sequence and
shrinks with the number of data-parallel devices. Activations measured at one batch and
sequence are scaled linearly to others; with ``attention="math"`` the L x S matrices grow
with the square of the sequence, so no longest sequence is given there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from paramscope.planner.result import Fit
from paramscope.planner.setup import MemorySetup

if TYPE_CHECKING:
    from paramscope.planner.plan import Ingredients

__all__ = ["fit", "largest"]

_LIMIT = 1 << 24


def largest(fits: Callable[[int], bool], hi: int = _LIMIT) -> int:
    """The largest ``n`` in ``[0, hi]`` with ``fits(n)``, for a monotone ``fits`` (0: none).

    Example:
        >>> largest(lambda n: n * n <= 50)
        7
    """
    if not fits(1):
        return 0
    lo, step = 1, 1
    while lo + step <= hi and fits(lo + step):
        lo += step
        step *= 2
    top = min(lo + step, hi + 1)  # fits(lo) holds, fits(top) does not (or top is past hi)
    while top - lo > 1:
        mid = (lo + top) // 2
        if fits(mid):
            lo = mid
        else:
            top = mid
    return lo


def fit(ing: Ingredients, setup: MemorySetup, peak: int | None) -> Fit | None:
    """The fit of ``setup`` (which must name a device) given its peak."""
    from paramscope.planner.plan import evaluate

    if setup.device is None:
        return None
    device = setup.device

    def peak_of(s: MemorySetup) -> int | None:
        return evaluate(ing, s)[2]

    def ok(s: MemorySetup) -> bool:
        p = peak_of(s)
        return p is not None and p <= device

    if peak is None:
        return Fit(setup.device_name, device, None, None, None, None, None)
    batch = largest(lambda b: ok(replace(setup, batch=b)), 1 << 20)
    seq = None
    if setup.seq is not None and setup.attention == "flash" and ing.acts.seq:
        seq = largest(lambda n: ok(replace(setup, seq=n)), _positions(ing.config) or _LIMIT)
    gpus = None
    if setup.shard != "none":
        dp = _fewest(lambda n: ok(replace(setup, dp=n)), 4096)
        gpus = None if dp is None else dp * setup.tp * setup.pp
    elif peak <= device:
        gpus = setup.tp * setup.pp
    return Fit(setup.device_name, device, peak <= device, device - peak, batch, seq, gpus)


def _positions(config: object) -> int | None:
    """The longest sequence the model's position embeddings allow, if the config says."""
    config = getattr(config, "text_config", None) or config
    for name in ("max_position_embeddings", "n_positions", "max_target_positions"):
        n = getattr(config, name, None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def _fewest(fits: Callable[[int], bool], hi: int) -> int | None:
    """The smallest ``n`` in ``[1, hi]`` with ``fits(n)``, for ``fits`` false then true."""
    if not fits(hi):
        return None
    lo, top = 0, hi  # fits(top) holds; fits(lo) does not (0 stands for 'none')
    while top - lo > 1:
        mid = (lo + top) // 2
        if fits(mid):
            top = mid
        else:
            lo = mid
    return top
