"""ONNX FLOPs follow the one convention of docs/flops.md, checked against PyTorch's own counter.

Small torch modules are exported to ONNX and costed by paramscope from the file; the oracle
is ``torch.utils.flop_counter.FlopCounterMode`` running the same module: its weight products
(``mm``, ``addmm``, convolutions) are the headline, its products of two activations (``bmm``
of attention) the attention figure. Sparse initializers are checked against the dense arrays
the onnx package builds from them.
"""

from __future__ import annotations

import warnings
from math import prod
from pathlib import Path
from typing import Any

import pytest

from paramscope.analysis import totals
from paramscope.readers import read

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
h, nh, TP = onnx.helper, onnx.numpy_helper, onnx.TensorProto
nn = torch.nn

_WEIGHT_OPS = {"aten.mm", "aten.addmm", "aten.convolution", "aten._convolution"}
_DATA_OPS = {"aten.bmm"}


class _Attention(nn.Module):
    """Attention written out: projections, Q K^T, softmax, weights x V (as eager HF code)."""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.qkv, self.out, self.heads = nn.Linear(d, 3 * d), nn.Linear(d, d), heads

    def forward(self, x: Any) -> Any:
        b, t, d = x.shape
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(x).split(d, -1))
        weights = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, -1)
        return self.out((weights @ v).transpose(1, 2).reshape(b, t, d))


class _ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: Any) -> Any:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _torch_counts(module: Any, x: Any) -> tuple[int, int]:
    """(weight-product FLOPs, activation-product FLOPs) as PyTorch counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    by_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    assert set(by_op) <= _WEIGHT_OPS | _DATA_OPS, by_op
    return sum(v for k, v in by_op.items() if k in _WEIGHT_OPS), sum(v for k, v in by_op.items() if k in _DATA_OPS)


def _export(module: Any, x: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), str(path), dynamo=False, input_names=["x"])
    return path


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (_Attention(), (1, 5, 16)),
        (_Attention(d=24, heads=3), (2, 7, 24)),
        (_ConvNet(), (2, 3, 8, 8)),
        (nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3)), (4, 6)),
    ],
)
def test_headline_and_attention_match_torch_flop_counter(tmp_path: Path, module: Any, shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape)
    weight_flops, attention_flops = _torch_counts(module, x)
    a = read(str(_export(module, x, tmp_path / "m.onnx")))
    assert a.compute is not None
    assert (a.compute.flops, a.compute.attention_flops) == (weight_flops, attention_flops)


def test_multihead_attention_module_matches_torch(tmp_path: Path) -> None:
    mha = nn.MultiheadAttention(16, 4, batch_first=True)

    class Self(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = mha

        def forward(self, x: Any) -> Any:
            return self.mha(x, x, x, need_weights=False)[0]

    x = torch.randn(2, 6, 16)
    module = Self().eval()
    a = read(str(_export(module, x, tmp_path / "mha.onnx")))
    # Per head: scores 2 x L x S x E and values 2 x L x S x E, for 2 x 4 heads, L = S = 6, E = 4.
    assert a.compute is not None and a.compute.attention_flops == 2 * 4 * (2 * 6 * 6 * 4) * 2
    # Projections: q, k, v and out, each 2 x 12 tokens x 16 x 16.
    assert a.compute.flops == 4 * 2 * 12 * 16 * 16


def _graph_model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any] = (), **kw: Any) -> Any:  # type: ignore[assignment]
    graph = h.make_graph(nodes, "g", inputs, outputs, initializer=list(inits), **kw)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])


def _read(model: Any, path: Path) -> Any:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return read(str(path))


def test_topk_where_resize_are_costed_not_zero(tmp_path: Path) -> None:
    x = h.make_tensor_value_info("x", TP.FLOAT, [1, 3, 4, 4])
    k = nh.from_array(np.array([2], np.int64), "k")
    scales = nh.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        h.make_node("TopK", ["x", "k"], ["vals", "idx"], name="topk", axis=-1),
        h.make_node("Greater", ["x", "x"], ["mask"], name="gt"),
        h.make_node("Where", ["mask", "x", "x"], ["w"], name="where"),
        h.make_node("Resize", ["w", "", "scales"], ["near"], name="nearest", mode="nearest"),
        h.make_node("Resize", ["w", "", "scales"], ["lin"], name="linear", mode="linear"),
    ]
    outs = [h.make_tensor_value_info(n, TP.FLOAT, s) for n, s in (("vals", [1, 3, 4, 2]), ("near", [1, 3, 8, 8]), ("lin", [1, 3, 8, 8]))]
    a = _read(_graph_model(nodes, [x], outs, [k, scales]), tmp_path / "ops.onnx")
    by = {la.name: la.compute for la in a.walk()}
    # TopK has no formula: elementwise unknown and named, the headline still known (0).
    assert by["topk"].flops == 0 and by["topk"].elementwise_flops is None and "TopK" in by["topk"].unknown_ops
    assert by["where"].elementwise_flops == 1 * 3 * 4 * 4  # one select per output element
    assert by["nearest"].elementwise_flops == 0  # a copy
    assert by["linear"].elementwise_flops == 7 * 3 * 8 * 8  # bilinear: 7 per output element
    assert a.compute is not None and a.compute.flops == 0 and a.compute.elementwise_flops is None


def test_bilinear_interpolation_from_torch(tmp_path: Path) -> None:
    class Up(nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear")

    x = torch.randn(1, 2, 3, 3)
    a = read(str(_export(Up(), x, tmp_path / "up.onnx")))
    assert a.compute is not None and a.compute.elementwise_flops == 7 * prod((1, 2, 6, 6))


@pytest.mark.parametrize("coordinates", [False, True])
def test_sparse_initializer_counts_its_dense_elements(tmp_path: Path, coordinates: bool) -> None:
    values = nh.from_array(np.array([1.0, -2.0, 3.0], np.float32), "w")
    positions = np.array([[0, 1], [2, 0], [3, 3]], np.int64) if coordinates else np.array([1, 8, 15], np.int64)
    sparse = h.make_sparse_tensor(values, nh.from_array(positions, "w_idx"), [4, 4])
    x = h.make_tensor_value_info("x", TP.FLOAT, [2, 4])
    y = h.make_tensor_value_info("y", TP.FLOAT, [2, 4])
    model = _graph_model([h.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x], [y], sparse_initializer=[sparse])
    a = _read(model, tmp_path / "sparse.onnx")
    dense = np.zeros((4, 4), np.float32)
    if coordinates:
        dense[tuple(positions.T)] = nh.to_array(values)
    else:
        dense.reshape(-1)[positions] = nh.to_array(values)
    t = totals(a)
    assert t.params == dense.size and t.n_bytes == dense.nbytes
    assert any("3 non-zero values" in n for n in a.notes)
    mm = a.find("mm")
    assert mm is not None and mm.compute is not None and mm.compute.flops == 2 * 2 * 4 * 4  # a weight product
