"""Rules for the normalisation layers of ``torch.nn``.

BatchNorm is where PyTorch and Keras disagree most visibly: both keep four vectors per
channel (gamma, beta, running mean, running variance), but PyTorch counts two of them as
parameters and files the running statistics as buffers, while Keras counts all four as
parameters, two of them non-trainable (``torch/nn/modules/batchnorm.py``;
``keras/src/layers/normalization/batch_normalization.py``).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from paramscope.core.anatomy import Formula, Role
from paramscope.rules.torch._common import NO_PARAMS, note, plus, rule, times
from paramscope.rules.torch.registry import ModuleNote, TensorNote

__all__: list[str] = []


def _stats(module: Any, per: str, n: int) -> dict[str, TensorNote]:
    """Notes for running_mean, running_var and num_batches_tracked, where present."""
    vec = times((per, n))
    if module.momentum is None:
        how = "a cumulative average over all training batches (momentum=None)"
    else:
        how = f"an exponential moving average (momentum={module.momentum}) over training batches"
    tensors = {}
    if module.running_mean is not None:
        tensors["running_mean"] = TensorNote(
            vec, f"the mean of each channel, {how}; used instead of the batch mean in eval mode",
            Role.STATISTIC,
        )
    if module.running_var is not None:
        tensors["running_var"] = TensorNote(
            vec, f"the variance of each channel, {how}; used instead of the batch variance in eval mode",
            Role.STATISTIC,
        )
    if getattr(module, "num_batches_tracked", None) is not None:
        tensors["num_batches_tracked"] = TensorNote(
            Formula("scalar", "1"),
            "an int64 counter of training batches seen; it sets the averaging factor when "
            "momentum=None and is bookkeeping otherwise",
            Role.BUFFER,
        )
    return tensors


def _affine(module: Any, per: str, n: int, *, has_bias: bool = True) -> tuple[dict[str, TensorNote], Formula]:
    """Notes for weight (gamma) and bias (beta), where present, and their total."""
    tensors: dict[str, TensorNote] = {}
    terms = []
    if module.weight is not None:
        w = times((per, n))
        tensors["weight"] = TensorNote(w, "gamma: a learned scale per channel, applied after normalising")
        terms.append(w)
    if has_bias and getattr(module, "bias", None) is not None:
        b = times((per, n))
        tensors["bias"] = TensorNote(b, "beta: a learned shift per channel, applied after the scale")
        terms.append(b)
    if len(terms) == 2:
        return tensors, Formula(f"2 x {per}", f"2 x {n}")
    return tensors, plus(*terms)


def _batch_norm_text(module: Any, n: int) -> str:
    params = 2 * n if module.affine else 0
    if module.affine and module.track_running_stats:
        return (
            f"PyTorch counts weight and bias (2 x {n:,} = {params:,}) as parameters and keeps "
            f"running_mean and running_var ({n:,} each) and num_batches_tracked (1) as buffers "
            f"({2 * n + 1:,} elements); Keras's BatchNormalization counts the same four vectors as "
            f"{4 * n:,} parameters, {2 * n:,} of them non-trainable"
        )
    if module.track_running_stats:
        return (
            f"affine=False: no learned scale or shift; the running statistics ({n:,} each) and "
            "num_batches_tracked are buffers, so the layer has no parameters"
        )
    if module.affine:
        return (
            f"track_running_stats=False: normalises with the statistics of each batch, in eval "
            f"mode too, so only weight and bias (2 x {n:,}) are stored"
        )
    return "affine=False and track_running_stats=False: the layer stores nothing"


@rule(
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
)
def _batch_norm(module: Any) -> ModuleNote:
    n = module.num_features
    tensors, formula = _affine(module, "num_features", n)
    tensors.update(_stats(module, "num_features", n))
    return note(tensors, formula, _batch_norm_text(module, n))


@rule(
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d,
)
def _instance_norm(module: Any) -> ModuleNote:
    n = module.num_features
    tensors, formula = _affine(module, "num_features", n)
    tensors.update(_stats(module, "num_features", n))
    text = "normalises each sample's channels over their own positions"
    if not tensors:
        text += "; with the defaults (affine=False, track_running_stats=False) it stores nothing"
    return note(tensors, formula, text)


def _shape_formula(shape: tuple[int, ...]) -> Formula:
    if len(shape) == 1:
        return times(("normalized_shape", shape[0]))
    return times(*((f"normalized_shape[{i}]", d) for i, d in enumerate(shape)))


@rule(nn.LayerNorm)
def _layer_norm(module: Any) -> ModuleNote:
    shape = tuple(module.normalized_shape)
    tensors: dict[str, TensorNote] = {}
    terms = []
    if module.weight is not None:
        w = _shape_formula(shape)
        tensors["weight"] = TensorNote(w, "gamma: a learned scale per normalised element")
        terms.append(w)
    if module.bias is not None:
        b = _shape_formula(shape)
        tensors["bias"] = TensorNote(b, "beta: a learned shift per normalised element")
        terms.append(b)
    if not module.elementwise_affine:
        text = "elementwise_affine=False: normalises without a learned scale or shift"
    elif module.bias is None:
        text = "bias=False: a learned scale only"
    else:
        text = ""
    if len(terms) == 2:
        formula = Formula(f"2 x {_wrap(terms[0].symbolic)}", f"2 x {_wrap(terms[0].numeric)}")
    else:
        formula = plus(*terms)
    return note(tensors, formula, text)


def _wrap(text: str) -> str:
    return f"({text})" if " x " in text else text


@rule(nn.RMSNorm)
def _rms_norm(module: Any) -> ModuleNote:
    shape = tuple(module.normalized_shape)
    tensors: dict[str, TensorNote] = {}
    formula = NO_PARAMS
    if module.weight is not None:
        formula = _shape_formula(shape)
        tensors["weight"] = TensorNote(formula, "a learned scale per normalised element")
    return note(
        tensors, formula,
        "divides by the root mean square, without subtracting the mean, so it has no bias",
    )


@rule(nn.GroupNorm)
def _group_norm(module: Any) -> ModuleNote:
    tensors, formula = _affine(module, "num_channels", module.num_channels)
    return note(
        tensors, formula,
        f"statistics over {module.num_groups} groups of channels; the affine scale and shift are "
        "per channel, so num_groups does not change the count",
    )


@rule(nn.LocalResponseNorm, nn.CrossMapLRN2d)
def _lrn(module: Any) -> ModuleNote:
    return note({}, NO_PARAMS, "normalises by a fixed function of neighbouring channels; it stores nothing")
