"""FLOPs of one inference pass of a Keras layer, from its config and shapes (batch of 1).

The convention is the project's (docs/flops.md): matrix products and convolutions go to
``flops``, one multiply-add being 2 FLOPs, with PyTorch's formulas
(``torch.utils.flop_counter``): a convolution costs ``2 x output positions x kernel size x
in_channels / groups x out_channels``; a transposed one counts input positions instead.
Products of two activations (``Dot``) go to ``attention_flops``. Layers that only move data
(reshape, crop, pad, dropout at inference) cost 0. The elementwise work of the other layers
(bias, activation, normalisation, pooling) is not costed here: ``elementwise_flops`` is then
``None`` (unknown), never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import re
from math import prod
from typing import Any

from paramscope.core.anatomy import Compute, Shape
from paramscope.core.compute import ZERO
from paramscope.core.compute import sum_compute as core_sum_compute
from paramscope.rules.keras.flops_sequence import attention_compute, conv_lstm_compute, recurrent_compute
from paramscope.rules.keras.shapes import channels_last, ntuple

__all__ = ["layer_compute", "sum_compute", "op_compute", "UNKNOWN"]

# Recurrent and attention layers are costed in flops_sequence.py; wrappers and LoRA here.

UNKNOWN = Compute(None, None, None)

#: Layers that only move, copy or drop data: no arithmetic at inference.
_FREE = frozenset(
    {
        "InputLayer", "Flatten", "Reshape", "Permute", "RepeatVector", "Identity",
        "Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D",
        "ZeroPadding3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Dropout",
        "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
        "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Concatenate", "Embedding",
        "CenterCrop", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
        "RandomContrast", "RandomBrightness", "RandomCrop",
    }
)  # fmt: skip

#: Layers whose work is all elementwise, normalisation or pooling (not costed here).
_NO_PRODUCT = frozenset(
    {
        "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "PReLU", "BatchNormalization",
        "LayerNormalization", "RMSNormalization", "GroupNormalization", "UnitNormalization",
        "Normalization", "LayerScale", "Rescaling", "Resizing",
        "Masking", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
        "CustomScaleLayer",
    }
    | {f"{k}Pooling{n}D" for k in ("Max", "Average", "GlobalMax", "GlobalAverage",
                                   "AdaptiveMax", "AdaptiveAverage") for n in (1, 2, 3)}
)  # fmt: skip

#: keras.ops nodes that only move data.
_FREE_OPS = frozenset(
    {
        "Reshape", "Transpose", "ExpandDims", "Squeeze", "Concatenate", "Stack", "Split",
        "GetItem", "Slice", "Flatten", "BroadcastTo", "Tile", "Repeat", "Take", "Identity",
        "ConvertToTensor", "StopGradient", "Shape",
    }
)  # fmt: skip


def _n(shape: Shape | None) -> int | None:
    """Elements of one sample: the batch axis (first) counts as 1; other unknowns are unknown."""
    if shape is None or any(d is None for d in shape[1:]):
        return None
    return prod(d for d in shape[1:] if d is not None)


def _mul(*xs: int | None) -> int | None:
    return None if any(x is None for x in xs) else prod(x for x in xs if x is not None)


def _elementwise(config: Mapping[str, Any], bias: bool) -> int | None:
    # A bias add or a non-linear activation is elementwise work this module does not cost.
    act = config.get("activation")
    return 0 if not bias and act in (None, "linear") else None


def _dense(config: Mapping[str, Any], ins: Sequence[Shape], out: Shape | None) -> Compute:
    return Compute(_mul(2, _n(out), ins[0][-1]), 0, _elementwise(config, bool(config.get("use_bias", True))))


def _einsum(config: Mapping[str, Any], ins: Sequence[Shape], out: Shape | None) -> Compute:
    from paramscope.rules.keras.core import einsum_shapes

    partial_raw = config.get("output_shape")
    partial = (partial_raw,) if isinstance(partial_raw, int) else tuple(partial_raw or ())
    kernel, _, _, w_spec, o_spec = einsum_shapes(str(config["equation"]), config.get("bias_axes"), ins[0], partial)
    contracted = prod(d for d, c in zip(kernel, w_spec) if c not in o_spec)
    return Compute(_mul(2, _n(out), contracted), 0, _elementwise(config, bool(config.get("bias_axes"))))


def _spatial_rank(class_name: str) -> int:
    m = re.search(r"(\d)D", class_name)
    if m is None:
        raise ValueError(f"no rank in {class_name}")
    return int(m.group(1))


def _conv(config: Mapping[str, Any], ins: Sequence[Shape], out: Shape | None, class_name: str) -> Compute:
    rank = _spatial_rank(class_name)
    kernel = prod(ntuple(config["kernel_size"], rank, "kernel_size"))
    inp = ins[0]
    c_in = inp[-1] if channels_last(config) else inp[1]
    bias = bool(config.get("use_bias", True))
    if class_name.startswith("Conv") and "Transpose" in class_name:
        groups = int(config.get("groups", 1) or 1)
        flops = _mul(2, _n(inp), kernel, int(config["filters"]) // groups)
    elif class_name.startswith("Conv"):
        groups = int(config.get("groups", 1) or 1)
        flops = _mul(2, _n(out), kernel, None if c_in is None else c_in // groups)
    elif class_name.startswith("Depthwise"):
        flops = _mul(2, _n(out), kernel)
    else:  # SeparableConv: depthwise onto c_in x multiplier channels, then a 1x1 conv
        mult = int(config.get("depth_multiplier", 1))
        n_out = _n(out)
        filters = int(config["filters"])
        positions = None if n_out is None else n_out // filters
        depthwise = _mul(2, positions, c_in, mult, kernel)
        pointwise = _mul(2, positions, c_in, mult, filters)
        flops = None if depthwise is None or pointwise is None else depthwise + pointwise
    return Compute(flops, 0, _elementwise(config, bias))


def _dot(config: Mapping[str, Any], ins: Sequence[Shape], out: Shape | None) -> Compute:
    axes = config.get("axes", -1)
    a = ins[0]
    axis = (axes if isinstance(axes, int) else int(axes[0])) % len(a)
    # Both operands are activations: an attention-like product (docs/flops.md).
    return Compute(0, _mul(2, _n(out), a[axis]), 0 if not config.get("normalize") else None)


_COSTS: dict[str, Callable[[Mapping[str, Any], Sequence[Shape], Shape | None], Compute]] = {
    "Dense": _dense,
    "EinsumDense": _einsum,
    "Dot": _dot,
}
_CONVS = frozenset(
    [f"Conv{n}D" for n in (1, 2, 3)] + [f"Conv{n}DTranspose" for n in (1, 2, 3)]
    + [f"DepthwiseConv{n}D" for n in (1, 2)] + [f"SeparableConv{n}D" for n in (1, 2)]
)


_RECURRENT = frozenset({"SimpleRNN", "LSTM", "GRU", "RNN"})
_CONV_LSTM = frozenset({"ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"})
_ATTENTION = frozenset({"MultiHeadAttention", "GroupQueryAttention", "GroupedQueryAttention", "Attention",
                        "AdditiveAttention"})  # fmt: skip
#: Layers besides the convolutions that may carry LoRA factors (``lora_rank``).
_LORA = frozenset({"Dense", "EinsumDense", "Embedding"})


def layer_compute(
    class_name: str,
    config: Mapping[str, Any],
    input_shapes: Sequence[Shape | None],
    output_shapes: Sequence[Shape | None],
) -> Compute:
    """FLOPs of one call of a Keras layer on one sample.

    Example:
        >>> layer_compute("Dense", {"units": 512, "use_bias": False}, [(None, 4096)], [(None, 512)]).flops
        4194304
    """
    out = output_shapes[0] if output_shapes else None
    lora = _lora_merge(class_name, config, input_shapes)
    if lora is not None:
        # The merge is its own product, added to whatever the layer computes with the kernel.
        total = core_sum_compute([lora, layer_compute(class_name, _without_lora(config), input_shapes, output_shapes)])
        return total if total is not None else UNKNOWN
    if class_name in _FREE:
        return Compute(0, 0, 0)
    if not input_shapes or any(s is None for s in input_shapes):
        return UNKNOWN
    ins = [s for s in input_shapes if s is not None]
    inner = config.get("layer")
    try:
        if class_name in _CONVS:
            return _conv(config, ins, out, class_name)
        if class_name in _COSTS:
            return _COSTS[class_name](config, ins, out)
        if class_name in _RECURRENT:
            return recurrent_compute(class_name, config, ins)
        if class_name in _CONV_LSTM:
            return conv_lstm_compute(class_name, config, ins)
        if class_name in _ATTENTION:
            return attention_compute(class_name, config, ins)
        if class_name in ("Bidirectional", "TimeDistributed") and isinstance(inner, Mapping):
            return _wrapper(class_name, config, inner, ins, out)
    except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError):
        return UNKNOWN
    if class_name == "SpectralNormalization" and isinstance(inner, Mapping):
        # At inference the wrapper runs its layer with the normalised kernel.
        return layer_compute(str(inner.get("class_name")), inner.get("config") or {}, input_shapes, output_shapes)
    if class_name in _NO_PRODUCT:
        return Compute(0, 0, None)
    return Compute(None, None, None, (class_name,))


def _wrapper(class_name: str, config: Mapping[str, Any], inner: Mapping[str, Any], ins: Sequence[Shape],
             out: Shape | None) -> Compute:  # fmt: skip
    """Bidirectional runs its layer forwards and (a copy, or ``backward_layer``) backwards; the
    merge (concat: free; sum, mul, ave: elementwise) is not a product. TimeDistributed runs its
    layer once per step of axis 1."""
    inner_cls, inner_cfg = str(inner.get("class_name")), inner.get("config") or {}
    if class_name == "Bidirectional":
        back = config.get("backward_layer")
        back_cls, back_cfg = (str(back.get("class_name")), back.get("config") or {}) if isinstance(back, Mapping) else (inner_cls, inner_cfg)
        parts = [layer_compute(inner_cls, inner_cfg, ins, ()), layer_compute(back_cls, back_cfg, ins, ())]
        merge = config.get("merge_mode", "concat")
        total = core_sum_compute(parts)
        if total is None:
            return UNKNOWN
        elementwise = total.elementwise_flops if merge in ("concat", None) else None
        return Compute(total.flops, total.attention_flops, elementwise, total.unknown_ops)
    x = ins[0]
    step_out = None if out is None else (out[0], *out[2:])
    once = layer_compute(inner_cls, inner_cfg, [(x[0], *x[2:])], [step_out] if step_out else [])
    steps = x[1]

    def times(v: int | None) -> int | None:
        return None if v is None or steps is None else v * steps

    return Compute(times(once.flops), times(once.attention_flops), times(once.elementwise_flops), once.unknown_ops)


def _lora_merge(class_name: str, config: Mapping[str, Any], ins: Sequence[Shape | None]) -> Compute | None:
    """The LoRA merge ``kernel + (alpha / rank) a @ b``, which Keras computes at every call
    (``Dense.kernel`` and friends are properties): a product of two weights, ``2 x rows x rank x
    columns`` FLOPs for a kernel of ``rows x columns`` (all axes but the last, and the last)."""
    rank = config.get("lora_rank")
    if not rank or (class_name not in _LORA and class_name not in _CONVS):
        return None
    from paramscope.rules.keras.registry import RuleInput, keras_rule

    rule = keras_rule(class_name)
    if rule is None or not ins or ins[0] is None:
        return UNKNOWN
    try:
        weights = rule(RuleInput(class_name, dict(config), tuple(s for s in ins if s is not None))).weights
    except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError):
        return UNKNOWN
    a = next((w.shape for w in weights if w.name.startswith("lora_") and w.name.endswith("_a")), None)
    b = next((w.shape for w in weights if w.name.startswith("lora_") and w.name.endswith("_b")), None)
    if a is None or b is None:
        return UNKNOWN
    rows = _mul(*a[:-1])
    return Compute(_mul(2, rows, int(rank), b[-1]), 0, None)


def _without_lora(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("lora_rank", "lora_alpha")}


def op_compute(class_name: str) -> Compute:
    """FLOPs of a ``keras.ops`` node: 0 for data movement and elementwise ops (whose
    elementwise work is not costed), unknown for anything else (a matmul, a conv...)."""
    from paramscope.rules.keras.ops import is_elementwise_op

    if class_name in _FREE_OPS:
        return Compute(0, 0, 0)
    if is_elementwise_op(class_name):
        return Compute(0, 0, None)
    return Compute(None, None, None, (f"keras.ops.{class_name}",))


def sum_compute(parts: Sequence[Compute | None]) -> Compute | None:
    """The sum of several Keras layers' FLOPs (:func:`paramscope.core.compute.sum_compute`);
    a model or block with no layers does no arithmetic: 0, not unknown."""
    return core_sum_compute(parts, empty=ZERO)
