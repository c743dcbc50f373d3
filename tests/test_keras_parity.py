"""Parity with Keras itself: every count and shape the engine derives from ``model.to_json()``
equals what Keras reports for the model it builds, layer by layer.

The engine never sees the model, only its JSON; expectations come from Keras inside each test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from keras import layers  # noqa: E402

from paramscope.analysis.totals import layer_totals, totals  # noqa: E402
from paramscope.core.anatomy import Anatomy, Layer  # noqa: E402
from paramscope.core.dtypes import canonical_dtype  # noqa: E402
from paramscope.readers.keras.engine.graph import anatomy_from_config  # noqa: E402


def _count(weights: Any) -> int:
    return sum(int(np.prod(w.shape)) for w in weights)


def _first_output_shape(layer: Any) -> tuple[Any, ...]:
    out = layer._inbound_nodes[0].output_tensors if layer._inbound_nodes else [layer.output]
    return tuple(out[0].shape)


def _relative_name(weight: Any, layer: Any) -> str:
    prefix = f"{layer.name}/"
    return weight.path.split(prefix, 1)[1] if prefix in weight.path else weight.name


def _check_layer(klayer: Any, ours: Layer, *, shapes: bool = True) -> None:
    where = f"{ours.path} ({type(klayer).__name__})"
    lt = layer_totals(ours)
    assert ours.known and lt.complete, f"{where}: {ours.note}"
    assert lt.params == klayer.count_params(), where
    assert lt.trainable == _count(klayer.trainable_weights), where
    assert lt.non_trainable == _count(klayer.non_trainable_weights), where
    if not ours.children:
        # A variable created without a name is called "variable", "variable_1"... by a
        # session-wide counter (ConvNeXt's LayerScale): the suffix is not in the config.
        # Weights of a wrapped layer are named by their path under the wrapper (dense/kernel).
        expected = sorted(
            (re.sub(r"^variable_\d+$", "variable", _relative_name(w, klayer)), tuple(w.shape),
             canonical_dtype(str(w.dtype)))
            for w in klayer.weights
        )
        got = sorted((t.name, tuple(t.shape or ()), t.dtype) for t in ours.tensors)
        assert got == expected, where
    if shapes:
        assert ours.output_shapes is not None, where
        assert tuple(ours.output_shapes[0]) == _first_output_shape(klayer), where
    for sub in getattr(klayer, "layers", []):
        child = next((c for c in ours.children if c.name == sub.name), None)
        assert child is not None or type(sub).__name__ == "InputLayer", f"{where}: no {sub.name}"
        if child is not None:
            _check_layer(sub, child, shapes=shapes)


def assert_parity(model: Any, *, shapes: bool = True) -> Anatomy:
    """The engine's anatomy of ``model.to_json()`` matches ``model`` layer by layer."""
    anatomy = anatomy_from_config(json.loads(model.to_json()))
    tops = {layer.name: layer for layer in anatomy.layers}
    assert [layer.name for layer in anatomy.layers] == [l.name for l in model.layers] or set(
        tops
    ) >= {l.name for l in model.layers}
    for klayer in model.layers:
        _check_layer(klayer, tops[klayer.name], shapes=shapes)
    t = totals(anatomy)
    assert t.complete
    assert t.params == model.count_params()
    assert t.trainable == _count(model.trainable_weights)
    assert t.non_trainable == _count(model.non_trainable_weights)
    weight_bytes = sum(int(np.prod(w.shape)) * np.dtype(str(w.dtype)).itemsize
                       for w in model.weights if str(w.dtype) != "bfloat16")
    bf16 = sum(int(np.prod(w.shape)) * 2 for w in model.weights if str(w.dtype) == "bfloat16")
    assert t.param_bytes == weight_bytes + bf16
    return anatomy


# Small inputs keep building fast; the weights do not depend on the spatial size.
APPLICATIONS = [
    ("ResNet50", (64, 64, 3)),
    ("ResNet50V2", (64, 64, 3)),
    ("MobileNet", (96, 96, 3)),
    ("MobileNetV2", (96, 96, 3)),
    ("MobileNetV3Small", (96, 96, 3)),
    ("EfficientNetB0", (64, 64, 3)),
    ("EfficientNetV2B0", (64, 64, 3)),
    ("DenseNet121", (64, 64, 3)),
    ("InceptionV3", (96, 96, 3)),
    ("InceptionResNetV2", (96, 96, 3)),
    ("Xception", (96, 96, 3)),
    ("ConvNeXtTiny", (64, 64, 3)),
    ("VGG16", (64, 64, 3)),
]


@pytest.mark.parametrize(("name", "input_shape"), APPLICATIONS, ids=[a[0] for a in APPLICATIONS])
def test_keras_applications(name: str, input_shape: tuple[int, int, int]) -> None:
    model = getattr(keras.applications, name)(weights=None, input_shape=input_shape)
    assert_parity(model)


def _seed() -> Any:
    model = keras.Sequential(
        [keras.Input((4096,)), layers.Dense(512), layers.BatchNormalization(), layers.Dense(80)]
    )
    return model


def _shared_and_ops() -> Any:
    x = keras.Input((8,), name="x")
    ids = keras.Input((5,), dtype="int32", name="ids")
    shared = layers.Dense(8, name="shared")
    a = shared(x)
    b = shared(a)
    c = keras.ops.add(a, b)
    mask = keras.ops.not_equal(ids, 0)
    emb = layers.Embedding(20, 8, name="emb")(ids)
    pooled = layers.GlobalAveragePooling1D()(emb)
    out = layers.Concatenate()([keras.ops.relu(c), pooled])
    return keras.Model([x, ids], [out, mask])


def _nested() -> Any:
    inner_seq = keras.Sequential([layers.Dense(6), layers.BatchNormalization()], name="inner_seq")
    i = keras.Input((6,))
    inner_fn = keras.Model(i, layers.Dense(3, use_bias=False)(i), name="inner_fn")
    inner_fn.trainable = False
    x = keras.Input((4,))
    return keras.Model(x, inner_fn(inner_seq(x)), name="outer")


def _nested_deeper() -> Any:
    # A sub-model with two outputs, called twice; a Sequential inside a Sequential.
    i = keras.Input((6,))
    h = layers.Dense(5, name="trunk")(i)
    two = keras.Model(i, [layers.Dense(3, name="head_a")(h), layers.Dense(2, name="head_b")(h)], name="two")
    inner = keras.Sequential([layers.Dense(4), keras.Sequential([layers.Dense(6), layers.LayerNormalization()],
                                                                name="innermost")], name="inner")
    x, y = keras.Input((6,)), keras.Input((6,))
    a1, b1 = two(x)
    a2, b2 = two(y)
    merged = layers.Concatenate()([a1, b1, a2, b2])
    return keras.Model([x, y], [inner(merged), b2])


def _batchnorm_options() -> Any:
    return keras.Sequential(
        [
            keras.Input((6, 5, 4)),
            layers.BatchNormalization(center=False),
            layers.BatchNormalization(scale=False, axis=1),
            layers.BatchNormalization(axis=-2, renorm=True),
            layers.BatchNormalization(center=False, scale=False, trainable=False),
            layers.Dense(3, use_bias=False),
        ]
    )


def _normalizations() -> Any:
    return keras.Sequential(
        [
            keras.Input((4, 6, 8)),
            layers.LayerNormalization(axis=[1, -1]),
            layers.LayerNormalization(rms_scaling=True),
            layers.LayerNormalization(center=False, axis=-2),
            layers.GroupNormalization(groups=4),
            layers.GroupNormalization(groups=-1, center=False),
            layers.UnitNormalization(),
            layers.RMSNormalization(),
            layers.Normalization(axis=[1, -1]),
            layers.Normalization(mean=0.5, variance=2.0),
            layers.Normalization(axis=None),
            layers.SpectralNormalization(layers.Dense(5)),
            layers.Reshape((4, 6, 5, 1)),
            layers.SpectralNormalization(layers.Conv3D(2, 3, padding="same"), power_iterations=2),
        ]
    )


def _conv_channels_last() -> Any:
    inp = keras.Input((16, 6))
    a = layers.Conv1D(8, 3, dilation_rate=2, padding="causal")(inp)
    a = layers.Conv1D(8, 3, groups=4, strides=2)(a)
    a = layers.Conv1DTranspose(5, 3, strides=2, output_padding=1)(a)
    a = layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same")(a)
    a = layers.SeparableConv1D(7, 3, depth_multiplier=3, use_bias=False)(a)
    img = keras.Input((15, 13, 3))
    b = layers.Conv2D(6, (3, 5), strides=(2, 1), padding="same")(img)
    b = layers.Conv2DTranspose(4, 3, strides=2, padding="same")(b)
    b = layers.Conv2DTranspose(4, (2, 3), strides=3, padding="valid", dilation_rate=1)(b)
    b = layers.DepthwiseConv2D(3, strides=2)(b)
    b = layers.SeparableConv2D(5, 3, dilation_rate=2, padding="same")(b)
    vol = keras.Input((7, 8, 9, 2))
    c = layers.Conv3D(4, 3, padding="valid", strides=(1, 2, 2))(vol)
    c = layers.Conv3DTranspose(3, 2, strides=2, use_bias=False)(c)
    return keras.Model([inp, img, vol], [a, b, c])


def _conv_channels_first() -> Any:
    return keras.Sequential(
        [
            keras.Input((3, 12, 10)),
            layers.Conv2D(4, 3, data_format="channels_first", strides=2),
            layers.DepthwiseConv2D(2, data_format="channels_first", depth_multiplier=2),
            layers.SeparableConv2D(5, 2, data_format="channels_first", padding="same"),
            layers.Conv2DTranspose(2, 3, strides=2, data_format="channels_first"),
            layers.BatchNormalization(axis=1),
            layers.MaxPooling2D(2, data_format="channels_first"),
            layers.ZeroPadding2D(((1, 2), (0, 3)), data_format="channels_first"),
            layers.UpSampling2D((2, 3), data_format="channels_first"),
            layers.Cropping2D(((1, 1), (2, 0)), data_format="channels_first"),
            layers.GlobalAveragePooling2D(data_format="channels_first", keepdims=True),
            layers.Flatten(),
        ]
    )


def _pooling() -> Any:
    seq = keras.Input((17, 4))
    p1 = [
        layers.MaxPooling1D(3, strides=2, padding="same")(seq),
        layers.AveragePooling1D(2)(seq),
        layers.GlobalMaxPooling1D(keepdims=True)(seq),
        layers.GlobalAveragePooling1D()(seq),
    ]
    img = keras.Input((11, 9, 3))
    p2 = [
        layers.MaxPooling2D((3, 2), strides=(2, 1))(img),
        layers.AveragePooling2D(2, padding="same")(img),
        layers.GlobalMaxPooling2D()(img),
        layers.GlobalAveragePooling2D(keepdims=True)(img),
    ]
    vol = keras.Input((6, 7, 5, 2))
    p3 = [
        layers.MaxPooling3D(2)(vol),
        layers.AveragePooling3D((2, 3, 1), padding="same")(vol),
        layers.GlobalMaxPooling3D(keepdims=True)(vol),
        layers.GlobalAveragePooling3D()(vol),
    ]
    return keras.Model([seq, img, vol], p1 + p2 + p3)


def _reshaping() -> Any:
    return keras.Sequential(
        [
            keras.Input((4, 6)),
            layers.ZeroPadding1D((1, 2)),
            layers.Cropping1D(1),
            layers.UpSampling1D(3),
            layers.Permute((2, 1)),
            layers.Reshape((3, 2, -1)),
            layers.ZeroPadding2D(1),
            layers.Cropping2D(((0, 1), (1, 0))),
            layers.UpSampling2D(2),
            layers.Reshape((2, -1, 3, 1)),
            layers.ZeroPadding3D((1, 0, 2)),
            layers.Cropping3D(((1, 0), (0, 1), (1, 1))),
            layers.UpSampling3D((1, 2, 1)),
            layers.Flatten(),
            layers.RepeatVector(3),
        ]
    )


def _merging() -> Any:
    a, b = keras.Input((4, 5)), keras.Input((4, 5))
    c = keras.Input((1, 5))
    outs = [
        layers.Add()([a, b]),
        layers.Subtract()([a, b]),
        layers.Multiply()([a, c]),
        layers.Average()([a, b, a]),
        layers.Maximum()([a, b]),
        layers.Minimum()([b, c]),
        layers.Concatenate(axis=1)([a, b, c]),
        layers.Dot(axes=(2, 2))([a, b]),
        layers.Dot(axes=1, normalize=True)([a, b]),
    ]
    return keras.Model([a, b, c], outs)


def _activations_and_noise() -> Any:
    return keras.Sequential(
        [
            keras.Input((5, 6, 3)),
            layers.PReLU(),
            layers.PReLU(shared_axes=[1, 2]),
            layers.Activation("tanh"),
            layers.ReLU(max_value=6.0),
            layers.LeakyReLU(negative_slope=0.2),
            layers.ELU(),
            layers.Softmax(axis=1),
            layers.Dropout(0.1),
            layers.SpatialDropout2D(0.1),
            layers.GaussianNoise(0.1),
            layers.GaussianDropout(0.1),
            layers.AlphaDropout(0.1),
            layers.ActivityRegularization(l1=0.01),
            layers.Reshape((5, 18)),
            layers.SpatialDropout1D(0.2),
            layers.Reshape((5, 6, 3, 1)),
            layers.SpatialDropout3D(0.2),
            layers.Identity(),
        ]
    )


def _preprocessing_and_core() -> Any:
    img = keras.Input((20, 18, 3))
    x = layers.Rescaling(1 / 255)(img)
    x = layers.Resizing(12, 10)(x)
    x = layers.CenterCrop(8, 6)(x)
    x = layers.Normalization()(x)
    x = layers.Lambda(lambda t: t * 2, output_shape=(8, 6, 3))(x)
    x = layers.Flatten()(x)
    tokens = keras.Input((7,), dtype="int32")
    e = layers.Embedding(50, 4, mask_zero=True)(tokens)
    e = layers.Masking()(e)
    e = layers.EinsumDense("abc,cd->abd", output_shape=(7, 6), bias_axes="d")(e)
    e = layers.EinsumDense("abc,cde->abde", output_shape=(7, 2, 3), bias_axes="de")(e)
    e = layers.EinsumDense("abde,dec->abc", output_shape=(7, 5), bias_axes="c")(e)
    e = layers.EinsumDense("...b,bc->...c", output_shape=4)(e)
    e = layers.EinsumDense("ab...,bc->ac...", output_shape=(3,), bias_axes="c")(e)
    return keras.Model([img, tokens], [x, e])


def _augmentation_and_encoding() -> Any:
    img = keras.Input((24, 20, 3))
    x = img
    for layer in [
        layers.RandomFlip(), layers.RandomRotation(0.1), layers.RandomZoom(0.1),
        layers.RandomTranslation(0.1, 0.1), layers.RandomContrast(0.1), layers.RandomBrightness(0.1),
        layers.AugMix(), layers.AutoContrast(), layers.CutMix(), layers.MixUp(), layers.RandAugment(),
        layers.RandomColorDegeneration(0.2), layers.RandomColorJitter(), layers.RandomElasticTransform(),
        layers.RandomErasing(), layers.RandomGaussianBlur(), layers.RandomGrayscale(), layers.RandomHue(0.2),
        layers.RandomInvert(), layers.RandomPerspective(), layers.RandomPosterization((1, 4)),
        layers.RandomSaturation(0.2), layers.RandomSharpness(0.2), layers.RandomShear(0.1),
        layers.Solarization(), layers.RandomCrop(16, 12),
    ]:
        x = layer(x)
    values = keras.Input((5,))
    buckets = layers.Discretization(bin_boundaries=[0.0, 1.0])(values)
    one_hot = layers.Discretization(bin_boundaries=[0.0, 1.0, 2.0], output_mode="one_hot")(values)
    counts = layers.Discretization(bin_boundaries=[0.5], output_mode="count")(values)
    ids = keras.Input((6,), dtype="int32")
    multi = layers.CategoryEncoding(num_tokens=12)(ids)
    one_id = keras.Input((1,), dtype="int32")
    single = layers.CategoryEncoding(num_tokens=7, output_mode="one_hot")(one_id)
    emb = layers.ReversibleEmbedding(30, 8, tie_weights=False)(ids)
    tied = layers.ReversibleEmbedding(30, 8)(ids)
    return keras.Model([img, values, ids, one_id], [x, buckets, one_hot, counts, multi, single, emb, tied])


def _lora() -> Any:
    ids = keras.Input((5,), dtype="int32")
    x = layers.Embedding(40, 8, lora_rank=2)(ids)
    x = layers.Dense(6, lora_rank=3, lora_alpha=6)(x)
    x = layers.EinsumDense("abc,cde->abde", output_shape=(5, 2, 4), bias_axes="e", lora_rank=2)(x)
    x = layers.Reshape((5, 8, 1))(x)
    x = layers.Conv2D(3, 3, lora_rank=2)(x)
    return keras.Model(ids, x)


def _mixed_precision() -> Any:
    return keras.Sequential(
        [
            keras.Input((12,)),
            layers.Dense(8, dtype="mixed_float16"),
            layers.BatchNormalization(dtype="mixed_bfloat16"),
            layers.Dense(4, dtype="bfloat16"),
            layers.Dense(2, dtype="float16"),
        ]
    )


def _frozen_model() -> Any:
    model = keras.Sequential([keras.Input((3,)), layers.Dense(4), layers.BatchNormalization()])
    model.trainable = False
    return model


HAND_BUILT: list[tuple[str, Callable[[], Any]]] = [
    ("seed", _seed),
    ("shared_and_ops", _shared_and_ops),
    ("nested", _nested),
    ("nested_deeper", _nested_deeper),
    ("batchnorm_options", _batchnorm_options),
    ("normalizations", _normalizations),
    ("conv_channels_last", _conv_channels_last),
    ("conv_channels_first", _conv_channels_first),
    ("pooling", _pooling),
    ("reshaping", _reshaping),
    ("merging", _merging),
    ("activations_and_noise", _activations_and_noise),
    ("preprocessing_and_core", _preprocessing_and_core),
    ("augmentation_and_encoding", _augmentation_and_encoding),
    ("lora", _lora),
    ("mixed_precision", _mixed_precision),
    ("frozen_model", _frozen_model),
]


@pytest.mark.parametrize("build", [b for _, b in HAND_BUILT], ids=[n for n, _ in HAND_BUILT])
def test_hand_built_models(build: Callable[[], Any]) -> None:
    assert_parity(build())


def _strip_shapes(value: Any) -> Any:
    """The config with every recorded shape removed except the inputs' own."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            cfg = {k: v for k, v in value["config"].items() if k != "shape"}
            return {**value, "config": cfg}
        return {k: _strip_shapes(v) for k, v in value.items() if k != "build_config"}
    if isinstance(value, list):
        return [_strip_shapes(v) for v in value]
    return value


STRIPPED = [b for n, b in HAND_BUILT] + [
    lambda: keras.applications.MobileNetV3Small(weights=None, input_shape=(96, 96, 3)),
    lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3)),
    lambda: keras.applications.InceptionV3(weights=None, input_shape=(96, 96, 3)),
]


@pytest.mark.parametrize(
    "build", STRIPPED, ids=[n for n, _ in HAND_BUILT] + ["MobileNetV3Small", "EfficientNetB0", "InceptionV3"]
)
def test_rules_propagate_shapes_when_the_config_records_none(build: Callable[[], Any]) -> None:
    """With recorded shapes removed, every layer is sized from shapes the rules propagate."""
    model = build()
    config = _strip_shapes(json.loads(model.to_json()))
    anatomy = anatomy_from_config(config)
    tops = {layer.name: layer for layer in anatomy.layers}
    for klayer in model.layers:
        _check_layer(klayer, tops[klayer.name])
    assert totals(anatomy).params == model.count_params()
