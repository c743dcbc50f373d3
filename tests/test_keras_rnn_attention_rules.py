"""The recurrent, attention and wrapper rules against Keras itself, one layer at a time.

Each case builds a real Keras layer in a functional graph, serializes it the way Keras saves it
(JSON round trip), runs the rule on that config and the layer's input shapes, and compares the
weights (names, shapes, order) and output shapes with what Keras created.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable
from typing import Any

import pytest

keras = pytest.importorskip("keras")
layers = keras.layers

from paramscope.rules.keras import RuleInput, keras_rule  # noqa: E402


def _shape(x: Any) -> tuple[int | None, ...]:
    return tuple(x.shape)


def _flat(x: Any) -> list[Any]:
    return list(keras.tree.flatten(x))


def _relative(layer: Any, path: str) -> str:
    prefix = f"{layer.path}/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def check_layer(layer: Any, inputs: Any) -> None:
    """The rule for ``layer`` reproduces Keras's weights and output shapes."""
    ser = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    rule = keras_rule(ser["class_name"])
    assert rule is not None, ser["class_name"]
    in_shapes = tuple(_shape(t) for t in _flat(inputs))
    out = rule(RuleInput(ser["class_name"], ser["config"], in_shapes, build_config=ser.get("build_config") or {}))
    assert out.known, out.note
    expected_w = [(_relative(layer, v.path), tuple(v.shape)) for v in layer.weights]
    assert [(w.name, tuple(w.shape)) for w in out.weights] == expected_w
    assert sum(_count(w.shape) for w in out.weights) == layer.count_params()
    expected_out = [_shape(t) for t in _flat(layer.output)]
    assert [tuple(s) for s in out.output_shapes] == expected_out
    for w in out.weights:
        assert w.formula is not None and arithmetic(w.formula.numeric) == _count(w.shape), w.name
    assert out.formula is not None and arithmetic(out.formula.numeric) == layer.count_params()


_OPS = {ast.Add: operator.add, ast.Mult: operator.mul}


def arithmetic(text: str) -> int:
    """The value of a formula's numeric side (``4 x (8 + 4)``), evaluated without eval()."""

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return int(_OPS[type(node.op)](ev(node.left), ev(node.right)))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"not arithmetic: {ast.dump(node)}")

    return ev(ast.parse(text.replace(",", "").replace(" x ", " * "), mode="eval").body)


def _count(shape: tuple[int | None, ...]) -> int:
    n = 1
    for d in shape:
        assert d is not None
        n *= d
    return n


def _seq(steps: int | None = 7, feat: int = 5) -> Any:
    return keras.Input((steps, feat))


Case = Callable[[], tuple[Any, Any]]


def _apply(layer: Any, x: Any) -> tuple[Any, Any]:
    layer(x)
    return layer, x


RNN_CASES: dict[str, Case] = {
    "simple_rnn": lambda: _apply(layers.SimpleRNN(6), _seq()),
    "simple_rnn_seq_state": lambda: _apply(layers.SimpleRNN(6, return_sequences=True, return_state=True), _seq()),
    "lstm": lambda: _apply(layers.LSTM(4), _seq()),
    "lstm_no_bias_state": lambda: _apply(layers.LSTM(4, use_bias=False, return_state=True), _seq()),
    "lstm_seq": lambda: _apply(layers.LSTM(3, return_sequences=True), _seq(None, 9)),
    "gru_reset_after": lambda: _apply(layers.GRU(5, reset_after=True), _seq()),
    "gru_reset_before": lambda: _apply(layers.GRU(5, reset_after=False, return_sequences=True), _seq()),
    "gru_no_bias_state": lambda: _apply(layers.GRU(2, use_bias=False, return_state=True), _seq()),
    "rnn_lstm_cell": lambda: _apply(layers.RNN(layers.LSTMCell(3), return_state=True), _seq()),
    "rnn_stacked": lambda: _apply(
        layers.RNN([layers.LSTMCell(3), layers.GRUCell(2, reset_after=False), layers.SimpleRNNCell(4)],
                   return_sequences=True, return_state=True),
        _seq(),
    ),
    "conv_lstm1d": lambda: _apply(layers.ConvLSTM1D(3, 3, return_sequences=True), keras.Input((4, 10, 2))),
    "conv_lstm2d": lambda: _apply(layers.ConvLSTM2D(4, (3, 2), padding="same", strides=2, return_state=True),
                                  keras.Input((3, 9, 8, 2))),
    "conv_lstm2d_no_bias": lambda: _apply(layers.ConvLSTM2D(2, 3, use_bias=False, dilation_rate=2),
                                          keras.Input((3, 9, 8, 2))),
    "conv_lstm3d": lambda: _apply(layers.ConvLSTM3D(2, 2), keras.Input((2, 5, 5, 5, 1))),
}

def _bidi(kind: str, mode: str | None) -> tuple[Any, Any]:
    rnn = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}[kind]
    return _apply(layers.Bidirectional(rnn(3, return_sequences=True), merge_mode=mode), _seq())


WRAPPER_CASES: dict[str, Case] = {
    f"bidi_{kind}_{mode}": (lambda kind=kind, mode=mode: _bidi(kind, mode))  # type: ignore[misc]
    for kind in ("lstm", "gru", "rnn")
    for mode in ("concat", "sum", "ave", "mul", None)
}
WRAPPER_CASES.update(
    {
        "bidi_state": lambda: _apply(layers.Bidirectional(layers.LSTM(3, return_state=True)), _seq()),
        "bidi_state_none": lambda: _apply(
            layers.Bidirectional(layers.GRU(3, return_state=True, return_sequences=True), merge_mode=None), _seq()
        ),
        "bidi_custom_backward": lambda: _apply(
            layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(3, go_backwards=True, use_bias=False)),
            _seq(),
        ),
        "bidi_conv_lstm": lambda: _apply(
            layers.Bidirectional(layers.ConvLSTM1D(2, 3)), keras.Input((4, 10, 2))
        ),
        "time_distributed_dense": lambda: _apply(layers.TimeDistributed(layers.Dense(6)), _seq()),
        "time_distributed_conv": lambda: _apply(
            layers.TimeDistributed(layers.Conv2D(4, 3, strides=2)), keras.Input((3, 11, 9, 2))
        ),
        "time_distributed_lstm": lambda: _apply(layers.TimeDistributed(layers.LSTM(2)), keras.Input((3, 4, 5))),
    }
)


def _mha(q_shape: tuple[int, ...], v_shape: tuple[int, ...] | None, k_shape: tuple[int, ...] | None = None,
         **kw: Any) -> tuple[Any, Any]:
    layer = layers.MultiHeadAttention(**kw)
    q = keras.Input(q_shape)
    v = keras.Input(v_shape) if v_shape else q
    if k_shape:
        k = keras.Input(k_shape)
        layer(q, v, key=k)
        return layer, [q, v, k]
    layer(q, v)
    return layer, [q, v]


ATTENTION_CASES: dict[str, Case] = {
    "mha_self": lambda: _mha((6, 16), None, num_heads=2, key_dim=8),
    "mha_odd_cross": lambda: _mha((6, 16), (5, 12), num_heads=3, key_dim=7, value_dim=5),
    "mha_output_shape": lambda: _mha((6, 16), (5, 12), num_heads=3, key_dim=7, value_dim=5, output_shape=(9,)),
    "mha_output_shape_2d": lambda: _mha((6, 16), (5, 12), num_heads=2, key_dim=3, output_shape=(2, 5)),
    "mha_key": lambda: _mha((6, 16), (5, 12), (5, 10), num_heads=2, key_dim=4, value_dim=3),
    "mha_no_bias": lambda: _mha((6, 16), None, num_heads=2, key_dim=4, use_bias=False),
    "mha_gate": lambda: _mha((6, 16), (5, 12), num_heads=2, key_dim=4, value_dim=3, use_gate=True),
    "mha_axes": lambda: _mha((3, 4, 16), None, num_heads=2, key_dim=4, attention_axes=(1, 2)),
    "gqa": lambda: _apply_gqa(head_dim=4, num_query_heads=4, num_key_value_heads=2),
    "gqa_no_bias_gate": lambda: _apply_gqa(head_dim=3, num_query_heads=6, num_key_value_heads=3,
                                           use_bias=False, use_gate=True),
    "attention": lambda: _apply_list(layers.Attention(), (4, 8), (5, 8)),
    "attention_scale_concat": lambda: _apply_list(layers.Attention(use_scale=True, score_mode="concat"),
                                                  (4, 8), (5, 8)),
    "additive": lambda: _apply_list(layers.AdditiveAttention(), (4, 8), (5, 8)),
    "additive_no_scale": lambda: _apply_list(layers.AdditiveAttention(use_scale=False), (4, 8), (5, 8)),
}


def _apply_gqa(**kw: Any) -> tuple[Any, Any]:
    layer = layers.GroupQueryAttention(**kw)
    q, v = keras.Input((6, 12)), keras.Input((5, 12))
    layer(q, v)
    return layer, [q, v]


def _apply_list(layer: Any, q_shape: tuple[int, ...], v_shape: tuple[int, ...]) -> tuple[Any, Any]:
    q, v = keras.Input(q_shape), keras.Input(v_shape)
    layer([q, v])
    return layer, [q, v]


@pytest.mark.parametrize("case", list(RNN_CASES))
def test_recurrent_rules_match_keras(case: str) -> None:
    check_layer(*RNN_CASES[case]())


@pytest.mark.parametrize("case", list(WRAPPER_CASES))
def test_wrapper_rules_match_keras(case: str) -> None:
    check_layer(*WRAPPER_CASES[case]())


@pytest.mark.parametrize("case", list(ATTENTION_CASES))
def test_attention_rules_match_keras(case: str) -> None:
    check_layer(*ATTENTION_CASES[case]())


def test_unknown_cell_is_unknown_not_zero() -> None:
    rule = keras_rule("RNN")
    assert rule is not None
    cfg = {"cell": {"module": "my_pkg", "class_name": "MyCell", "config": {"units": 3}}, "return_sequences": False}
    out = rule(RuleInput("RNN", cfg, ((None, 4, 5),)))
    assert not out.known
    assert "MyCell" in out.note


def test_gru_bias_shapes_follow_reset_after() -> None:
    rule = keras_rule("GRU")
    assert rule is not None
    after = rule(RuleInput("GRU", {"units": 4, "reset_after": True}, ((None, 3, 2),)))
    before = rule(RuleInput("GRU", {"units": 4, "reset_after": False}, ((None, 3, 2),)))
    assert after.weights[2].shape == (2, 12)
    assert before.weights[2].shape == (12,)
    assert "reset_after" in after.weights[2].why


@pytest.mark.parametrize("inner_name", ["lstm", "forward_lstm"])
def test_bidirectional_config_without_backward_layer(inner_name: str) -> None:
    # Keras 2 saved only the forward copy unless a custom backward layer was given.
    layer = layers.Bidirectional(layers.LSTM(3, return_sequences=True, name="lstm"))
    layer(_seq())
    rule = keras_rule("Bidirectional")
    assert rule is not None
    cfg = {"merge_mode": "concat", "layer": {"class_name": "LSTM", "config": {"name": inner_name, "units": 3,
                                                                            "return_sequences": True}}}
    out = rule(RuleInput("Bidirectional", cfg, ((None, 7, 5),)))
    assert [(w.name, w.shape) for w in out.weights] == [
        (_relative(layer, v.path), tuple(v.shape)) for v in layer.weights
    ]
    assert out.output_shapes == (tuple(layer.output.shape),)
