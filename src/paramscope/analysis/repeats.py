"""Repeated blocks: runs of identical sibling layers (32 decoder layers) shown as one row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from paramscope.core.anatomy import Layer

__all__ = ["Run", "signature", "collapse"]


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive sibling layers with the same structure.

    Attributes:
        layers: the members, in order (one for a layer that is not repeated).
    """

    layers: tuple[Layer, ...]

    @property
    def first(self) -> Layer:
        """The first member, which stands for the run."""
        return self.layers[0]

    @property
    def n(self) -> int:
        """How many members the run has."""
        return len(self.layers)

    @property
    def label(self) -> str:
        """``"layers.0-31"`` style name of the run, or the single layer's name."""
        if self.n == 1:
            return self.first.name
        first, last = self.first.name, self.layers[-1].name
        return f"{first}-{last}"


def signature(layer: Layer) -> tuple[object, ...]:
    """What must be equal for two layers to count as repeats: type, tensors, children."""
    return (
        layer.type,
        layer.known,
        tuple((t.name, t.shape, t.dtype, t.role, t.is_param) for t in layer.tensors),
        tuple((c.name, signature(c)) for c in layer.children),
    )


def collapse(layers: Sequence[Layer], *, min_run: int = 2) -> list[Run]:
    """Group consecutive siblings with equal :func:`signature` into runs.

    Only layers whose names are consecutive integers (``"0"``, ``"1"``...) are merged, so that
    distinct layers that happen to look alike (``q_proj`` and ``k_proj``) keep their rows.

    Example:
        >>> from paramscope.core import Layer
        >>> [r.label for r in collapse([Layer(str(i), "Block") for i in range(3)])]
        ['0-2']
    """
    runs: list[list[Layer]] = []
    for layer in layers:
        if runs:
            prev = runs[-1][-1]
            if (
                layer.name.isdigit()
                and prev.name.isdigit()
                and int(layer.name) == int(prev.name) + 1
                and signature(layer) == signature(prev)
            ):
                runs[-1].append(layer)
                continue
        runs.append([layer])
    out: list[Run] = []
    for members in runs:
        if len(members) >= min_run:
            out.append(Run(tuple(members)))
        else:
            out.extend(Run((m,)) for m in members)
    return out
