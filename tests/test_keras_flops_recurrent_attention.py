"""FLOPs of Keras recurrent, attention and wrapper layers, and of the LoRA merge, against PyTorch.

Oracles, run here: ``torch.utils.flop_counter.FlopCounterMode`` around the Keras model on the
torch backend (attention through the math kernel, so that its products are counted), and the
equivalent ``torch.nn`` modules (``nn.RNN``, ``nn.GRU``, ``nn.MultiheadAttention``) with the
same sizes. Keras's torch backend runs some recurrent layers' step once more than there are
time steps (to learn the output structure); the per-step cost is then measured as the
difference between T + 1 and T steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from keras import layers  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from paramscope.core.anatomy import Compute  # noqa: E402
from paramscope.readers.keras.engine.graph import anatomy_from_config  # noqa: E402


def _counts(model: Any) -> dict[str, int]:
    """FLOPs PyTorch counts per module (``Global`` for the whole model), one sample."""
    if keras.backend.backend() != "torch":
        pytest.skip("the FLOP oracle needs Keras on the torch backend")
    inputs = [np.ones((1, *t.shape[1:]), "int32" if "int" in str(t.dtype) else "float32") for t in model.inputs]
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}


def _paramscope(model: Any) -> Compute:
    compute = anatomy_from_config(json.loads(model.to_json())).compute
    assert compute is not None
    return compute


def _sequence(make: Callable[[], Any], steps: int, features: tuple[int, ...]) -> Any:
    x = keras.Input((steps, *features))
    return keras.Model(x, make()(x))


RECURRENT: list[tuple[str, Callable[[], Any], tuple[int, ...]]] = [
    ("LSTM", lambda: layers.LSTM(4), (3,)),
    ("GRU", lambda: layers.GRU(4, return_sequences=True), (3,)),
    ("GRU reset_after=False", lambda: layers.GRU(5, reset_after=False), (3,)),
    ("SimpleRNN", lambda: layers.SimpleRNN(4), (3,)),
    ("RNN(LSTMCell)", lambda: layers.RNN(layers.LSTMCell(4)), (3,)),
    ("RNN(stacked cells)", lambda: layers.RNN([layers.LSTMCell(4), layers.GRUCell(2)]), (3,)),
    ("Bidirectional(LSTM)", lambda: layers.Bidirectional(layers.LSTM(4)), (3,)),
    ("Bidirectional(GRU, backward SimpleRNN)",
     lambda: layers.Bidirectional(layers.GRU(3), backward_layer=layers.SimpleRNN(3, go_backwards=True), merge_mode="sum"),
     (2,)),
    ("ConvLSTM1D", lambda: layers.ConvLSTM1D(3, 3, strides=2), (6, 2)),
    ("ConvLSTM2D same", lambda: layers.ConvLSTM2D(3, 3, padding="same"), (6, 6, 2)),
    ("ConvLSTM2D valid", lambda: layers.ConvLSTM2D(2, (3, 2), return_sequences=True), (5, 4, 3)),
    ("ConvLSTM3D", lambda: layers.ConvLSTM3D(2, 2), (3, 3, 3, 1)),
    ("TimeDistributed(Dense)", lambda: layers.TimeDistributed(layers.Dense(6)), (3,)),
    ("TimeDistributed(Conv2D)", lambda: layers.TimeDistributed(layers.Conv2D(4, 3)), (6, 6, 2)),
]  # fmt: skip


@pytest.mark.parametrize(("make", "features"), [(m, f) for _, m, f in RECURRENT], ids=[n for n, _, _ in RECURRENT])
def test_recurrent_and_wrapped_layers_match_torch_per_step(make: Callable[[], Any], features: tuple[int, ...]) -> None:
    steps = 4
    per_step = _counts(_sequence(make, steps + 1, features))["Global"] - _counts(_sequence(make, steps, features))["Global"]
    compute = _paramscope(_sequence(make, steps, features))
    assert (compute.flops, compute.attention_flops) == (steps * per_step, 0)
    assert not compute.unknown_ops


@pytest.mark.parametrize(
    ("keras_layer", "torch_module"),
    [
        (lambda: layers.SimpleRNN(4), lambda: torch.nn.RNN(3, 4)),
        (lambda: layers.GRU(4), lambda: torch.nn.GRU(3, 4)),  # Keras's reset_after=True is torch's GRU
    ],
    ids=["SimpleRNN=nn.RNN", "GRU=nn.GRU"],
)
def test_recurrent_layers_match_the_torch_modules(keras_layer: Callable[[], Any], torch_module: Callable[[], Any]) -> None:
    compute = _paramscope(_sequence(keras_layer, 5, (3,)))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        torch_module()(torch.randn(5, 1, 3))
    assert compute.flops == counter.get_total_flops()


def _attention_split(model: Any, layer_name: str) -> tuple[int, int]:
    """(projection FLOPs, attention FLOPs): the projection sub-layers' counts, and the rest."""
    counts = _counts(model)
    projections = sum(v for k, v in counts.items() if k.startswith(f"{layer_name}.") and k.endswith("_dense"))
    return projections, counts[layer_name] - projections


ATTENTION: list[tuple[str, Callable[[], Any], list[tuple[int, int]]]] = [
    ("MultiHeadAttention", lambda: layers.MultiHeadAttention(2, 4), [(5, 8), (7, 6)]),
    ("MultiHeadAttention value_dim output_shape",
     lambda: layers.MultiHeadAttention(2, 4, value_dim=3, output_shape=5), [(5, 8), (7, 6)]),
    ("MultiHeadAttention key", lambda: layers.MultiHeadAttention(3, 2, use_bias=False), [(4, 6), (6, 5), (6, 7)]),
    ("GroupedQueryAttention", lambda: layers.GroupQueryAttention(4, 4, 2), [(5, 8), (7, 8)]),
    ("Attention", lambda: layers.Attention(), [(5, 6), (7, 6)]),
    ("Attention concat", lambda: layers.Attention(score_mode="concat"), [(5, 6), (7, 6)]),
    ("AdditiveAttention", lambda: layers.AdditiveAttention(), [(5, 6), (7, 6)]),
]  # fmt: skip


@pytest.mark.parametrize(("make", "shapes"), [(m, s) for _, m, s in ATTENTION], ids=[n for n, _, _ in ATTENTION])
def test_attention_layers_split_like_torch(make: Callable[[], Any], shapes: list[tuple[int, int]]) -> None:
    inputs = [keras.Input(s) for s in shapes]
    layer = make()
    if isinstance(layer, (layers.MultiHeadAttention, layers.GroupQueryAttention)):
        out = layer(*inputs)
    else:
        out = layer(inputs)
    model = keras.Model(inputs, out)
    projections, attention = _attention_split(model, type(layer).__name__)
    compute = _paramscope(model)
    assert (compute.flops, compute.attention_flops) == (projections, attention)
    assert compute.elementwise_flops is None  # softmax and scaling are not costed for Keras


def test_multi_head_attention_matches_torch_module() -> None:
    q, v = keras.Input((5, 8)), keras.Input((7, 6))
    compute = _paramscope(keras.Model([q, v], layers.MultiHeadAttention(2, 4)(q, v)))
    mha = torch.nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)  # 2 heads of 4
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        mha(torch.randn(1, 5, 8), torch.randn(1, 7, 6), torch.randn(1, 7, 6), need_weights=False)
    by_op = {str(k): n for k, n in counter.get_flop_counts()["Global"].items()}
    assert compute.flops == by_op.get("aten.mm", 0) + by_op.get("aten.addmm", 0)
    assert compute.attention_flops == by_op["aten.bmm"]


@pytest.mark.parametrize(
    ("build", "shape", "dtype"),
    [
        (lambda: layers.Dense(5), (7,), "float32"),
        (lambda: layers.EinsumDense("ab,bc->ac", output_shape=6, bias_axes="c"), (7,), "float32"),
        (lambda: layers.Conv1D(4, 3), (8, 3), "float32"),
        (lambda: layers.Embedding(50, 6), (3,), "int32"),
    ],
    ids=["Dense", "EinsumDense", "Conv1D", "Embedding"],
)
def test_lora_merge_is_counted(build: Callable[[], Any], shape: tuple[int, ...], dtype: str) -> None:
    layer = build()
    layer.build((None, *shape))
    layer.enable_lora(2)
    x = keras.Input(shape, dtype=dtype)
    model = keras.Model(x, layer(x))
    compute = _paramscope(model)
    assert compute.flops == _counts(model)["Global"]
