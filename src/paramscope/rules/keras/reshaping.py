"""Rules for Keras reshaping layers: none has weights; only the output shape is derived.

Sources: keras/src/layers/reshaping/*.py ``compute_output_shape``.
"""

from __future__ import annotations

from math import prod
from typing import Any

from paramscope.core.anatomy import Shape
from paramscope.rules.keras.registry import RuleInput, RuleOutput, register_keras_rule
from paramscope.rules.keras.shapes import channels_last, pos_int

__all__: list[str] = []


@register_keras_rule("Flatten")
def flatten(inp: RuleInput) -> RuleOutput:
    """All non-batch axes into one (unknown if any of them is)."""
    rest = inp.input_shape[1:]
    n = None if any(d is None for d in rest) else prod(d for d in rest if d is not None)
    return RuleOutput(((inp.input_shape[0], n),))


@register_keras_rule("Reshape")
def reshape(inp: RuleInput) -> RuleOutput:
    """``target_shape``, with one ``-1`` resolved from the input size when it is known."""
    target = list(inp.config["target_shape"])
    if not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in target) or (
        target.count(-1) > 1
    ):
        raise ValueError(f"target_shape must be positive ints with at most one -1, got {target!r}")
    rest = inp.input_shape[1:]
    size = None if any(d is None for d in rest) else prod(d for d in rest if d is not None)
    out: list[int | None] = list(target)
    known = prod(d for d in target if d != -1)
    if -1 in target:
        if size is None:
            out[target.index(-1)] = None
        elif size % known:
            raise ValueError(f"{size} input elements cannot be reshaped to {target}")
        else:
            out[target.index(-1)] = size // known
    elif size is not None and size != known:
        raise ValueError(f"{size} input elements cannot be reshaped to {target}")
    return RuleOutput(((inp.input_shape[0], *out),))


@register_keras_rule("Permute")
def permute(inp: RuleInput) -> RuleOutput:
    """Axes reordered by ``dims`` (1-based, batch axis fixed)."""
    shape = inp.input_shape
    return RuleOutput(((shape[0], *(shape[int(d)] for d in inp.config["dims"])),))


@register_keras_rule("RepeatVector")
def repeat_vector(inp: RuleInput) -> RuleOutput:
    """``(batch, features)`` to ``(batch, n, features)``."""
    shape = inp.input_shape
    return RuleOutput(((shape[0], pos_int(inp.config, "n"), shape[1]),))


def _pairs(value: Any, rank: int) -> list[tuple[int, int]]:
    """Keras's padding/cropping forms: an int, one (a, b) pair, or one pair per axis."""
    if isinstance(value, int):
        return [(value, value)] * rank
    items = list(value)
    if rank == 1 and len(items) == 2 and all(isinstance(v, int) for v in items):
        return [(items[0], items[1])]
    out = []
    for v in items:
        out.append((v, v) if isinstance(v, int) else (int(v[0]), int(v[1])))
    if len(out) != rank:
        raise ValueError(f"expected {rank} (before, after) pairs, got {value!r}")
    return out


def _spatial_axes(inp: RuleInput, rank: int) -> list[int]:
    if rank == 1 or channels_last(inp.config):
        return list(range(1, rank + 1))
    return list(range(2, rank + 2))


def _resize(inp: RuleInput, key: str, sign: int) -> RuleOutput:
    rank = int(inp.class_name[-2])
    shape = list(inp.input_shape)
    for axis, (a, b) in zip(_spatial_axes(inp, rank), _pairs(inp.config[key], rank)):
        if shape[axis] is not None:
            shape[axis] = shape[axis] + sign * (a + b)  # type: ignore[operator]
    return RuleOutput((tuple(shape),))


@register_keras_rule("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def zero_padding(inp: RuleInput) -> RuleOutput:
    """Each spatial axis grows by its (before, after) padding."""
    return _resize(inp, "padding", 1)


@register_keras_rule("Cropping1D", "Cropping2D", "Cropping3D")
def cropping(inp: RuleInput) -> RuleOutput:
    """Each spatial axis shrinks by its (before, after) cropping."""
    return _resize(inp, "cropping", -1)


@register_keras_rule("UpSampling1D", "UpSampling2D", "UpSampling3D")
def up_sampling(inp: RuleInput) -> RuleOutput:
    """Each spatial axis multiplied by its ``size``."""
    rank = int(inp.class_name[-2])
    size = inp.config.get("size", 2)
    sizes = [size] * rank if isinstance(size, int) else [int(s) for s in size]
    shape: list[int | None] = list(inp.input_shape)
    for axis, s in zip(_spatial_axes(inp, rank), sizes):
        d = shape[axis]
        shape[axis] = None if d is None else d * s
    out: Shape = tuple(shape)
    return RuleOutput((out,))
