"""Shape arithmetic shared by the Keras rules (convolution lengths, axes, formatting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import prod
from typing import Any

from paramscope.core.anatomy import Formula, Shape

__all__ = [
    "pos_int",
    "ntuple",
    "conv_length",
    "conv_transpose_length",
    "pool_length",
    "channels_last",
    "norm_axes",
    "fmt_int",
    "size_formula",
    "dim",
    "broadcast",
]


def pos_int(config: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """``config[key]`` as a positive int; Keras refuses anything else, and so does paramscope.

    Example:
        >>> pos_int({"units": 512}, "units")
        512
    """
    value = config.get(key, default)
    if value is None and default is not None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def ntuple(value: Any, n: int, name: str = "value") -> tuple[int, ...]:
    """``value`` as a tuple of ``n`` ints (Keras accepts an int or a sequence).

    Example:
        >>> ntuple(3, 2), ntuple([1, 2], 2)
        ((3, 3), (1, 2))
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a list of ints, not {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
        return (value,) * n
    if isinstance(value, Sequence) and not isinstance(value, str):
        out = tuple(value)
        if len(out) == 1 and n > 1:
            out = out * n
        if len(out) != n or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in out):
            raise ValueError(f"{name} must have {n} positive ints, got {value!r}")
        return out
    raise ValueError(f"{name} must be an int or a list of ints, not {value!r}")


def conv_length(
    length: int | None, kernel: int, padding: str, stride: int, dilation: int
) -> int | None:
    """Output length of a convolution along one axis.

    Follows keras/src/ops/operation_utils.py ``compute_conv_output_shape``: ``valid`` gives
    ``floor((L - d(k-1) - 1) / s) + 1``; ``same`` and ``causal`` give ``floor((L-1)/s) + 1``.

    Example:
        >>> conv_length(224, 7, "same", 2, 1), conv_length(224, 3, "valid", 1, 1)
        (112, 222)
    """
    if length is None:
        return None
    padding = padding.lower()
    if padding == "valid":
        out = (length - dilation * (kernel - 1) - 1) // stride + 1
    elif padding in ("same", "causal"):
        out = (length - 1) // stride + 1
    else:
        raise ValueError(f"padding must be 'valid', 'same' or 'causal', got {padding!r}")
    if out <= 0:
        raise ValueError(f"a window of {kernel} (dilation {dilation}) does not fit in length {length}")
    return out


def conv_transpose_length(
    length: int | None,
    kernel: int,
    padding: str,
    stride: int,
    dilation: int,
    output_padding: int | None,
) -> int | None:
    """Output length of a transposed convolution along one axis.

    Follows keras/src/backend/common/backend_utils.py ``_get_output_shape_given_tf_padding``.

    Example:
        >>> conv_transpose_length(7, 3, "same", 2, 1, None)
        14
    """
    if length is None:
        return None
    k = (kernel - 1) * dilation + 1
    if padding.lower() == "valid":
        extra = max(k, stride) - k if output_padding is None else output_padding
        return (length - 1) * stride + k + extra
    if output_padding is None:
        return length * stride
    return (length - 1) * stride + k % 2 + output_padding


def pool_length(length: int | None, pool: int, padding: str, stride: int) -> int | None:
    """Output length of a pooling window along one axis (Keras ``compute_pooling_output_shape``).

    Example:
        >>> pool_length(7, 2, "valid", 2), pool_length(7, 2, "same", 2)
        (3, 4)
    """
    if length is None:
        return None
    out = (length - pool) // stride + 1 if padding.lower() == "valid" else (length - 1) // stride + 1
    if out <= 0:
        raise ValueError(f"a pooling window of {pool} does not fit in length {length}")
    return out


def channels_last(config: Mapping[str, Any]) -> bool:
    """Whether a layer's ``data_format`` puts channels last (Keras's default)."""
    return config.get("data_format") in (None, "channels_last")


def norm_axes(axis: Any, rank: int) -> tuple[int, ...]:
    """Non-negative axes from an int or a list (negative axes count from the end).

    Example:
        >>> norm_axes(-1, 4), norm_axes([1, -1], 4)
        ((3,), (1, 3))
    """
    axes = [axis] if isinstance(axis, int) else list(axis)
    out = []
    for a in axes:
        if not isinstance(a, int) or not -rank <= a < rank:
            raise ValueError(f"axis {a!r} is out of range for an input of rank {rank}")
        out.append(a % rank)
    return tuple(out)


def dim(shape: Shape, axis: int, what: str = "dimension") -> int:
    """``shape[axis]``, refusing an unknown size (a weight's shape cannot depend on it)."""
    d = shape[axis]
    if d is None:
        raise ValueError(f"the {what} (axis {axis} of input shape {list(shape)}) is unknown")
    return d


def fmt_int(n: int) -> str:
    """An int with thousands separators, the way formulas show numbers."""
    return f"{n:,}"


def size_formula(names: Sequence[str], values: Sequence[int]) -> Formula:
    """``Formula("a x b", "3 x 4")`` for a product of named sizes.

    Example:
        >>> size_formula(["input_dim", "units"], [4096, 512])
        Formula(symbolic='input_dim x units', numeric='4,096 x 512')
    """
    if not names:
        return Formula("1", "1")
    return Formula(" x ".join(names), " x ".join(fmt_int(v) for v in values))


def broadcast(shapes: Sequence[Shape]) -> Shape:
    """Numpy-style broadcast of shapes; an unknown dimension stays unknown unless another is > 1.

    Example:
        >>> broadcast([(None, 4), (1, 4)])
        (None, 4)
    """
    rank = max(len(s) for s in shapes)
    out: list[int | None] = []
    for i in range(rank):
        dims = [s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ValueError(f"shapes {[list(s) for s in shapes]} do not broadcast")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def n_elements(shape: Shape) -> int | None:
    """Elements of a shape, ``None`` if any dimension is unknown."""
    if any(d is None for d in shape):
        return None
    return prod(d for d in shape if d is not None)
