"""Rules on hand-worked cases, the arithmetic written out: no Keras needed."""

from __future__ import annotations

from paramscope.core.anatomy import Role
from paramscope.readers.keras.engine.graph import explain_layer
from paramscope.rules.keras.policy import parse_policy
from paramscope.rules.keras.registry import RuleOutput, registered_keras_rules


def _explain(cls: str, config: dict, *shapes: tuple) -> RuleOutput:
    out = explain_layer(cls, config, list(shapes))
    assert out is not None
    return out


def _n(out: RuleOutput) -> int:
    total = 0
    for w in out.weights:
        n = 1
        for d in w.shape:
            assert d is not None
            n *= d
        total += n
    return total


def test_dense_seed_example() -> None:
    out = _explain("Dense", {"units": 512}, (None, 4096))
    # kernel 4096 x 512 = 2,097,152; bias 512; total 2,097,664
    assert [w.shape for w in out.weights] == [(4096, 512), (512,)]
    assert _n(out) == 2_097_664
    assert out.formula is not None
    assert out.formula.symbolic == "input_dim x units + units"
    assert out.formula.numeric == "4,096 x 512 + 512"
    assert out.output_shapes == ((None, 512),)
    # Dense(512 -> 80): 512 x 80 + 80 = 41,040
    assert _n(_explain("Dense", {"units": 80}, (None, 512))) == 41_040
    # On a sequence only the last axis is contracted: (None, 7, 16) -> (None, 7, 4)
    seq = _explain("Dense", {"units": 4, "use_bias": False}, (None, 7, 16))
    assert seq.output_shapes == ((None, 7, 4),) and _n(seq) == 64


def test_batch_normalization_seed_example_and_options() -> None:
    out = _explain("BatchNormalization", {}, (None, 512))
    # gamma, beta, moving_mean, moving_variance: 4 x 512 = 2,048; the two moving ones are
    # statistics, 1,024 non-trainable
    assert _n(out) == 2_048
    assert [w.role for w in out.weights] == [Role.TRAINABLE, Role.TRAINABLE, Role.STATISTIC, Role.STATISTIC]
    assert "running average" in out.weights[2].why
    assert out.formula is not None and out.formula.numeric == "4 x 512"
    # center and scale off: only the statistics remain, 2 x 64
    bare = _explain("BatchNormalization", {"center": False, "scale": False, "axis": 1}, (None, 64, 9, 9))
    assert [w.name for w in bare.weights] == ["moving_mean", "moving_variance"] and _n(bare) == 128
    # axis -3 of (None, 32, 5, 5) is the 32 channels (channels_first)
    assert _explain("BatchNormalization", {"axis": -3}, (None, 32, 5, 5)).weights[0].shape == (32,)


def test_convolutions() -> None:
    # Conv2D 3x3, 64 -> 128: 3*3*64*128 + 128 = 73,856; 'same' with stride 2: 56 -> 28
    conv = _explain("Conv2D", {"filters": 128, "kernel_size": 3, "strides": 2, "padding": "same"},
                    (None, 56, 56, 64))
    assert _n(conv) == 73_856 and conv.output_shapes == ((None, 28, 28, 128),)
    # groups=4: kernel 3*3*(64/4)*128 = 18,432 (no bias)
    grouped = _explain("Conv2D", {"filters": 128, "kernel_size": 3, "groups": 4, "use_bias": False},
                       (None, 10, 10, 64))
    assert _n(grouped) == 18_432 and grouped.output_shapes == ((None, 8, 8, 128),)
    # DepthwiseConv2D 3x3, 32 channels, multiplier 2: 3*3*32*2 + 64 = 640
    dw = _explain("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2}, (None, 9, 9, 32))
    assert _n(dw) == 640 and dw.output_shapes == ((None, 7, 7, 64),)
    # SeparableConv2D 3x3, 32 -> 64: depthwise 3*3*32 = 288, pointwise 32*64 = 2,048, bias 64
    sep = _explain("SeparableConv2D", {"filters": 64, "kernel_size": 3, "padding": "same"}, (None, 8, 8, 32))
    assert _n(sep) == 288 + 2_048 + 64
    # Conv2DTranspose 4x4, 16 -> 8, stride 2 'same': kernel (4, 4, 8, 16) = 2,048 + 8; 7 -> 14
    tr = _explain("Conv2DTranspose", {"filters": 8, "kernel_size": 4, "strides": 2, "padding": "same"},
                  (None, 7, 7, 16))
    assert tr.weights[0].shape == (4, 4, 8, 16) and _n(tr) == 2_056
    assert tr.output_shapes == ((None, 14, 14, 8),)
    # Conv1D, dilation 2, kernel 3, 'valid': 20 - 2*(3-1) = 16
    c1 = _explain("Conv1D", {"filters": 4, "kernel_size": 3, "dilation_rate": 2}, (None, 20, 3))
    assert c1.output_shapes == ((None, 16, 4),)


def test_layer_group_and_prelu() -> None:
    ln = _explain("LayerNormalization", {"axis": -1}, (None, 10, 768))
    assert _n(ln) == 2 * 768  # gamma and beta
    rms = _explain("LayerNormalization", {"rms_scaling": True}, (None, 768))
    assert [w.name for w in rms.weights] == ["gamma"]
    gn = _explain("GroupNormalization", {"groups": 8}, (None, 4, 4, 64))
    assert _n(gn) == 128  # one gamma and beta per channel, not per group
    # PReLU on (None, 10, 10, 3): one slope per element, 300; shared over axes 1, 2: 3
    assert _n(_explain("PReLU", {}, (None, 10, 10, 3))) == 300
    assert _explain("PReLU", {"shared_axes": [1, 2]}, (None, 10, 10, 3)).weights[0].shape == (1, 1, 3)


def test_embedding_einsum_and_normalization() -> None:
    emb = _explain("Embedding", {"input_dim": 30_000, "output_dim": 128}, (None, 64))
    assert _n(emb) == 3_840_000 and emb.output_shapes == ((None, 64, 128),)
    # Query projection of attention: (768) -> (12 heads, 64): kernel 768*12*64 + bias 12*64
    ein = _explain("EinsumDense", {"equation": "abc,cde->abde", "output_shape": [None, 12, 64],
                                   "bias_axes": "de"}, (None, 16, 768))
    assert [w.shape for w in ein.weights] == [(768, 12, 64), (12, 64)]
    assert ein.output_shapes == ((None, None, 12, 64),)
    # Normalization over the last axis of (None, 5, 3) without a mean: mean 3, variance 3, count 1
    norm = _explain("Normalization", {"axis": -1, "mean": None}, (None, 5, 3))
    assert _n(norm) == 7 and norm.weights[2].dtype == "int32"
    assert not _explain("Normalization", {"mean": [0.5], "variance": [2.0]}, (None, 3)).weights


def test_quantized_dense_int8_bytes() -> None:
    policy = parse_policy({"class_name": "QuantizedDTypePolicy", "config": {"mode": "int8", "source_name": "float32"}})
    out = explain_layer("Dense", {"units": 512}, [(None, 4096)], policy=policy)
    assert out is not None
    # kernel int8 4096*512 bytes, bias float32 512*4 bytes, kernel_scale float32 512*4 bytes
    sizes = {w.name: (w.shape, w.dtype) for w in out.weights}
    assert sizes == {"kernel": ((4096, 512), "int8"), "bias": ((512,), "float32"),
                     "kernel_scale": ((512,), "float32")}


def test_policies() -> None:
    assert parse_policy("mixed_float16").variable_dtype == "float32"
    assert parse_policy("mixed_bfloat16").compute_dtype == "bfloat16"
    assert parse_policy({"class_name": "DTypePolicy", "config": {"name": "bfloat16"}}).variable_dtype == "bfloat16"
    int4 = parse_policy({"class_name": "Int4DTypePolicy", "config": {"mode": "int4/128", "source_name": "float32"}})
    assert (int4.quantization, int4.block_size) == ("int4", 128)
    f8 = parse_policy({"class_name": "QuantizedFloat8DTypePolicy",
                       "config": {"mode": "float8", "source_name": "mixed_bfloat16", "amax_history_length": 16}})
    assert (f8.quantization, f8.variable_dtype, f8.amax_history_length) == ("float8", "float32", 16)
    pmap = {"class_name": "DTypePolicyMap", "config": {
        "default_policy": {"class_name": "DTypePolicy", "config": {"name": "bfloat16"}},
        "policy_map": {"enc/.*": {"class_name": "QuantizedDTypePolicy",
                                  "config": {"mode": "int8", "source_name": None}},
                       "(a+)+b": {"class_name": "DTypePolicy", "config": {"name": "float16"}}}}}
    assert parse_policy(pmap, path="enc/q").quantization == "int8"
    assert parse_policy(pmap, path="enc/q").variable_dtype == "bfloat16"
    assert parse_policy(pmap, path="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac").variable_dtype == "bfloat16"


def test_every_family_registers_rules() -> None:
    names = set(registered_keras_rules())
    for cls in ["InputLayer", "Lambda"]:
        assert cls not in names  # handled by the engine itself
    for cls in ["Dense", "EinsumDense", "Embedding", "Conv3DTranspose", "SeparableConv1D",
                "BatchNormalization", "MaxPooling3D", "GlobalAveragePooling1D", "Cropping3D",
                "Concatenate", "Dot", "AlphaDropout", "PReLU", "Softmax", "Rescaling", "CenterCrop",
                "Normalization", "Identity", "Masking"]:
        assert cls in names, cls
