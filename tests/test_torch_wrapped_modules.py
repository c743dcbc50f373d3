"""Wrapped and compiled modules with an input: TorchScript, torch.export, DataParallel.

Each used to crash once an input was given. Parameter counts come from the module's own
``parameters()``; output shapes from running it; FLOPs from PyTorch's ``FlopCounterMode``.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.readers import read  # noqa: E402


def make() -> Any:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


def oracle(model: Any, x: Any) -> tuple[tuple[int, ...], int]:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = model(x)
    return tuple(out.shape), int(fc.get_total_flops())


WRAPS = {
    "script": lambda m, x: torch.jit.script(m),
    "trace": lambda m, x: torch.jit.trace(m, x),
    "export": lambda m, x: torch.export.export(m, (x,)).module(),
    "data_parallel": lambda m, x: nn.DataParallel(m),
}


@pytest.mark.parametrize("wrap", list(WRAPS))
def test_wrapped_module_reads_with_an_input(wrap: str) -> None:
    x = torch.randn(2, 6)
    model = WRAPS[wrap](make(), x)
    shape, flops = oracle(make(), x)
    a = read(model, input_size=(2, 6))
    assert totals(a).params == sum(p.numel() for p in model.parameters()) == 6 * 5 + 5 + 5 * 3 + 3
    assert a.outputs == (shape,)
    assert a.compute is not None and a.compute.flops == flops == 2 * 2 * (6 * 5 + 5 * 3)
    # the module is left as it was: same parameters, same outputs
    with torch.no_grad():
        assert torch.equal(model(x), make()(x))


def test_scripted_module_says_per_module_figures_are_missing() -> None:
    a = read(torch.jit.script(make()), input_size=(2, 6))
    assert any("TorchScript" in n and "per-module" in n for n in a.notes)


def test_data_parallel_shows_the_wrapped_modules_figures() -> None:
    a = read(nn.DataParallel(make()), input_size=(2, 6))
    first = a.find("module.0")
    assert first is not None and first.calls == 1 and first.output_shapes == ((2, 5),)
    assert any(".module" in n for n in a.notes)
