"""The exceptions paramscope raises, one small hierarchy under :class:`ParamscopeError`.

Every message says what went wrong, where (file, layer path, byte offset) and what to do.
The CLI prints ``str(error)`` on one line and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "ParamscopeError",
    "TargetError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "UnsafeFileError",
    "LimitError",
    "MissingDependencyError",
    "ModelError",
]


class ParamscopeError(Exception):
    """Base class of every error paramscope raises on purpose.

    Args:
        message: what went wrong and what to do about it.
        where: the file, layer path or byte offset it concerns, if any.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class TargetError(ParamscopeError):
    """The thing to inspect cannot be found or is not a model (missing file, bad ``module:NAME``)."""


class UnsupportedFormatError(ParamscopeError):
    """The input exists but is in no format paramscope reads."""


class CorruptFileError(ParamscopeError):
    """The file claims a known format but its content is inconsistent or truncated."""


class UnsafeFileError(CorruptFileError):
    """The file asks for something paramscope refuses to do (run code, leave its folder, ...)."""


class LimitError(UnsafeFileError):
    """The file asks for more work than any real model needs (names, nodes, layers, bytes).

    Attributes:
        limit: the name of the limit hit (a constant of :mod:`paramscope.core.limits`).
        value: the file's value for it.
    """

    def __init__(self, message: str, *, limit: str, value: int, where: str | None = None) -> None:
        self.limit = limit
        self.value = value
        super().__init__(message, where=where)


class MissingDependencyError(ParamscopeError):
    """An optional dependency is needed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs {package}, which is not installed; "
            f"install it with: pip install 'paramscope[{extra}]'"
        )


class ModelError(ParamscopeError):
    """A model or config is valid input but cannot be analysed (bad shapes, cycles, ...)."""
