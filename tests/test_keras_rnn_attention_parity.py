"""Parity of every recurrent, attention and wrapper rule with Keras, through every way in.

Each model is built in real Keras, then read four ways: the config engine on ``model.to_json()``,
the live reader on the model, and the archive reader on ``model.save("x.keras")`` and
``model.save("x.h5")``. Per layer, the parameters, the trainable/non-trainable split and the
output shapes must equal Keras's own; so must the totals.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("h5py")
layers = keras.layers

from paramscope.analysis.totals import layer_totals, totals  # noqa: E402
from paramscope.core.anatomy import Anatomy  # noqa: E402
from paramscope.readers.keras import archive as keras_archive
from paramscope.readers.keras import live as keras_model
from paramscope.readers.keras.engine.graph import anatomy_from_config  # noqa: E402

RULE_TYPES = {
    "SimpleRNN", "LSTM", "GRU", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "Bidirectional",
    "TimeDistributed", "MultiHeadAttention", "GroupQueryAttention", "GroupedQueryAttention",
    "Attention", "AdditiveAttention",
}


def _n(shape: Any) -> int:
    return math.prod(int(d) for d in shape)


def _split(layer: Any) -> tuple[int, int]:
    return (sum(_n(v.shape) for v in layer.trainable_weights), sum(_n(v.shape) for v in layer.non_trainable_weights))


def assert_parity(model: Any, anatomy: Anatomy) -> None:
    """Per layer and in total, ``anatomy`` says what Keras says about ``model``."""
    t = totals(anatomy)
    assert (t.params, (t.trainable, t.non_trainable)) == (model.count_params(), _split(model))
    for layer in model.layers:
        ours = anatomy.find(layer.name)
        assert ours is not None, layer.name
        lt = layer_totals(ours)
        assert (lt.params, (lt.trainable, lt.non_trainable)) == (
            sum(_n(v.shape) for v in layer.weights),
            _split(layer),
        ), layer.name
        if not isinstance(layer, keras.Model):
            expected = tuple(tuple(x.shape) for x in keras.tree.flatten(layer.output))
            assert ours.output_shapes == expected, layer.name
        if type(layer).__name__ in RULE_TYPES:
            assert ours.known and ours.formula is not None, layer.name
            assert all(x.formula is not None for x in ours.tensors), layer.name


def recurrent_model() -> Any:
    x = keras.Input((6, 5))
    h = layers.SimpleRNN(4, return_sequences=True)(x)
    h, s1, c1 = layers.LSTM(3, return_sequences=True, return_state=True)(h)
    h = layers.LSTM(3, use_bias=False, return_sequences=True)(h)
    h = layers.GRU(4, reset_after=False, return_sequences=True)(h)
    h = layers.GRU(4, use_bias=False, return_sequences=True)(h)
    h, s2 = layers.GRU(6, return_sequences=True, return_state=True)(h)
    h = layers.SimpleRNN(3, use_bias=False, return_sequences=True)(h)
    r = layers.RNN([layers.LSTMCell(3), layers.GRUCell(2)])(h)
    return keras.Model(x, [r, s1, c1, s2])


def bidirectional_model() -> Any:
    x = keras.Input((6, 5))
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True))(x)
    h = layers.Bidirectional(layers.GRU(2, return_sequences=True), merge_mode="sum")(h)
    h = layers.Bidirectional(layers.SimpleRNN(2, return_sequences=True), merge_mode="ave")(h)
    h = layers.Bidirectional(layers.GRU(4, reset_after=False, return_sequences=True), merge_mode="mul")(h)
    a, b = layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode=None)(h)
    o, *states = layers.Bidirectional(layers.GRU(2, return_state=True))(a)
    h = layers.TimeDistributed(layers.Dense(7))(b)
    return keras.Model(x, [h, o, *states])


def conv_model() -> Any:
    img = keras.Input((3, 10, 10, 2))
    h = layers.ConvLSTM2D(3, 3, return_sequences=True)(img)
    h = layers.ConvLSTM2D(2, (2, 3), strides=2, padding="same", use_bias=False, return_sequences=True)(h)
    h = layers.TimeDistributed(layers.Conv2D(4, 3, padding="same"))(h)
    h = layers.TimeDistributed(layers.Dense(5))(h)
    seq = keras.Input((4, 12, 3))
    g = layers.ConvLSTM1D(2, 3, return_sequences=True)(seq)
    vol = keras.Input((2, 5, 5, 5, 1))
    v = layers.ConvLSTM3D(2, 2)(vol)
    return keras.Model([img, seq, vol], [h, g, v])


def attention_model() -> Any:
    q = keras.Input((6, 16))
    v = keras.Input((5, 12))
    k = keras.Input((5, 10))
    v16 = keras.Input((5, 16))
    odd = layers.MultiHeadAttention(num_heads=3, key_dim=7, value_dim=5, output_shape=(9,))(q, v)
    self_att = layers.MultiHeadAttention(num_heads=2, key_dim=8)(q, q)
    cross = layers.MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, use_bias=False)(q, v, key=k)
    gqa = layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)(q, v16, key=v)
    dot = layers.Attention(use_scale=True, score_mode="concat")([q, q])
    plain = layers.Attention()([odd, odd])
    add = layers.AdditiveAttention()([self_att, q])
    return keras.Model([q, v, k, v16], [odd, self_att, cross, gqa, dot, plain, add])


MODELS: dict[str, Callable[[], Any]] = {
    "recurrent": recurrent_model,
    "bidirectional": bidirectional_model,
    "conv": conv_model,
    "attention": attention_model,
}


def read_way(model: Any, way: str, tmp_path: Path) -> Anatomy:
    """Read ``model`` one of the four ways."""
    if way == "live":
        return keras_model.read(model)
    if way == "config":
        return anatomy_from_config(json.loads(model.to_json()), source="to_json")
    target = tmp_path / f"model.{way}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(target)
    return keras_archive.read(target)


@pytest.mark.parametrize("way", ["config", "live", "keras", "h5"])
@pytest.mark.parametrize("name", list(MODELS))
def test_parity(name: str, way: str, tmp_path: Path) -> None:
    model = MODELS[name]()
    assert_parity(model, read_way(model, way, tmp_path))


def _tensors(anatomy: Anatomy) -> dict[str, tuple[Any, ...]]:
    return {
        layer.path: (
            layer.type,
            layer.origin,
            layer.calls,
            layer.compute,
            sorted((t.name, t.shape, t.dtype, t.role.value, t.is_param, t.formula) for t in layer.tensors),
        )
        for layer in anatomy.walk()
    }


@pytest.mark.parametrize("name", list(MODELS))
def test_live_and_saved_readings_agree_tensor_by_tensor(name: str, tmp_path: Path) -> None:
    model = MODELS[name]()
    live = _tensors(read_way(model, "live", tmp_path))
    saved = _tensors(read_way(model, "keras", tmp_path))
    assert live == saved
