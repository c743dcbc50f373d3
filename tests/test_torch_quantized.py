"""torch.ao quantized modules: packed int8 weights, scales and zero points, counted and explained.

Oracles: the module's own unpacking API (``weight()``, ``bias()``, ``_weight_bias()``), the
quantized tensors' ``qscheme``/``q_per_channel_scales``, ``element_size()`` for bytes, and
``state_dict()``.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
nnq = pytest.importorskip("torch.ao.nn.quantized")
nnqd = pytest.importorskip("torch.ao.nn.quantized.dynamic")

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.readers import read  # noqa: E402


def unpacked(m: Any) -> list[Any]:
    """Oracle: the module's weights and biases, unpacked by torch."""
    if hasattr(m, "_weight_bias"):
        got = m._weight_bias()
        if isinstance(got, dict):
            return [t for group in got.values() for t in group.values() if t is not None]
        return [t for t in got if t is not None]
    out = [m.weight()]
    if callable(getattr(m, "bias", None)) and m.bias() is not None:
        out.append(m.bias())
    return out


def qparam_bytes(t: Any) -> tuple[int, int]:
    """Oracle: (elements, bytes) of a quantized tensor's scales and zero points."""
    if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return 2, 8 + 8  # one double scale, one int64 zero point, as the quantized tensor keeps them
    s, z = t.q_per_channel_scales(), t.q_per_channel_zero_points()
    return s.numel() + z.numel(), s.numel() * s.element_size() + z.numel() * z.element_size()


def output_qparams(m: Any) -> tuple[int, int]:
    own: dict[str, Any] = {}
    m._save_to_state_dict(own, "", True)
    ts = [own[k] for k in ("scale", "zero_point") if k in own]
    return sum(t.numel() for t in ts), sum(t.numel() * t.element_size() for t in ts)


def check(m: Any) -> None:
    a = read(m)
    t = totals(a)
    weights = unpacked(m)
    assert t.complete
    assert t.params == sum(w.numel() for w in weights) > 0
    assert t.trainable == 0 and t.non_trainable == t.params  # packed weights are not trained
    assert t.param_bytes == sum(w.numel() * w.element_size() for w in weights)
    quantized = [w for w in weights if w.is_quantized]
    assert quantized
    n_q, b_q = (sum(x) for x in zip(*(qparam_bytes(w) for w in quantized)))
    n_o, b_o = output_qparams(m)
    assert t.buffers == n_q + n_o
    assert t.n_bytes == t.param_bytes + b_q + b_o
    # qint8 is one byte per element
    q = next(x for x in t.by_dtype if x.dtype == str(quantized[0].dtype).removeprefix("torch."))
    assert q.n_bytes == q.count * quantized[0].element_size()
    # every tensor is explained by a formula that gives its count
    from paramscope.rules.torch._common import value

    for layer in a.walk():
        for tensor in layer.tensors:
            assert tensor.formula is not None and value(tensor.formula.numeric) == tensor.count


@pytest.mark.parametrize(
    "make",
    [
        lambda: nnqd.Linear(8, 4),
        lambda: nnqd.LSTM(8, 4, num_layers=2, bidirectional=True),
        lambda: nnqd.GRU(6, 5),
        lambda: nnqd.LSTMCell(8, 4),
        lambda: nnq.Linear(8, 4),
        lambda: nnq.Conv2d(3, 4, 3, groups=1),
        lambda: nnq.Conv2d(4, 8, 3, groups=2),
        lambda: nnq.ConvTranspose2d(3, 4, 3),
        lambda: nnq.Embedding(10, 4),
    ],
    ids=["dyn-linear", "dyn-lstm", "dyn-gru", "dyn-lstmcell", "linear", "conv2d", "conv2d-groups", "convT", "embedding"],
)
def test_quantized_module_counts_match_its_own_unpacked_tensors(make: Any) -> None:
    check(make())


def test_state_dict_of_a_static_linear_agrees() -> None:
    m = nnq.Linear(8, 4)
    sd = m.state_dict()
    w, b = sd["_packed_params._packed_params"]
    a = read(m)
    by_name = {layer.path: layer.tensors[0] for layer in a.layers if layer.tensors}
    assert by_name["weight"].shape == tuple(w.shape) and by_name["weight"].dtype == "qint8"
    assert by_name["bias"].shape == tuple(b.shape)
    assert by_name["scale"].dtype == str(sd["scale"].dtype).removeprefix("torch.")
    assert by_name["zero_point"].dtype == str(sd["zero_point"].dtype).removeprefix("torch.")


def test_per_channel_quantized_model() -> None:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    float_model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    q = quantize_dynamic(float_model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    assert q[0].weight().qscheme() == torch.per_channel_affine
    a = read(q)
    t = totals(a)
    assert t.params == sum(p.numel() for p in float_model.parameters())
    scales = a.find("0")
    assert scales is not None
    names = {x.name: x for x in scales.tensors}
    assert names["weight_scale"].shape == tuple(q[0].weight().q_per_channel_scales().shape) == (6,)
    for m in (q[0], q[2]):
        check(m)


@pytest.mark.parametrize("bias", [True, False])
def test_quantized_linear_flops_follow_the_product_formula(bias: bool) -> None:
    m = nnqd.Linear(8, 4, bias_=bias)
    x = torch.randn(3, 8)
    a = read(m, example_inputs=x)
    with torch.no_grad():
        out = m(x)
    assert a.outputs == (tuple(out.shape),)
    # X (3, 8) times the (4, 8) int8 weight: 2 x M x K x N; the bias adds 1 per output element
    assert a.compute is not None and a.compute.flops == 2 * 3 * 8 * 4
    assert a.compute.elementwise_flops == (out.numel() if bias else 0)


def test_static_quantized_model_runs_on_its_quantized_example() -> None:
    m = nnq.Linear(8, 4)
    x = torch.quantize_per_tensor(torch.randn(3, 8), 0.1, 0, torch.quint8)
    a = read(m, example_inputs=x)
    assert a.outputs == (tuple(m(x).shape),)
    assert a.compute is not None and a.compute.flops == 2 * 3 * 8 * 4
