"""Numbers at unit boundaries: one rule, three significant digits, rolling over to the next unit."""

from __future__ import annotations

import pytest

from paramscope.render import fmt


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1_000, "1.00 K"),
        (9_994, "9.99 K"),
        (9_995, "10.0 K"),  # 9.995 rounds up to 10.0: one decimal fewer, still three digits
        (99_949, "99.9 K"),
        (99_950, "100 K"),
        (999_499, "999 K"),
        (999_500, "1.00 M"),  # 999.5 K would print as "1e+03 K" or "1000 K"
        (2_097_152, "2.10 M"),  # "2.1 M" beside "4.19 M" was two precisions
        (4_194_304, "4.19 M"),
        (999_500_000, "1.00 G"),
        (999_500 * 10**9, "1.00 P"),
        (999_500 * 10**12, "1.00 E"),  # past peta: "1e+03 P" before
        (10**33, "1,000 Q"),  # the last prefix keeps whatever is left, never e-notation
    ],
)
def test_si_rolls_over_at_every_boundary(n: int, text: str) -> None:
    assert fmt.si(n) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (10 * 1024 - 6, "9.99 KiB"),
        (999 * 1024 + 511, "999 KiB"),
        (999 * 1024 + 512, "0.976 MiB"),  # 999.5 KiB rolls over rather than printing 4 digits
        (1024 * 1024 - 100, "1.00 MiB"),  # 1023.9 KiB: "1024.00 KiB" before
        (1024**2, "1.00 MiB"),
        (2_140_752 * 4, "8.17 MiB"),
        (124_439_808 * 4, "475 MiB"),
        (1024**3 - 1, "1.00 GiB"),
        (5 * 1024**8, "5.00 YiB"),
        (5000 * 1024**8, "5,000 YiB"),
    ],
)
def test_bytes_roll_over_at_every_boundary(n: int, text: str) -> None:
    assert fmt.n_bytes(n) == text


def test_unknown_is_a_question_mark_and_units_attach() -> None:
    assert fmt.si(None) == fmt.n_bytes(None) == fmt.count(None) == "?"
    assert fmt.si_unit(None, "FLOPs") == "unknown FLOPs"
    assert fmt.si_unit(999_500, "FLOPs") == "1.00 MFLOPs"
    assert fmt.si_unit(12, "MACs") == "12 MACs"
