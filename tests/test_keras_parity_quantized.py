"""Quantized layers: the variables Keras creates for int8, int4 and float8 Dense, EinsumDense
and Embedding, derived from the config alone and compared with the model Keras rebuilds."""

from __future__ import annotations

import json
from typing import Any

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from keras import layers  # noqa: E402

from paramscope.analysis.totals import layer_totals, totals  # noqa: E402
from paramscope.core.dtypes import canonical_dtype  # noqa: E402
from paramscope.readers.keras.engine.graph import anatomy_from_config  # noqa: E402


def _model() -> Any:
    tokens = keras.Input((6,), dtype="int32")
    x = layers.Embedding(40, 10, name="emb")(tokens)
    x = layers.Dense(7, name="dense")(x)
    x = layers.EinsumDense("abc,cde->abde", output_shape=(6, 2, 3), bias_axes="de", name="proj")(x)
    x = layers.EinsumDense("abde,dec->abc", output_shape=(6, 5), name="out")(x)
    return keras.Model(tokens, x)


def _weights(layer: Any) -> list[tuple[str, tuple[int, ...], str, bool]]:
    trainable = {id(w) for w in layer.trainable_weights}
    return sorted(
        (w.name, tuple(w.shape), canonical_dtype(str(w.dtype)), id(w) in trainable) for w in layer.weights
    )


@pytest.mark.parametrize("mode", ["int8", "int4", "float8"])
def test_quantized_model_matches_keras(mode: str) -> None:
    model = _model()
    if mode == "float8":  # Embedding has no float8 mode
        for layer in model.layers:
            if isinstance(layer, (layers.Dense, layers.EinsumDense)):
                layer.quantize(mode)
    else:
        model.quantize(mode)
    config = json.loads(model.to_json())
    rebuilt = keras.models.model_from_json(json.dumps(config))
    anatomy = anatomy_from_config(config)
    for reference in (model, rebuilt):
        assert totals(anatomy).params == reference.count_params()
    for klayer in rebuilt.layers:
        ours = anatomy.find(klayer.name)
        assert ours is not None and ours.known, klayer.name
        got = sorted((t.name, tuple(t.shape or ()), t.dtype, t.counted_as == "trainable") for t in ours.tensors)
        assert got == _weights(klayer), klayer.name
        lt = layer_totals(ours)
        expected_bytes = sum(int(np.prod(w.shape)) * np.dtype(str(w.dtype)).itemsize for w in klayer.weights)
        assert lt.param_bytes == expected_bytes, klayer.name


@pytest.mark.parametrize("block_size", [None, 4])
def test_int4_block_sizes(block_size: int | None) -> None:
    config_obj = keras.quantizers.Int4QuantizationConfig(block_size=block_size)
    model = keras.Sequential([keras.Input((9,)), layers.Dense(5), layers.Embedding(30, 7)])
    model.quantize("int4", config=config_obj)
    config = json.loads(model.to_json())
    rebuilt = keras.models.model_from_json(json.dumps(config))
    anatomy = anatomy_from_config(config)
    for klayer in rebuilt.layers:
        ours = anatomy.find(klayer.name)
        assert ours is not None
        got = sorted((t.name, tuple(t.shape or ()), t.dtype, t.counted_as == "trainable") for t in ours.tensors)
        assert got == _weights(klayer), klayer.name
    assert totals(anatomy).params == rebuilt.count_params()


def test_int8_kernel_is_frozen_with_a_reason() -> None:
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3)])
    model.quantize("int8")
    anatomy = anatomy_from_config(json.loads(model.to_json()))
    kernel = next(t for t in anatomy.layers[0].tensors if t.name == "kernel")
    assert kernel.dtype == "int8" and kernel.n_bytes == 12
    assert kernel.counted_as == "non_trainable" and "int8" in kernel.why
