"""FLOPs of weight reparametrisations, creation and profiler markers: costed, never unknown.

weight_norm, spectral_norm, ``torch.eye``, ``Embedding(max_norm=...)`` and ``record_function``
ranges used to make a whole model's FLOPs unknown. By docs/flops.md they are free or elementwise:
the matrix-product part is checked against PyTorch's ``FlopCounterMode`` on a real run, the
elementwise part against the hand formula written from the module's own tensors.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from paramscope.core import Compute  # noqa: E402
from paramscope.readers import read  # noqa: E402


def counter_total(model: Any, *args: Any) -> int:
    """Oracle: PyTorch's own matmul/convolution FLOPs of a real CPU forward."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*args)
    return int(fc.get_total_flops())


def compute(model: Any, **options: Any) -> Compute:
    a = read(model, **options)
    assert a.compute is not None, a.notes
    assert a.compute.unknown_ops == (), a.compute.unknown_ops
    return a.compute


@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_weight_norm_is_elementwise(api: str) -> None:
    lin = nn.Linear(6, 5)
    model = nn.utils.parametrizations.weight_norm(lin) if api == "parametrizations" else nn.utils.weight_norm(lin)
    x = torch.randn(2, 6)
    c = compute(model, input_size=(2, 6))
    assert c.flops == counter_total(model, x) == 2 * 2 * 6 * 5
    if api == "parametrizations":
        v = model.parametrizations.weight.original1
        g = model.parametrizations.weight.original0
    else:
        v, g = model.weight_v, model.weight_g
    # bias add per output element; w = g * v / ||v||: norm 2 per v, g / norm 1 per g, times v 1 per v
    assert c.elementwise_flops == 2 * 5 + 3 * v.numel() + g.numel()


def test_spectral_norm_vector_products_are_elementwise() -> None:
    model = nn.utils.parametrizations.spectral_norm(nn.Linear(6, 5))
    x = torch.randn(3, 6)
    c = compute(model, input_size=(3, 6))
    # FlopCounterMode counts the layer's product only; sigma = u . (W v) is work on the weights
    assert c.flops == counter_total(model, x) == 2 * 3 * 6 * 5
    w = model.parametrizations.weight.original
    u = model.parametrizations.weight[0]._u
    mv, vdot, divide, bias = 2 * w.numel(), 2 * u.numel(), w.numel(), 3 * 5
    assert c.elementwise_flops == mv + vdot + divide + bias


def test_embedding_max_norm_renorm_is_elementwise() -> None:
    emb = nn.Embedding(10, 4, max_norm=1.0)
    ids = torch.tensor([[1, 2, 3]])
    c = compute(emb, inputs=["int64[1,3]"])
    assert c.flops == counter_total(nn.Embedding(10, 4, max_norm=1.0), ids) == 0
    # each looked-up row: its norm (2 per element) and the rescale (1 per element)
    assert c.elementwise_flops == 3 * ids.numel() * emb.embedding_dim


class _EyeMarked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4, bias=False)

    def forward(self, x: Any) -> Any:
        with torch.autograd.profiler.record_function("marked"):
            return self.lin(x) + torch.eye(4)


def test_eye_and_record_function_are_free() -> None:
    model = _EyeMarked()
    c = compute(model, input_size=(4, 4))
    assert c.flops == counter_total(model, torch.randn(4, 4)) == 2 * 4 * 4 * 4
    assert c.elementwise_flops == 4 * 4  # the add alone; eye and the markers cost 0


def test_vector_product_on_data_is_a_headline_product() -> None:
    class MatVec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 6))

        def forward(self, x: Any) -> Any:
            return torch.mv(self.w, x)

    c = compute(MatVec(), input_size=(6,))
    assert c.flops == 2 * 5 * 6 and c.elementwise_flops == 0
