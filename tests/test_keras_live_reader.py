"""The live Keras reader against Keras's own numbers: counts, splits, shapes, dtypes, bytes."""

from __future__ import annotations

import math
import warnings
import subprocess
import sys
from typing import Any

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")
layers = keras.layers

from paramscope.analysis.totals import layer_totals, totals  # noqa: E402
from paramscope.core.anatomy import Anatomy, Layer, Role  # noqa: E402
from paramscope.core.errors import ModelError  # noqa: E402
from paramscope.readers.keras import live as keras_model


def _n(shape: Any) -> int:
    return math.prod(int(d) for d in shape)


def _keras_split(layer: Any) -> tuple[int, int]:
    return (
        sum(_n(v.shape) for v in layer.trainable_weights),
        sum(_n(v.shape) for v in layer.non_trainable_weights),
    )


def assert_parity(model: Any, anatomy: Anatomy) -> None:
    """Per layer and in total, the anatomy says what Keras says."""
    t = totals(anatomy)
    trainable, non_trainable = _keras_split(model)
    assert (t.params, t.trainable, t.non_trainable) == (model.count_params(), trainable, non_trainable)
    assert t.buffers == 0
    for layer in model.layers:
        ours = anatomy.find(layer.name)
        assert ours is not None, layer.name
        lt = layer_totals(ours)
        assert lt.params == (layer.count_params() if layer.weights else 0), layer.name
        assert (lt.trainable, lt.non_trainable) == _keras_split(layer), layer.name
        if not isinstance(layer, keras.Model):
            expected = tuple(tuple(x.shape) for x in keras.tree.flatten(layer.output))
            assert ours.output_shapes == expected, layer.name


def test_seed_model_counts() -> None:
    # The motivating example; these typed-in numbers are the seed's, printed by Keras itself.
    model = keras.Sequential(
        [
            keras.Input((4096,)),
            layers.Dense(512, activation="relu"),
            layers.BatchNormalization(),
            layers.Dropout(0.5),
            layers.Dense(80, activation="sigmoid"),
        ]
    )
    anatomy = keras_model.read(model)
    assert [layer_totals(layer).params for layer in anatomy.layers] == [2_097_664, 2_048, 0, 41_040]
    t = totals(anatomy)
    assert (t.params, t.trainable, t.non_trainable) == (2_140_752, 2_139_728, 1_024)
    bn = anatomy.layers[1]
    assert [x.name for x in bn.tensors] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [x.counted_as for x in bn.tensors] == ["trainable", "trainable", "non_trainable", "non_trainable"]
    assert anatomy.layers[0].output_shapes == ((None, 512),)
    assert_parity(model, anatomy)


def _rnn_attention_model() -> Any:
    x = keras.Input((6, 5))
    h = layers.SimpleRNN(4, return_sequences=True)(x)
    h, s1, c1 = layers.LSTM(3, return_sequences=True, return_state=True)(h)
    h = layers.GRU(4, reset_after=False, use_bias=False, return_sequences=True)(h)
    h = layers.GRU(6, return_sequences=True)(h)
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="sum")(h)
    h = layers.Bidirectional(layers.GRU(2, return_sequences=True))(h)
    h = layers.Bidirectional(layers.SimpleRNN(2, return_sequences=True), merge_mode="ave")(h)
    h = layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode="mul")(h)
    a, b = layers.Bidirectional(layers.GRU(2, return_sequences=True), merge_mode=None)(h)
    h = layers.Concatenate()([a, b])
    h = layers.TimeDistributed(layers.Dense(16))(h)
    q = layers.MultiHeadAttention(num_heads=3, key_dim=7, value_dim=5, output_shape=(9,))(h, h)
    v = keras.Input((4, 12))
    cross = layers.MultiHeadAttention(num_heads=2, key_dim=7, value_dim=5)(h, v)
    g = layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)(cross, cross)
    att = layers.Attention(use_scale=True, score_mode="concat")([g, g])
    add = layers.AdditiveAttention()([att, att])
    r = layers.RNN([layers.LSTMCell(3), layers.GRUCell(2)])(add)
    img = keras.Input((3, 10, 10, 2))
    conv = layers.ConvLSTM2D(3, 3, return_sequences=True)(img)
    td = layers.TimeDistributed(layers.Conv2D(4, 3))(conv)
    return keras.Model([x, v, img], [q, r, td, s1, c1])


def test_rnn_attention_wrapper_model_parity() -> None:
    model = _rnn_attention_model()
    anatomy = keras_model.read(model)
    assert_parity(model, anatomy)
    lstm = next(x for x in anatomy.walk() if x.type == "LSTM")
    assert lstm.output_shapes == ((None, 6, 3), (None, 3), (None, 3))
    assert [t.name for t in lstm.tensors] == ["lstm_cell/kernel", "lstm_cell/recurrent_kernel", "lstm_cell/bias"]
    for layer in anatomy.walk():
        if layer.type in ("LSTM", "GRU", "SimpleRNN", "Bidirectional", "MultiHeadAttention",
                          "GroupedQueryAttention", "Attention", "AdditiveAttention", "RNN", "ConvLSTM2D"):
            assert layer.formula is not None, layer.path
            assert all(t.formula is not None for t in layer.tensors), layer.path
            assert "no rule" not in layer.note


def test_optimizer_state_is_kept_apart() -> None:
    model = keras.Sequential([keras.Input((8,)), layers.Dense(4), layers.BatchNormalization(), layers.Dense(2)])
    model.compile("adam", "mse")
    model.fit(np.zeros((8, 8)), np.zeros((8, 2)), verbose=0, epochs=1)
    anatomy = keras_model.read(model)
    t = totals(anatomy)
    assert t.params == model.count_params()
    (group,) = anatomy.extras
    assert group.name == "optimizer"
    opt_count = sum(_n(v.shape) for v in model.optimizer.variables)
    assert sum(x.count or 0 for x in group.tensors) == opt_count > 0
    assert all(not x.is_param for x in group.tensors)
    # Keras's summary mixes optimizer state into "Total params"; ours does not.
    lines: list[str] = []
    model.summary(print_fn=lambda s, **_: lines.append(s))
    text = "\n".join(lines)
    assert f"Total params: {model.count_params() + opt_count:,}" in text
    assert f"Optimizer params: {opt_count:,}" in text


@pytest.mark.parametrize("mode", ["int8", "int4", "float8"])
def test_quantized_dtypes_and_bytes(mode: str) -> None:
    model = keras.Sequential([keras.Input((10,)), layers.Dense(16), layers.Dense(3)])
    model.quantize(mode)
    anatomy = keras_model.read(model)
    assert_parity(model, anatomy)
    for layer in model.layers:
        ours = anatomy.find(layer.name)
        assert ours is not None
        by_name = {t.name: t for t in ours.tensors}
        for v in layer.weights:
            t = by_name[v.name]
            assert t.dtype == str(v.dtype)
            assert t.n_bytes == keras.ops.convert_to_numpy(v).nbytes, (mode, v.path)


def test_mixed_precision_and_bool_weights() -> None:
    class Flags(layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.mask = self.add_weight(name="mask", shape=(input_shape[-1],), dtype="bool", trainable=False, initializer="zeros")
            self.w = self.add_weight(name="w", shape=(input_shape[-1], 2))

        def call(self, x: Any) -> Any:
            return keras.ops.matmul(x, self.w)

    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((6,)), layers.Dense(5), Flags(dtype="bfloat16")])
    finally:
        keras.config.set_dtype_policy("float32")
    anatomy = keras_model.read(model)
    assert_parity(model, anatomy)
    for layer in model.layers:
        ours = anatomy.find(layer.name)
        assert ours is not None
        for v, t in zip(layer.weights, ours.tensors):
            assert t.dtype == str(v.dtype)
            assert t.n_bytes == keras.ops.convert_to_numpy(v).nbytes
    flags = anatomy.layers[-1]
    assert {t.dtype for t in flags.tensors} == {"bool", "bfloat16"}
    assert flags.known and "no rule" in flags.note
    assert {t.name: t.role for t in flags.tensors} == {"mask": Role.BUFFER, "w": Role.TRAINABLE}  # Keras does not train it


def test_nested_and_shared_layers() -> None:
    shared = layers.Dense(4, name="shared")
    inner = keras.Sequential([keras.Input((4,)), shared, layers.Dense(4)], name="inner")
    x = keras.Input((4,))
    y = inner(shared(x))
    y = inner(y)
    model = keras.Model(x, y)
    anatomy = keras_model.read(model)
    assert totals(anatomy).params == model.count_params()
    top_shared = anatomy.find("shared")
    assert top_shared is not None and top_shared.calls == 1
    nested = anatomy.find("inner")
    assert nested is not None and nested.calls == 2
    assert nested.children[0].path == "inner/shared"
    assert nested.children[0].tensors[0].key == top_shared.tensors[0].key


def test_frozen_layer_roles() -> None:
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2), layers.BatchNormalization()])
    model.layers[0].trainable = False
    anatomy = keras_model.read(model)
    assert_parity(model, anatomy)
    assert all(t.counted_as == "non_trainable" for t in anatomy.layers[0].tensors)


def test_unbuilt_model_is_refused() -> None:
    model = keras.Sequential([layers.Dense(2)])
    with pytest.raises(ModelError, match="not built"):
        keras_model.read(model)


def test_single_layer() -> None:
    layer = layers.LSTM(3)
    layer.build((None, 4, 5))
    anatomy = keras_model.read(layer)
    assert totals(anatomy).params == layer.count_params()
    assert isinstance(anatomy.layers[0], Layer)


def test_can_read_never_imports_keras() -> None:
    code = (
        "import sys\n"
        "from paramscope.readers.keras import live as keras_model\n"
        "assert not keras_model.can_read(object())\n"
        "assert not keras_model.can_read('model.keras')\n"
        "bad = [m for m in ('keras', 'torch', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_subclassed_model_and_build_without_input() -> None:
    class Block(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = layers.Dense(3)
            self.norm = layers.BatchNormalization()

        def call(self, x: Any) -> Any:
            return self.norm(self.dense(x))

    block = Block()
    block(np.zeros((2, 4)))
    anatomy = keras_model.read(block)
    t = totals(anatomy)
    assert t.params == block.count_params()
    assert (t.trainable, t.non_trainable) == _keras_split(block)
    dense = anatomy.find(block.dense.name)
    assert dense is not None and dense.formula is not None and dense.output_shapes == ((2, 3),)

    seq = keras.Sequential([layers.Dense(3), layers.Dense(2)])
    seq.build((None, 5))
    anatomy = keras_model.read(seq)
    assert totals(anatomy).params == seq.count_params()
    assert [x.output_shapes for x in anatomy.layers] == [((None, 3),), ((None, 2),)]


def test_registry_reads_a_keras_model_as_keras() -> None:
    # On the torch backend every Keras layer is also a torch.nn.Module.
    from paramscope.readers import read, reader_for

    model = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    assert reader_for(model).__name__ == "paramscope.readers.keras.live"
    anatomy = read(model)
    assert anatomy.framework == "keras" and totals(anatomy).params == model.count_params()


def test_flops_per_call_as_for_configs() -> None:
    pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from paramscope.rules.keras.flops import sum_compute

    x = keras.Input((7, 12))
    shared = layers.Dense(12, name="shared")
    h = shared(shared(x))  # two calls: twice the FLOPs
    img = layers.Reshape((7, 12, 1))(h)
    y = layers.Conv2D(3, 3)(img)
    model = keras.Model(x, y)
    anatomy = keras_model.read(model)
    found = anatomy.find("shared")
    assert found is not None and found.compute is not None and found.calls == 2
    assert found.compute.flops == 2 * (2 * 7 * 12 * 12)  # two calls, 7 positions, 12 x 12 multiply-adds
    total = sum_compute([layer.compute for layer in anatomy.layers])
    assert total is not None and total.flops is not None
    with FlopCounterMode(display=False) as counter:
        model(np.ones((1, 7, 12), dtype="float32"), training=False)
    assert total.flops == counter.get_total_flops()


def test_wrapped_layer_keeps_its_own_quantized_policy() -> None:
    model = keras.Sequential([keras.Input((4, 6)), layers.TimeDistributed(layers.Dense(5))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("int8")
    anatomy = keras_model.read(model)
    assert_parity(model, anatomy)
    (td,) = anatomy.layers
    assert "no rule" not in td.note and "expected" not in td.note, td.note
    kernel = next(t for t in td.tensors if t.name.endswith("/kernel"))
    assert kernel.dtype == "int8" and kernel.formula is not None
    assert td.formula is not None
