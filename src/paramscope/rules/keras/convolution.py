"""Rules for Keras convolutions: Conv, ConvTranspose, DepthwiseConv and SeparableConv, 1D-3D.

Kernel layouts follow keras/src/layers/convolutional/base_*conv*.py ``build``:
Conv ``kernel_size + (in_channels / groups, filters)``; ConvTranspose
``kernel_size + (filters, in_channels)``; DepthwiseConv ``kernel_size + (in_channels,
depth_multiplier)``; SeparableConv a depthwise kernel plus a 1x1 ``pointwise_kernel``.
"""

from __future__ import annotations

from paramscope.core.anatomy import Formula, Shape
from paramscope.rules.keras.lora import apply_lora
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight, register_keras_rule
from paramscope.rules.keras.shapes import (
    channels_last,
    conv_length,
    conv_transpose_length,
    dim,
    fmt_int,
    ntuple,
    pos_int,
    size_formula,
)

__all__: list[str] = []

_RANK = {"1D": 1, "2D": 2, "3D": 3}
_KERNEL_NAMES = {1: ["k"], 2: ["kh", "kw"], 3: ["kd", "kh", "kw"]}


def _rank(class_name: str) -> int:
    return _RANK[class_name[-2:]] if class_name[-2:] in _RANK else _RANK[class_name[-11:-9]]


def _split(inp: RuleInput, rank: int) -> tuple[int, tuple[int | None, ...], bool]:
    shape = inp.input_shape
    if len(shape) != rank + 2:
        raise ValueError(f"expects an input of rank {rank + 2}, got shape {list(shape)}")
    last = channels_last(inp.config)
    ch_axis = -1 if last else 1
    spatial = shape[1:-1] if last else shape[2:]
    return dim(shape, ch_axis, "channel count"), spatial, last


def _assemble(batch: int | None, spatial: list[int | None], channels: int, last: bool) -> Shape:
    return (batch, *spatial, channels) if last else (batch, channels, *spatial)


def _bias(inp: RuleInput, n: int, label: str = "filters") -> tuple[Weight, ...]:
    if not inp.config.get("use_bias", True):
        return ()
    return (Weight("bias", (n,), formula=Formula(label, fmt_int(n))),)


def _total(weights: tuple[Weight, ...]) -> Formula:
    parts = [w.formula for w in weights if w.formula is not None]
    return Formula(" + ".join(p.symbolic for p in parts), " + ".join(p.numeric for p in parts))


def _conv_spatial(inp: RuleInput, rank: int, spatial: tuple[int | None, ...]) -> tuple[list[int | None], tuple[int, ...]]:
    c = inp.config
    kernel = ntuple(c["kernel_size"], rank, "kernel_size")
    strides = ntuple(c.get("strides", 1), rank, "strides")
    dilation = ntuple(c.get("dilation_rate", 1), rank, "dilation_rate")
    padding = str(c.get("padding", "valid"))
    out = [conv_length(spatial[i], kernel[i], padding, strides[i], dilation[i]) for i in range(rank)]
    return out, kernel


@register_keras_rule("Conv1D", "Conv2D", "Conv3D")
def conv(inp: RuleInput) -> RuleOutput:
    """``kernel (*kernel_size, in_channels / groups, filters)`` and ``bias (filters,)``."""
    rank = _rank(inp.class_name)
    channels, spatial, last = _split(inp, rank)
    filters = pos_int(inp.config, "filters")
    groups = pos_int(inp.config, "groups", 1)
    if channels % groups:
        raise ValueError(f"{channels} input channels are not divisible by groups={groups}")
    out_spatial, kernel = _conv_spatial(inp, rank, spatial)
    names = _KERNEL_NAMES[rank] + (["in_channels / groups"] if groups > 1 else ["in_channels"]) + ["filters"]
    kshape = (*kernel, channels // groups, filters)
    weights = (Weight("kernel", kshape, formula=size_formula(names, list(kshape))), *_bias(inp, filters))
    out = _assemble(inp.input_shape[0], out_spatial, filters, last)
    return apply_lora(inp, RuleOutput((out,), weights, _total(weights)), "kernel", kshape)


@register_keras_rule("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
def conv_transpose(inp: RuleInput) -> RuleOutput:
    """``kernel (*kernel_size, filters, in_channels)`` and ``bias (filters,)``."""
    rank = _rank(inp.class_name)
    channels, spatial, last = _split(inp, rank)
    c = inp.config
    filters = pos_int(c, "filters")
    kernel = ntuple(c["kernel_size"], rank, "kernel_size")
    strides = ntuple(c.get("strides", 1), rank, "strides")
    dilation = ntuple(c.get("dilation_rate", 1), rank, "dilation_rate")
    op = c.get("output_padding")
    opad = None if op is None else ntuple(op, rank, "output_padding")
    padding = str(c.get("padding", "valid"))
    out_spatial = [
        conv_transpose_length(spatial[i], kernel[i], padding, strides[i], dilation[i],
                              None if opad is None else opad[i])
        for i in range(rank)
    ]
    kshape = (*kernel, filters, channels)
    names = _KERNEL_NAMES[rank] + ["filters", "in_channels"]
    weights = (Weight("kernel", kshape, formula=size_formula(names, list(kshape))), *_bias(inp, filters))
    out = _assemble(inp.input_shape[0], out_spatial, filters, last)
    return RuleOutput((out,), weights, _total(weights))


def _depthwise_kernel(name: str, kernel: tuple[int, ...], channels: int, mult: int) -> Weight:
    """A depthwise kernel ``(*kernel_size, in_channels, depth_multiplier)``: ``depth_multiplier``
    filters per input channel, each seeing that channel only."""
    shape = (*kernel, channels, mult)
    names = _KERNEL_NAMES[len(kernel)] + ["in_channels", "depth_multiplier"]
    return Weight(name, shape, formula=size_formula(names, list(shape)))


@register_keras_rule("DepthwiseConv1D", "DepthwiseConv2D")
def depthwise_conv(inp: RuleInput) -> RuleOutput:
    """``kernel (*kernel_size, in_channels, depth_multiplier)``, bias ``(in_channels x depth_multiplier,)``."""
    rank = _rank(inp.class_name)
    channels, spatial, last = _split(inp, rank)
    mult = pos_int(inp.config, "depth_multiplier", 1)
    out_spatial, kernel = _conv_spatial(inp, rank, spatial)
    weights: tuple[Weight, ...] = (_depthwise_kernel("kernel", kernel, channels, mult),)
    if inp.config.get("use_bias", True):
        n = channels * mult
        weights += (Weight("bias", (n,), formula=size_formula(["in_channels", "depth_multiplier"], [channels, mult])),)
    out = _assemble(inp.input_shape[0], out_spatial, channels * mult, last)
    return RuleOutput((out,), weights, _total(weights))


@register_keras_rule("SeparableConv1D", "SeparableConv2D")
def separable_conv(inp: RuleInput) -> RuleOutput:
    """A depthwise kernel, then a 1x1 pointwise kernel mixing the channels into ``filters``."""
    rank = _rank(inp.class_name)
    channels, spatial, last = _split(inp, rank)
    mult = pos_int(inp.config, "depth_multiplier", 1)
    filters = pos_int(inp.config, "filters")
    out_spatial, kernel = _conv_spatial(inp, rank, spatial)
    pshape = (*([1] * rank), channels * mult, filters)
    weights = (
        _depthwise_kernel("depthwise_kernel", kernel, channels, mult),
        Weight("pointwise_kernel", pshape,
               formula=size_formula(["in_channels x depth_multiplier", "filters"], [channels * mult, filters])),
        *_bias(inp, filters),
    )
    out = _assemble(inp.input_shape[0], out_spatial, filters, last)
    return RuleOutput((out,), weights, _total(weights))
