"""Which live tensors are one storage, and how many elements partly overlapping views share.

Two tensor objects that view the same elements of one storage (a tied embedding and output
head, a buffer registered over a parameter) are one tensor: they get one key and are counted
once. Two views that overlap only in part (``base[0:60]`` and ``base[40:100]``) are different
tensors, but their union is what is stored: the later one carries the number of elements it
shares with the views seen before it (:attr:`Tensor.overlap`), so totals count each storage
element once.

Element ranges are exact for every view whose elements form one contiguous range (contiguous
tensors, and transposed or permuted ones) and, up to :data:`MAX_ENUMERATED` elements, for any
strided view (its element offsets are listed). Beyond that the overlap of a strided view with
the others is unknown, and said so (``None``), never guessed. Tensors without storage (``meta``,
tensor subclasses) are matched by identity only. Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StorageKeys", "MAX_ENUMERATED"]

#: Largest strided (non-contiguous) view whose element offsets are listed to measure overlap.
MAX_ENUMERATED = 1 << 22

Interval = tuple[int, int]  # [start, end) in bytes from the storage's start


def _merge(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _covered(intervals: list[Interval], cover: list[Interval]) -> int:
    """Bytes of ``intervals`` (merged) that lie inside ``cover`` (merged)."""
    total, j = 0, 0
    for start, end in intervals:
        while j < len(cover) and cover[j][1] <= start:
            j += 1
        k = j
        while k < len(cover) and cover[k][0] < end:
            total += min(end, cover[k][1]) - max(start, cover[k][0])
            k += 1
    return total


def _intervals(t: Any) -> list[Interval] | None:
    """The byte ranges of the storage a view reads, merged; ``None`` when too many to list."""
    import torch

    size = t.element_size()
    numel = t.numel()
    if numel == 0:
        return []
    offset = t.storage_offset()
    span = 1 + sum((d - 1) * abs(s) for d, s in zip(t.shape, t.stride()))
    if span == numel:  # its elements fill one range (contiguous, transposed, permuted)
        return [(offset * size, (offset + span) * size)]
    if numel > MAX_ENUMERATED:
        return None
    offsets = torch.tensor([offset], dtype=torch.int64)
    for d, s in zip(t.shape, t.stride()):
        offsets = (offsets.unsqueeze(-1) + torch.arange(d, dtype=torch.int64) * s).reshape(-1)
    starts = torch.unique(offsets).tolist()
    return _merge([(o * size, (o + 1) * size) for o in starts])


class StorageKeys:
    """One key per storage view, and the overlap of each new view with the views seen before.

    Attributes:
        aliases: ``(name, first name)`` of distinct objects viewing the same elements.
        params: full names registered as parameters (the caller fills it).
        overlap: for each key, elements shared with earlier views of its storage (``None``:
            not computable exactly).
    """

    def __init__(self) -> None:
        self.by_id: dict[int, str] = {}
        self.by_view: dict[tuple[Any, ...], str] = {}
        self.aliases: list[tuple[str, str]] = []
        self.overlap: dict[str, int | None] = {}
        self.params: set[str] = set()  # full names registered as parameters
        self._cover: dict[tuple[str, int], list[Interval]] = {}
        self._inexact: set[tuple[str, int]] = set()
        self.keep: list[Any] = []  # keeps ids valid while the reader runs

    def key(self, t: Any, full_name: str) -> str:
        """The key of ``t``, registered under ``full_name`` if it is a new storage view."""
        k = self.by_id.get(id(t))
        if k is not None:
            return k
        self.keep.append(t)
        where = _storage(t)
        view = None if where is None else (*where, t.storage_offset(), tuple(t.shape), tuple(t.stride()), str(t.dtype))
        if view is not None and view in self.by_view:
            k = self.by_view[view]
            self.aliases.append((full_name, k))
        else:
            k = full_name
            if view is not None and where is not None:
                self.by_view[view] = k
                self.overlap[k] = self._add(where, t)
        self.by_id[id(t)] = k
        return k

    def _add(self, where: tuple[str, int], t: Any) -> int | None:
        """Record the view's ranges; the elements it shares with earlier views (or itself)."""
        ranges = _intervals(t)
        cover = self._cover.setdefault(where, [])
        size = t.element_size()
        if ranges is None:  # a large strided view: its ranges are not listed
            self._inexact.add(where)
            return None if cover or 0 in t.stride() else 0
        if where in self._inexact:  # an earlier view of this storage was not listed
            return None
        shared = _covered(ranges, cover)
        self._cover[where] = _merge(cover + ranges)
        repeated = t.numel() * size - sum(e - s for s, e in ranges)  # elements read twice (stride 0)
        total = shared + repeated
        return total // size if total % size == 0 else None

def _storage(t: Any) -> tuple[str, int] | None:
    """(device, address) of the storage a tensor views; ``None`` without a plain storage."""
    try:
        if t.device.type == "meta":
            return None
        ptr = t.untyped_storage().data_ptr()
        return (str(t.device), int(ptr)) if ptr else None
    except (RuntimeError, NotImplementedError, AttributeError, TypeError, ValueError):
        return None  # tensor subclasses without a plain storage: identity only
