"""Totals of an anatomy: parameters, the trainable split, buffers and bytes by dtype.

Shared tensors (equal :attr:`Tensor.key`) are counted once. A tensor whose size is unknown
makes the totals incomplete rather than silently zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from paramscope.core.anatomy import Anatomy, Layer, Tensor
from paramscope.core.dtypes import n_bytes

__all__ = [
    "DTypeTotal",
    "Totals",
    "totals",
    "layer_totals",
    "sum_tensors",
    "unique_tensors",
    "shared_tensors",
]


@dataclass(frozen=True, slots=True)
class DTypeTotal:
    """Elements and bytes stored in one dtype."""

    dtype: str
    count: int
    n_bytes: int | None


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts derived from a set of tensors, each storage counted once.

    Attributes:
        params: elements the framework counts as parameters.
        trainable: parameters trained by gradient.
        non_trainable: parameters not trained by gradient (frozen weights, Keras's moving statistics).
        unknown_role: parameters whose role the source does not say (an unexplained ONNX
            initializer, a custom layer's weight read from a file): in ``params``, in neither split.
        buffers: elements stored but not counted as parameters (PyTorch buffers).
        n_bytes: bytes of all of them, parameters and buffers.
        param_bytes: bytes of the parameters alone.
        by_dtype: elements and bytes per dtype, largest first.
        complete: ``False`` when some tensor's size or some layer's contents are unknown.
        n_tensors: number of distinct tensors.
        bytes_complete: ``False`` when some tensor's bytes are unknown (its shape, or its
            dtype's size): the byte figures are then lower bounds.
        counts_complete: ``False`` when some element count is unknown (a tensor's shape, or a
            layer no rule explains): the counts are then lower bounds. Unlike ``complete``, a
            dtype of unknown size leaves it ``True``.
    """

    params: int = 0
    trainable: int = 0
    non_trainable: int = 0
    unknown_role: int = 0
    buffers: int = 0
    n_bytes: int = 0
    param_bytes: int = 0
    trainable_bytes: int = 0
    non_trainable_bytes: int = 0
    buffer_bytes: int = 0
    by_dtype: tuple[DTypeTotal, ...] = field(default=())
    complete: bool = True
    n_tensors: int = 0
    bytes_complete: bool = True
    counts_complete: bool = True


def unique_tensors(tensors: Iterable[Tensor]) -> Iterator[Tensor]:
    """The tensors with duplicates of one storage (equal non-empty key) dropped.

    Each storage appears where it is first listed; when one of its names is a parameter (a
    buffer registered over a parameter's storage), the parameter is the one kept, so the
    storage is counted as the parameter it is.
    """
    items = list(tensors)
    chosen: dict[str, Tensor] = {}
    for t in items:
        if t.key:
            first = chosen.get(t.key)
            if first is None or (t.is_param and not first.is_param):
                chosen[t.key] = t
    seen: set[str] = set()
    for t in items:
        if t.key:
            if t.key in seen:
                continue
            seen.add(t.key)
            yield chosen[t.key]
        else:
            yield t


def sum_tensors(tensors: Iterable[Tensor], known: bool = True) -> Totals:
    """Totals of some tensors (each storage once); ``known=False`` marks them incomplete."""
    counts = {"trainable": 0, "non_trainable": 0, "unknown": 0, "buffer": 0}
    byte_counts = {"trainable": 0, "non_trainable": 0, "unknown": 0, "buffer": 0}
    dtype_count: dict[str, int] = {}
    dtype_bytes: dict[str, int | None] = {}
    complete = known
    bytes_complete = known
    counts_complete = known
    n = 0
    for t in unique_tensors(tensors):
        n += 1
        count = t.count
        size = n_bytes(t.dtype, count)  # what t.n_bytes gives, without counting the elements twice
        if count is None or t.overlap is None:
            complete = bytes_complete = counts_complete = False
            continue
        if t.overlap:  # elements already counted with an overlapping view of the same storage
            count -= t.overlap
            size = n_bytes(t.dtype, count)
        counts[t.counted_as] += count
        dtype_count[t.dtype] = dtype_count.get(t.dtype, 0) + count
        if size is None:
            complete = bytes_complete = False
            dtype_bytes[t.dtype] = None
        else:
            byte_counts[t.counted_as] += size
            prev = dtype_bytes.get(t.dtype, 0)
            dtype_bytes[t.dtype] = None if prev is None else prev + size
    by_dtype = tuple(
        sorted(
            (DTypeTotal(d, c, dtype_bytes[d]) for d, c in dtype_count.items()),
            key=lambda x: (-(x.n_bytes or 0), x.dtype),
        )
    )
    return Totals(
        params=counts["trainable"] + counts["non_trainable"] + counts["unknown"],
        trainable=counts["trainable"],
        non_trainable=counts["non_trainable"],
        unknown_role=counts["unknown"],
        buffers=counts["buffer"],
        n_bytes=sum(byte_counts.values()),
        param_bytes=byte_counts["trainable"] + byte_counts["non_trainable"] + byte_counts["unknown"],
        trainable_bytes=byte_counts["trainable"],
        non_trainable_bytes=byte_counts["non_trainable"],
        buffer_bytes=byte_counts["buffer"],
        by_dtype=by_dtype,
        complete=complete,
        n_tensors=n,
        bytes_complete=bytes_complete,
        counts_complete=counts_complete,
    )


def totals(anatomy: Anatomy) -> Totals:
    """Totals of a whole model, each shared tensor counted once.

    Example:
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> t = totals(Anatomy("m", "keras", (Layer("d", "Dense", "d", (Tensor("kernel", (3, 2)),)),)))
        >>> t.params, t.n_bytes
        (6, 24)
    """
    tensors = (t for layer in anatomy.layers for t in layer.all_tensors())
    return sum_tensors(tensors, anatomy.complete)


def layer_totals(layer: Layer, *, recursive: bool = True) -> Totals:
    """Totals of one layer (with its descendants unless ``recursive=False``)."""
    if recursive:
        known = all(x.known for x in layer.walk())
        return sum_tensors(layer.all_tensors(), known)
    return sum_tensors(layer.tensors, layer.known)


def shared_tensors(anatomy: Anatomy) -> dict[str, list[str]]:
    """For each storage key used by more than one tensor, the paths of its owners."""
    owners: dict[str, list[str]] = {}
    for layer in anatomy.walk():
        for t in layer.tensors:
            if t.key:
                owners.setdefault(t.key, []).append(f"{layer.path}/{t.name}" if layer.path else t.name)
    return {k: v for k, v in owners.items() if len(v) > 1}
