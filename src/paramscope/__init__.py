"""paramscope: explains where every parameter, byte and FLOP of a neural network comes from.

Example:
    >>> import paramscope
    >>> from paramscope import keras
    >>> x = keras.Input(shape=(512,))
    >>> model = keras.Model(x, keras.layers.BatchNormalization()(x))
    >>> paramscope.totals(model).non_trainable
    1024
"""

from typing import Any

from paramscope.analysis.totals import Totals
from paramscope.analysis.totals import totals as _totals
from paramscope.api import Report, check, diff, explain, memory, read, render_memory, summary
from paramscope.core import (
    Anatomy,
    Compute,
    CorruptFileError,
    Formula,
    Layer,
    MissingDependencyError,
    ModelError,
    ParamscopeError,
    Role,
    TargetError,
    Tensor,
    TensorGroup,
    UnsafeFileError,
    UnsupportedFormatError,
)

__version__ = "0.1.0"

__all__ = [
    "Anatomy",
    "Compute",
    "CorruptFileError",
    "Formula",
    "Layer",
    "MissingDependencyError",
    "ModelError",
    "ParamscopeError",
    "Report",
    "Role",
    "TargetError",
    "Tensor",
    "TensorGroup",
    "Totals",
    "UnsafeFileError",
    "UnsupportedFormatError",
    "__version__",
    "check",
    "diff",
    "explain",
    "memory",
    "read",
    "render_memory",
    "summary",
    "totals",
]


def totals(source: Any, **options: Any) -> Totals:
    """Parameter, buffer and byte totals of anything :func:`read` reads.

    Example:
        >>> from paramscope import keras
        >>> x = keras.Input(shape=(4,))
        >>> totals(keras.Model(x, keras.layers.Dense(2)(x))).params
        10
    """
    return _totals(read(source, **options))
