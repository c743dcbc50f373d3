"""Example input values: kept wherever the pass has data, and used when shapes depend on them.

The oracle is the model itself, called on the same example tensors.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from paramscope.readers import read  # noqa: E402


class KeepPositive(nn.Module):
    """Output rows = the input rows whose sum is positive: the shape depends on the values."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        return self.proj(x[x.sum(-1) > 0])


def example() -> Any:
    return torch.tensor([[1.0, 1, 1, 1], [-1, -1, -1, -1], [2, 2, 2, 2], [3, 0, 0, 0]])


def test_value_dependent_shape_on_cpu_uses_the_example_values() -> None:
    model, x = KeepPositive(), example()
    with torch.no_grad():
        expected = tuple(model(x).shape)
    assert expected == (3, 2)
    a = read(model, example_inputs=x)
    assert a.outputs == (expected,)
    assert a.find("proj").output_shapes == (expected,)  # type: ignore[union-attr]
    assert a.metadata["forward"] == "cpu"
    assert any("ran for real on the CPU with the example tensors" in n for n in a.notes)


def test_real_pass_keeps_the_example_values() -> None:
    model, x = KeepPositive(), example()
    a = read(model, example_inputs=(x,), device="cpu")
    assert a.outputs == (tuple(model(x).shape),)


def test_sizes_alone_never_run_for_real() -> None:
    # no values were given: a random or zero input would decide the shape, so the pass stops
    a = read(KeepPositive(), input_size=(4, 4))
    assert a.outputs == () and a.compute is None
    assert any("Shapes and FLOPs are not available" in n for n in a.notes)


def test_values_reach_the_model_and_are_not_changed() -> None:
    seen: list[Any] = []

    class Record(nn.Module):
        def forward(self, x: Any) -> Any:
            seen.append(x.clone())
            return x.nonzero()

    x = torch.tensor([0.0, 3.0, 0.0, 5.0])
    before = x.clone()
    a = read(Record(), example_inputs=x)
    assert a.outputs == ((2, 1),)
    assert torch.equal(seen[-1], before) and torch.equal(x, before)


def test_a_model_on_meta_never_runs_for_real() -> None:
    with torch.device("meta"):
        model = KeepPositive()
    a = read(model, example_inputs=example())
    assert a.outputs == () and a.metadata["forward"] != "cpu"
