"""Weights read from a saved file, checked against the weights a config implies.

A ``.keras`` archive keeps a layer's variables in ``model.weights.h5`` under index names
(``"0"``, ``"1"``...) in the order Keras saves them. The rule-derived tensors are paired with
them by name when the names agree, else by position, else by shape (first come first); any
disagreement is an error naming the layer and the weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from paramscope.core.anatomy import Role, Tensor
from paramscope.core.dtypes import canonical_dtype
from paramscope.core.errors import CorruptFileError
from paramscope.rules.keras.lora import LORA_PREFIX

__all__ = ["StoredWeight", "StoredWeights", "check_stored", "stored_tensors"]


@dataclass(frozen=True, slots=True)
class StoredWeight:
    """A weight as a saved file holds it (a ``.keras`` archive's ``model.weights.h5``).

    Attributes:
        name: its name in the file (Keras stores ``"0"``, ``"1"``... in save order).
        shape: its shape.
        dtype: its dtype in any spelling.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str


StoredWeights = Mapping[str, Sequence[StoredWeight]]


def check_stored(
    tensors: tuple[Tensor, ...],
    stored: Sequence[StoredWeight],
    class_name: str,
    where: str,
) -> tuple[Tensor, ...]:
    """The rule's tensors with the stored dtypes, after checking shapes against the file.

    Raises:
        CorruptFileError: a count or shape differs.
    """
    lora = tuple(t for t in tensors if t.name.startswith(LORA_PREFIX))
    if lora and len(stored) == len(tensors) - len(lora):
        # Keras saves a LoRA layer's kernel with the update merged in, not the factors.
        kept = tuple(t for t in tensors if not t.name.startswith(LORA_PREFIX))
        return check_stored(kept, stored, class_name, where) + lora
    names = ", ".join(t.name for t in tensors) or "none"
    if len(stored) != len(tensors):
        raise CorruptFileError(
            f"{class_name} layer has {len(stored)} stored weights, but its config implies "
            f"{len(tensors)} ({names}); the weights file does not belong to this config",
            where=where,
        )
    by_name = {s.name: s for s in stored}
    if set(by_name) == {t.name for t in tensors}:
        pairs = [(t, by_name[t.name]) for t in tensors]
    else:
        pairs = list(zip(tensors, stored))
        if any(tuple(t.shape or ()) != tuple(s.shape) for t, s in pairs):
            # Storage order differs from the rule's order: pair equal shapes, first come first.
            pool = list(stored)
            pairs = []
            for t in tensors:
                hit = next((s for s in pool if tuple(s.shape) == tuple(t.shape or ())), None)
                if hit is None:
                    shapes = ", ".join(str(list(s.shape)) for s in stored)
                    raise CorruptFileError(
                        f"{class_name} weight {t.name!r} should have shape {list(t.shape or ())} "
                        f"by the config, but the stored weights have shapes {shapes}",
                        where=where,
                    )
                pool.remove(hit)
                pairs.append((t, hit))
    out = []
    for t, s in pairs:
        if tuple(t.shape or ()) != tuple(s.shape):
            raise CorruptFileError(
                f"{class_name} weight {t.name!r} has stored shape {list(s.shape)}, but the config "
                f"implies {list(t.shape or ())}",
                where=where,
            )
        out.append(Tensor(t.name, t.shape, canonical_dtype(s.dtype), t.role, t.is_param,
                          t.key, t.formula, t.why))
    return tuple(out)


def stored_tensors(stored: Sequence[StoredWeight]) -> tuple[Tensor, ...]:
    """Tensors of a layer no rule explains, as the file holds them: count exact, role unknown."""
    return tuple(
        Tensor(
            name=s.name,
            shape=tuple(s.shape),
            dtype=canonical_dtype(s.dtype),
            role=Role.UNKNOWN,
            why="read from the weights file; no rule says whether it is trained by gradient",
        )
        for s in stored
    )
