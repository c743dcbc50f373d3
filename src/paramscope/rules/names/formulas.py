"""Formulas naming each dimension of a stored tensor's shape, in each framework's layout."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from paramscope.core.anatomy import Formula

__all__ = ["Shape", "FormulaFn", "dims", "named", "torch_conv", "keras_kernel"]

Shape = tuple[int | None, ...]
FormulaFn = Callable[[Shape], Formula | None]


def dims(shape: Shape, names: Sequence[str]) -> Formula | None:
    """``out x in = 4 x 3`` for a shape whose rank matches ``names``; None otherwise.

    Example:
        >>> dims((4, 3), ("out_features", "in_features")).numeric
        '4 x 3'
    """
    if len(shape) != len(names) or any(d is None for d in shape):
        return None
    return Formula(" x ".join(names), " x ".join(str(d) for d in shape))


def named(*names: str) -> FormulaFn:
    """A formula naming each dimension of the shape, e.g. ``out_features x in_features``."""
    return lambda shape: dims(shape, names)


def torch_conv(shape: Shape) -> Formula | None:
    """PyTorch's convolution kernel layout ``(out_channels, in_channels / groups, *kernel_size)``."""
    spatial = ("kernel_h", "kernel_w", "kernel_d")[: max(len(shape) - 2, 0)]
    if len(shape) == 3:
        spatial = ("kernel_size",)
    return dims(shape, ("out_channels", "in_channels/groups", *spatial))


def keras_kernel(shape: Shape) -> Formula | None:
    """Keras's kernel layouts: Dense ``(input_dim, units)``, Conv ``(*kernel_size, in, filters)``."""
    if len(shape) == 2:
        return dims(shape, ("input_dim", "units"))
    spatial = ("kernel_h", "kernel_w", "kernel_d")[: max(len(shape) - 2, 0)]
    if len(shape) == 3:
        spatial = ("kernel_size",)
    return dims(shape, (*spatial, "in_channels", "filters"))
