"""FLOPs of Keras layers from their config, against what PyTorch counts when Keras (torch
backend) runs the same model on one sample: ``torch.utils.flop_counter.FlopCounterMode``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from keras import layers  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from paramscope.rules.keras.flops import layer_compute  # noqa: E402
from paramscope.readers.keras.engine.graph import anatomy_from_config  # noqa: E402


def _torch_flops(model: Any) -> int:
    if keras.backend.backend() != "torch":
        pytest.skip("the FLOP oracle needs Keras on the torch backend")
    inputs = [
        np.ones((1, *[d for d in t.shape[1:]]), dtype="int32" if "int" in str(t.dtype) else "float32")
        for t in model.inputs
    ]
    with FlopCounterMode(display=False) as counter:
        model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return int(counter.get_total_flops())


def _convs() -> Any:
    seq = keras.Input((16, 6))
    a = layers.Conv1D(8, 3, dilation_rate=2, padding="causal")(seq)
    a = layers.Conv1D(8, 3, groups=4, strides=2)(a)
    a = layers.Conv1DTranspose(5, 3, strides=2, output_padding=1)(a)
    a = layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same")(a)
    a = layers.SeparableConv1D(7, 3, depth_multiplier=3, use_bias=False)(a)
    img = keras.Input((15, 13, 3))
    b = layers.Conv2D(6, (3, 5), strides=(2, 1), padding="same")(img)
    b = layers.Conv2DTranspose(4, 3, strides=2, padding="same")(b)
    b = layers.DepthwiseConv2D(3, strides=2)(b)
    b = layers.SeparableConv2D(5, 3, dilation_rate=2, padding="same")(b)
    b = layers.SpectralNormalization(layers.Conv2D(3, 1))(b)
    vol = keras.Input((7, 8, 9, 2))
    c = layers.Conv3D(4, 3, strides=(1, 2, 2))(vol)
    c = layers.Conv3DTranspose(3, 2, strides=2, use_bias=False)(c)
    return keras.Model([seq, img, vol], [a, b, c])


def _dense_einsum_dot() -> Any:
    x = keras.Input((7, 12))
    shared = layers.Dense(12, name="shared")
    h = shared(shared(x))  # two calls: twice the FLOPs
    q = layers.EinsumDense("abc,cde->abde", output_shape=(7, 2, 6), bias_axes="de")(h)
    o = layers.EinsumDense("abde,dec->abc", output_shape=(7, 12))(q)
    scores = layers.Dot(axes=(2, 2))([o, h])
    return keras.Model(x, [layers.Flatten()(scores), layers.GlobalAveragePooling1D()(o)])


MODELS: list[tuple[str, Callable[[], Any]]] = [
    ("seed", lambda: keras.Sequential([keras.Input((4096,)), layers.Dense(512),
                                       layers.BatchNormalization(), layers.Dense(80)])),
    ("convs", _convs),
    ("dense_einsum_dot", _dense_einsum_dot),
    ("MobileNetV3Small", lambda: keras.applications.MobileNetV3Small(weights=None, input_shape=(96, 96, 3))),
    ("ResNet50", lambda: keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))),
]


@pytest.mark.parametrize("build", [b for _, b in MODELS], ids=[n for n, _ in MODELS])
def test_matmul_and_conv_flops_equal_what_torch_counts(build: Callable[[], Any]) -> None:
    model = build()
    anatomy = anatomy_from_config(json.loads(model.to_json()))
    compute = anatomy.compute
    assert compute is not None and compute.flops is not None and compute.attention_flops is not None
    assert compute.flops + compute.attention_flops == _torch_flops(model)


def test_seed_flops_worked_by_hand() -> None:
    # Dense 4096 -> 512 on one sample: 4096 x 512 multiply-adds = 2,097,152 MACs = 4,194,304 FLOPs
    assert layer_compute("Dense", {"units": 512}, [(None, 4096)], [(None, 512)]).flops == 4_194_304
    # Conv2D 3x3, 64 -> 128 on a 56x56 output: 56*56 positions x 3*3*64 x 128 x 2 = 462,422,016
    conv = layer_compute("Conv2D", {"filters": 128, "kernel_size": 3, "padding": "same"},
                         [(None, 56, 56, 64)], [(None, 56, 56, 128)])
    assert conv.flops == 462_422_016
    assert conv.elementwise_flops is None  # the bias add is not costed: unknown, not 0


def test_unknown_layers_make_flops_unknown() -> None:
    x = keras.Input((4,))
    y = layers.Lambda(lambda t: t * 2, name="double")(layers.Dense(4)(x))
    anatomy = anatomy_from_config(json.loads(keras.Model(x, y).to_json()))
    assert anatomy.compute is not None and anatomy.compute.flops is None
    assert "Lambda" in anatomy.compute.unknown_ops
