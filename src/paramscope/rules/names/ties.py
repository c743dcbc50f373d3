"""Shared storage among flat tensors (tied weights): which names are one tensor, and saying so."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from paramscope.core.anatomy import Layer, Tensor
from paramscope.core.tree import FlatTensor

__all__ = ["apply_declared_ties", "shared_groups", "mark_shared", "map_tensors"]


def apply_declared_ties(
    tensors: Sequence[FlatTensor], tied: Mapping[str, str], tie_reason: str
) -> tuple[list[FlatTensor], list[str]]:
    """Give each present alias of ``tied`` its target's storage key; a note for each absent one.

    Example:
        >>> ts, notes = apply_declared_ties([FlatTensor("a", (2,), "float32"), FlatTensor("b", (2,), "float32")], {"b": "a"}, "")
        >>> [t.key for t in ts], notes
        (['', 'a'], [])
    """
    out = list(tensors)
    keys = {ft.name: (ft.key or ft.name) for ft in out}
    notes: list[str] = []
    for alias, target in tied.items():
        if target not in keys:
            continue
        if alias in keys:
            out = [replace(ft, key=keys[target]) if ft.name == alias else ft for ft in out]
            keys[alias] = keys[target]
        else:
            why = f"{tie_reason}; " if tie_reason else ""
            notes.append(f"{alias} is not stored: it is tied to {target} ({why}one tensor, counted once).")
    return out, notes


def shared_groups(tensors: Sequence[FlatTensor]) -> dict[str, list[str]]:
    """Storage key -> the full names stored there, for keys held by more than one name."""
    owners: dict[str, list[str]] = {}
    for ft in tensors:
        owners.setdefault(ft.key or ft.name, []).append(ft.name)
    return {k: v for k, v in owners.items() if len(v) > 1}


def map_tensors(layer: Layer, fn: Callable[[Layer, Tensor], Tensor]) -> Layer:
    """A copy of ``layer`` and its descendants with every tensor replaced by ``fn(owner, tensor)``.

    Built children first with an explicit stack, so a deep tree needs no recursion.
    """
    done: dict[int, Layer] = {}
    stack: list[tuple[Layer, bool]] = [(layer, False)]
    while stack:
        node, expanded = stack.pop()
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in node.children)
            continue
        done[id(node)] = replace(
            node,
            tensors=tuple(fn(node, t) for t in node.tensors),
            children=tuple(done[id(c)] for c in node.children),
        )
    return done[id(layer)]


def mark_shared(layers: tuple[Layer, ...], shared: Mapping[str, list[str]], sep: str) -> tuple[Layer, ...]:
    """Layers whose shared tensors each say with whom they share storage."""
    if not shared:
        return layers

    def _mark(layer: Layer, t: Tensor) -> Tensor:
        group = shared.get(t.key)
        if not group:
            return t
        me = f"{layer.path}{sep}{t.name}"
        me = me if me in group else t.name
        others = ", ".join(g for g in group if g != me)
        return replace(t, why=f"{t.why}; shares one storage with {others}, counted once")

    return tuple(map_tensors(la, _mark) for la in layers)
