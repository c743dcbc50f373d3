"""The core model of a network, shared by every reader, analysis and renderer."""

from paramscope.core.anatomy import (
    ROLE_MEANING as ROLE_MEANING,
    Anatomy as Anatomy,
    Compute as Compute,
    Formula as Formula,
    Layer as Layer,
    Role as Role,
    Shape as Shape,
    Tensor as Tensor,
    TensorGroup as TensorGroup,
)
from paramscope.core.errors import (
    CorruptFileError as CorruptFileError,
    MissingDependencyError as MissingDependencyError,
    ModelError as ModelError,
    ParamscopeError as ParamscopeError,
    TargetError as TargetError,
    LimitError as LimitError,
    UnsafeFileError as UnsafeFileError,
    UnsupportedFormatError as UnsupportedFormatError,
)
