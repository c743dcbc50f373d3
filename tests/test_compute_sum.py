"""One sum for FLOPs everywhere: a figure is known only when every part knows it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from paramscope.core.anatomy import Compute
from paramscope.core.compute import ZERO, sum_compute

figure = st.one_of(st.none(), st.integers(0, 10**12))
computes = st.builds(Compute, figure, figure, figure, st.tuples() | st.tuples(st.sampled_from(["Foo", "Bar"])))


def test_compute_knows_nothing_by_default() -> None:
    c = Compute()
    assert (c.flops, c.attention_flops, c.elementwise_flops, c.macs) == (None, None, None, None)
    assert not c.complete


@given(st.lists(st.one_of(st.none(), computes), max_size=6))
def test_each_figure_is_the_plain_sum_or_unknown(parts: list[Compute | None]) -> None:
    total = sum_compute(parts)
    if not parts or all(p is None for p in parts):
        assert total is None
        return
    assert total is not None
    for field in ("flops", "attention_flops", "elementwise_flops"):
        values = [None if p is None else getattr(p, field) for p in parts]
        expected = None if None in values else sum(v for v in values if v is not None)
        assert getattr(total, field) == expected, field
    seen = [u for p in parts if p is not None for u in p.unknown_ops]
    assert total.unknown_ops == tuple(dict.fromkeys(seen))


def test_hand_worked_sum() -> None:
    # 2 x (4 x 3) matmul FLOPs = 24, plus 10: 34; attention 0 + 0; elementwise 3 + unknown.
    total = sum_compute([Compute(24, 0, 3), Compute(10, 0, None, ("Erf",))])
    assert total == Compute(34, 0, None, ("Erf",))
    assert sum_compute([], empty=ZERO) == ZERO
    assert sum_compute([]) is None
