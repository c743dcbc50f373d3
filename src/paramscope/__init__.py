"""paramscope: explains where every parameter, byte and FLOP of a neural network comes from."""

from paramscope.core import (
    Anatomy as Anatomy,
    Compute as Compute,
    CorruptFileError as CorruptFileError,
    Formula as Formula,
    Layer as Layer,
    MissingDependencyError as MissingDependencyError,
    ModelError as ModelError,
    ParamscopeError as ParamscopeError,
    Role as Role,
    TargetError as TargetError,
    Tensor as Tensor,
    UnsafeFileError as UnsafeFileError,
    UnsupportedFormatError as UnsupportedFormatError,
)
from paramscope.readers import read as read

__version__ = "0.1.0"
