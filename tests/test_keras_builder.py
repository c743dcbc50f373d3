"""The framework-free Keras builder: the seed runs unchanged but for its import, names follow
Keras 3, and its configs build the same model in real Keras (the oracle)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import paramscope
from paramscope import keras as pk
from paramscope.analysis import layer_totals, totals

ROOT = Path(__file__).resolve().parents[1]

SEED_CODE = """
x = keras.layers.Input(batch_shape = (None, 4096))
hidden = keras.layers.Dense(512, activation = 'relu')(x)
hidden = keras.layers.BatchNormalization()(hidden)
hidden = keras.layers.Dropout(0.5)(hidden)
predictions = keras.layers.Dense(80, activation = 'sigmoid')(hidden)
mlp_model = keras.models.Model(input = [x], output = [predictions])
mlp_model.summary()
"""


@pytest.fixture(autouse=True)
def _fresh_names() -> None:
    pk.clear_session()


def test_seed_code_runs_with_only_its_import_changed() -> None:
    # The seed's code, verbatim, with `import keras` replaced: it must print the seed's numbers.
    code = "from paramscope import keras\n" + SEED_CODE
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for n in ("2,097,664", "2,048", "41,040", "Total params: 2,140,752", "Trainable params: 2,139,728",
              "Non-trainable params: 1,024"):
        assert n in out, n


def test_demo_prints_the_seed_numbers() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "seed.py")], capture_output=True,
                         text=True, check=True).stdout
    assert "2097664" in out and "41040" in out and "Non-trainable params: 1,024" in out
    assert "2,048 params = 4 x 512" in out


def _real_seed():  # type: ignore[no-untyped-def]
    keras = pytest.importorskip("keras")
    keras.backend.clear_session()  # so that Keras names its layers dense, dense_1... as the builder does
    x = keras.layers.Input(batch_shape=(None, 4096))
    h = keras.layers.Dense(512, activation="relu")(x)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5)(h)
    p = keras.layers.Dense(80, activation="sigmoid")(h)
    return keras.Model(inputs=[x], outputs=[p])


def _seed_builder() -> pk.Model:
    x = pk.layers.Input(batch_shape=(None, 4096))
    h = pk.layers.Dense(512, activation="relu")(x)
    h = pk.layers.BatchNormalization()(h)
    h = pk.layers.Dropout(0.5)(h)
    p = pk.layers.Dense(80, activation="sigmoid")(h)
    return pk.models.Model(input=[x], output=[p])


def _keras_split(layer) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    import math

    tr = sum(math.prod(w.shape) for w in layer.trainable_weights)
    nt = sum(math.prod(w.shape) for w in layer.non_trainable_weights)
    return tr, nt


def test_seed_builder_equals_real_keras_layer_by_layer() -> None:
    real = _real_seed()
    anatomy = paramscope.read(_seed_builder())
    assert [x.name for x in anatomy.layers] == [x.name for x in real.layers]
    for ours, theirs in zip(anatomy.layers, real.layers):
        t = layer_totals(ours)
        assert t.params == theirs.count_params()
        assert (t.trainable, t.non_trainable) == _keras_split(theirs)
        assert ours.output_shapes == (tuple(theirs.output.shape),)
    tot = totals(anatomy)
    assert tot.params == real.count_params()
    assert (tot.trainable, tot.non_trainable) == _keras_split(real)


def test_to_config_is_accepted_by_real_keras() -> None:
    keras = pytest.importorskip("keras")
    model = _seed_builder()
    rebuilt = keras.Model.from_config(model.to_config())
    assert rebuilt.count_params() == model.count_params() == 2_140_752
    again = model.to_keras()
    assert [w.shape for w in again.weights] == [w.shape for w in rebuilt.weights]
    from_json = keras.models.model_from_json(model.to_json())
    assert from_json.count_params() == model.count_params()


def _build_zoo():  # type: ignore[no-untyped-def]
    """The same models written once against a `keras` namespace: the builder's or the real one."""

    def make(keras):  # type: ignore[no-untyped-def]
        L = keras.layers
        models = {}
        x = keras.Input(shape=(28, 28, 1))
        y = L.Conv2D(8, 3, padding="same", use_bias=False)(x)
        y = L.BatchNormalization(center=False)(y)
        y = L.ReLU()(y)
        y = L.MaxPooling2D()(y)
        y = L.DepthwiseConv2D(3)(y)
        y = L.SeparableConv2D(16, 3, padding="same")(y)
        y = L.GlobalAveragePooling2D()(y)
        models["cnn"] = keras.Model(x, L.Dense(10, activation="softmax")(y))

        a = keras.Input(shape=(16,))
        b = keras.Input(shape=(16,))
        shared = L.Dense(8)  # called twice: weights once
        merged = L.Concatenate()([shared(a), shared(b)])
        models["shared"] = keras.Model([a, b], L.Dense(1)(merged))

        seq = keras.Sequential([keras.Input(shape=(12,)), L.Dense(6), L.LayerNormalization(), L.Dense(3)])
        frozen = keras.Sequential([keras.Input(shape=(12,)), L.Dense(5)])
        frozen.trainable = False
        z = keras.Input(shape=(12,))
        models["nested"] = keras.Model(z, L.Add()([seq(z), L.Dense(3)(frozen(z))]))

        t = keras.Input(shape=(10,), dtype="int32")
        e = L.Embedding(100, 16)(t)
        r = L.Bidirectional(L.LSTM(8, return_sequences=True))(e)
        r = L.GRU(4)(r)
        models["rnn"] = keras.Model(t, L.Dense(2)(r))

        q = keras.Input(shape=(5, 16))
        v = keras.Input(shape=(7, 12))
        att = L.MultiHeadAttention(num_heads=3, key_dim=7, value_dim=5)(q, v)
        models["mha"] = keras.Model([q, v], L.Dense(4, use_bias=False)(att))
        return models

    return make


@pytest.mark.parametrize("name", ["cnn", "shared", "nested", "rnn", "mha"])
def test_builder_models_match_real_keras(name: str) -> None:
    keras = pytest.importorskip("keras")
    make = _build_zoo()
    ours = make(pk)[name]
    theirs = make(keras)[name]
    anatomy = paramscope.read(ours)
    assert totals(anatomy).params == theirs.count_params()
    assert (totals(anatomy).trainable, totals(anatomy).non_trainable) == _keras_split(theirs)
    for layer, real in zip(anatomy.layers, theirs.layers):
        assert layer_totals(layer).params == real.count_params(), layer.name
        if not hasattr(real, "layers"):
            assert layer.output_shapes == (tuple(real.output.shape),), layer.name
    # and the builder's config builds that same model in real Keras
    rebuilt = keras.models.model_from_json(ours.to_json())
    assert rebuilt.count_params() == theirs.count_params()


def test_layer_names_follow_keras3() -> None:
    x = pk.Input(shape=(4,))
    names = [pk.layers.Dense(2).name, pk.layers.Dense(2).name, pk.layers.BatchNormalization().name,
             pk.layers.Conv2D(1, 1).name, pk.layers.GlobalAveragePooling2D().name, pk.layers.PReLU().name]
    assert names == ["dense", "dense_1", "batch_normalization", "conv2d", "global_average_pooling2d", "p_re_lu"]
    assert x.layer.name == "input_layer"


def test_shape_errors_are_reported_at_the_call() -> None:
    x = pk.Input(shape=(4, 4))
    with pytest.raises(paramscope.ModelError, match="add"):
        pk.layers.Add()([x, pk.Input(shape=(5, 3))])
    with pytest.raises(paramscope.ModelError, match="not on the output of keras.Input"):
        pk.layers.Dense(3)(42)
    with pytest.raises(TypeError, match="inputs=... and outputs="):
        pk.Model()


def test_builder_summary_and_json_need_no_framework() -> None:
    code = (
        "from paramscope import keras\nimport sys, json, paramscope\n" + SEED_CODE.replace("mlp_model.summary()", "")
        + "doc = json.loads(paramscope.summary(mlp_model, format='json').text)\n"
        "assert doc['totals']['params'] == 2140752\n"
        "print(sorted(m for m in ('keras', 'torch', 'tensorflow') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"
    assert json.loads(paramscope.summary(_seed_builder(), format="json").text)["complete"] is True
