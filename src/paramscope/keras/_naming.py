"""Layer and model names as Keras 3 makes them: ``dense``, ``dense_1``, ``batch_normalization``."""

from __future__ import annotations

import re

__all__ = ["to_snake_case", "unique_name", "clear_session"]

_uids: dict[str, int] = {}


def to_snake_case(name: str) -> str:
    """``BatchNormalization`` -> ``batch_normalization``; ``Conv2D`` -> ``conv2d`` (Keras's rule)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(prefix: str) -> str:
    """The next free name for ``prefix`` in this session: ``dense``, then ``dense_1``..."""
    n = _uids.get(prefix, 0)
    _uids[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def clear_session() -> None:
    """Forget the names given so far, like ``keras.backend.clear_session()``."""
    _uids.clear()
