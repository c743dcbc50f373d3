"""Rules for the core ``torch.nn`` layers: linear, bilinear, convolutions, embeddings, PReLU.

Shapes follow the PyTorch sources (``torch/nn/modules/linear.py``, ``conv.py``,
``sparse.py``): ``Linear.weight`` is ``(out_features, in_features)``; ``ConvNd.weight`` is
``(out_channels, in_channels / groups, *kernel_size)`` and ``ConvTransposeNd.weight`` is
``(in_channels, out_channels / groups, *kernel_size)``. Layers that hold no tensors
(activations, dropout, pooling, padding, containers) get a rule too, so that they are known
to be empty rather than unexplained.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn as nn
from torch.nn.modules import (
    activation,
    channelshuffle,
    distance,
    dropout,
    flatten,
    fold,
    padding,
    pixelshuffle,
    pooling,
    upsampling,
)
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear
from torch.nn.utils import parametrizations, parametrize

from paramscope.core.anatomy import Formula, Role
from paramscope.rules.torch._common import NO_PARAMS, classes_in, note, plus, rule, stored, times
from paramscope.rules.torch.registry import ModuleNote, TensorNote

__all__: list[str] = []


def _empty(module: Any) -> ModuleNote:
    return note({}, NO_PARAMS)


# A fallback: the tensor-holding classes in the same torch modules (PReLU, MultiheadAttention)
# keep their own rules whichever module registers first.
rule(
    *classes_in(
        (activation, channelshuffle, distance, dropout, flatten, fold, padding, pixelshuffle,
         pooling, upsampling),
        exclude=(nn.MultiheadAttention, nn.PReLU),
    ),
    fallback=True,
)(_empty)


@rule(nn.Sequential, nn.ModuleList, nn.ModuleDict)
def _container(module: Any) -> ModuleNote:
    return note({}, None, "a container: it holds no tensors of its own, only its children's")


@rule(nn.Identity)
def _identity(module: Any) -> ModuleNote:
    return note({}, NO_PARAMS, "passes its input through unchanged; it holds no tensors")


@rule(nn.ParameterList, nn.ParameterDict)
def _parameter_container(module: Any) -> ModuleNote:
    why = f"a tensor held by a {type(module).__name__}, sized when it was added"
    tensors = {
        name: TensorNote(Formula(stored(t).symbolic.replace("stored shape", "shape as added:"), stored(t).numeric), why)
        for name, t in module._parameters.items()
        if t is not None
    }
    total = plus(*(n.formula for n in tensors.values()))
    return note(tensors, total)


@rule(parametrize.ParametrizationList)
def _parametrization_list(module: Any) -> ModuleNote:
    weight_norm = any(type(p) is parametrizations._WeightNorm for p in module)
    tensors: dict[str, TensorNote] = {}
    for name, t in module._parameters.items():
        if t is None:
            continue
        if weight_norm and name == "original0":
            why = "weight_norm's magnitude g: the length each slice of the weight is scaled to"
        elif weight_norm and name == "original1":
            why = "weight_norm's direction v: the weight before it is normalised"
        else:
            why = "the tensor the parametrization computes the weight from"
        shape = stored(t)
        tensors[name] = TensorNote(Formula(shape.symbolic.replace("stored shape", "shape as stored:"), shape.numeric), why)
    names = ", ".join(type(p).__name__ for p in module)
    return note(tensors, plus(*(n.formula for n in tensors.values())), f"stored tensors of a parametrization ({names})")


@rule(parametrizations._SpectralNorm)
def _spectral_norm(module: Any) -> ModuleNote:
    why = "a power-iteration vector estimating the weight's largest singular value; updated in training, not by gradient"
    tensors = {
        name: TensorNote(times(("dim", int(t.shape[0]))), why, Role.BUFFER)
        for name, t in module._buffers.items()
        if t is not None
    }
    return note(tensors, NO_PARAMS, "spectral_norm: divides the weight by its largest singular value")


@rule(parametrizations._WeightNorm)
def _weight_norm(module: Any) -> ModuleNote:
    return note({}, NO_PARAMS, "weight_norm: weight = g x v / |v|")


def _weight_and_bias(module: Any, weight: Formula, why: str, unit: Literal["feature", "channel"]) -> ModuleNote:
    """A module's ``weight`` and, when it has one, its bias: one offset per output ``unit``.

    ``unit`` is ``"feature"`` or ``"channel"``; the bias has ``out_features`` or ``out_channels``
    entries, read from the module.
    """
    tensors = {"weight": TensorNote(weight, why)}
    bias = None
    if module.bias is not None:
        size = f"out_{unit}s"
        bias = times((size, getattr(module, size)))
        tensors["bias"] = TensorNote(bias, f"one offset per output {unit}")
    return note(tensors, plus(weight, bias))


@rule(nn.Linear, nn.LazyLinear)
def _linear(module: Any) -> ModuleNote:
    out_f, in_f = module.out_features, module.in_features
    weight = times(("out_features", out_f), ("in_features", in_f))
    why = "y = x W^T + b: one weight per (output, input) pair, stored (out_features, in_features)"
    return _weight_and_bias(module, weight, why, "feature")


@rule(NonDynamicallyQuantizableLinear)
def _out_proj(module: Any) -> ModuleNote:
    made = _linear(module)
    return note(
        made.tensors,
        made.formula,
        "a plain Linear under another name (MultiheadAttention's out_proj), kept distinct so that "
        "dynamic quantization leaves it alone",
    )


@rule(nn.Bilinear)
def _bilinear(module: Any) -> ModuleNote:
    out_f, in1, in2 = module.out_features, module.in1_features, module.in2_features
    weight = times(("out_features", out_f), ("in1_features", in1), ("in2_features", in2))
    why = "y_k = x1^T W_k x2 + b_k: one in1_features x in2_features matrix per output feature"
    return _weight_and_bias(module, weight, why, "feature")


_KERNEL_NAMES = {1: ("kernel_size",), 2: ("kernel_h", "kernel_w"), 3: ("kernel_d", "kernel_h", "kernel_w")}


def _conv_weight(first: tuple[str, int], second: tuple[str, int], groups: int, kernel: tuple[int, ...]) -> Formula:
    names = _KERNEL_NAMES.get(len(kernel), tuple(f"kernel_{i}" for i in range(len(kernel))))
    if groups == 1:
        head = times(first, second)
    else:
        head = Formula(
            f"{first[0]} x ({second[0]} / groups)", f"{first[1]} x ({second[1]} / {groups})"
        )
    k = times(*zip(names, kernel))
    return Formula(f"{head.symbolic} x {k.symbolic}", f"{head.numeric} x {k.numeric}")


def _conv_details(module: Any) -> str:
    parts = []
    if module.groups > 1:
        parts.append(
            f"groups={module.groups}: each filter sees only in_channels / groups = "
            f"{module.in_channels // module.groups} input channels"
        )
    if any(d != 1 for d in module.dilation):
        parts.append(f"dilation={tuple(module.dilation)} spreads the kernel taps apart without adding weights")
    return "; ".join(parts)


@rule(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LazyConv1d, nn.LazyConv2d, nn.LazyConv3d)
def _conv(module: Any) -> ModuleNote:
    weight = _conv_weight(
        ("out_channels", module.out_channels), ("in_channels", module.in_channels),
        module.groups, tuple(module.kernel_size),
    )
    why = "one filter per output channel, each spanning its input channels over the kernel window"
    details = _conv_details(module)
    return _weight_and_bias(module, weight, f"{why}; {details}" if details else why, "channel")


@rule(
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.LazyConvTranspose1d, nn.LazyConvTranspose2d, nn.LazyConvTranspose3d,
)
def _conv_transpose(module: Any) -> ModuleNote:
    weight = _conv_weight(
        ("in_channels", module.in_channels), ("out_channels", module.out_channels),
        module.groups, tuple(module.kernel_size),
    )
    why = (
        "stored (in_channels, out_channels / groups, *kernel), the reverse of Conv's order: a "
        "transposed convolution is the gradient of a convolution from out_channels to in_channels"
    )
    details = _conv_details(module)
    return _weight_and_bias(module, weight, f"{why}; {details}" if details else why, "channel")


def _embedding_why(module: Any) -> str:
    parts = ["one row of embedding_dim numbers per index (token id)"]
    if module.padding_idx is not None:
        parts.append(
            f"row {module.padding_idx} (padding_idx) is the padding vector: it gets no gradient, "
            "so training never changes it, but it is stored and counted like any other row"
        )
    if module.max_norm is not None:
        parts.append(f"rows looked up are renormalised in place to norm at most {module.max_norm}")
    return "; ".join(parts)


@rule(nn.Embedding)
def _embedding(module: Any) -> ModuleNote:
    weight = times(("num_embeddings", module.num_embeddings), ("embedding_dim", module.embedding_dim))
    text = "a lookup table: the forward pass indexes rows, it does not multiply"
    if module.sparse:
        text += "; sparse=True: gradients touch only the rows looked up"
    return note({"weight": TensorNote(weight, _embedding_why(module))}, weight, text)


@rule(nn.EmbeddingBag)
def _embedding_bag(module: Any) -> ModuleNote:
    weight = times(("num_embeddings", module.num_embeddings), ("embedding_dim", module.embedding_dim))
    text = (
        f"looks up bags of indices and reduces each bag by its {module.mode}, without building "
        "the intermediate embeddings; the table is the same as Embedding's"
    )
    return note({"weight": TensorNote(weight, _embedding_why(module))}, weight, text)


@rule(nn.PReLU)
def _prelu(module: Any) -> ModuleNote:
    weight = times(("num_parameters", module.num_parameters))
    why = (
        "one learned slope for negative inputs, shared by all channels"
        if module.num_parameters == 1
        else "one learned slope for negative inputs per channel"
    )
    return note({"weight": TensorNote(weight, why)}, weight)
