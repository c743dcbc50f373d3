"""The rank layout of a sharded checkpoint: which rank holds which slice of which tensor.

A :class:`RankLayout` is plain data: per rank its slices, elements and bytes; the imbalance
between ranks; and what the same tensors would take per rank at other world sizes when
sharded as FSDP2 does (each tensor split on dim 0 into ``ceil(rows / N)``-row pieces, the last
ranks getting fewer or none, as ``torch.chunk`` does). :mod:`paramscope.render.layout` formats it.

Example:
    >>> from paramscope.readers.distributed.layout import fsdp_projection
    >>> p = fsdp_projection([("w", (10, 4), "float32")], 4)   # rows 3, 3, 3, 1
    >>> p.max_rank_bytes, p.min_rank_bytes
    (48, 16)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

from paramscope.core.dtypes import n_bytes
from paramscope.core.errors import UnsupportedFormatError

__all__ = ["RankSlice", "RankShare", "Projection", "RankLayout", "rank_layout", "fsdp_projection", "LAYOUT_READERS"]

#: The readers that know a layout, in the order they are asked; each has ``rank_layout(source)``.
LAYOUT_READERS = ("dcp", "deepspeed", "deepspeed_universal", "megatron", "fsdp1")


@dataclass(frozen=True, slots=True)
class RankSlice:
    """One slice a rank holds: a tensor's name, where the slice starts and its extent."""

    tensor: str
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    dtype: str
    optimizer: bool = False

    @property
    def count(self) -> int:
        """Elements in the slice."""
        return prod(self.sizes)

    @property
    def n_bytes(self) -> int | None:
        """Bytes of the slice's elements (``None`` for a dtype without a known size)."""
        return n_bytes(self.dtype, self.count)


@dataclass(frozen=True, slots=True)
class RankShare:
    """What one rank holds.

    Attributes:
        rank: the rank (``None`` when a file's name does not say).
        files: the files it wrote.
        slices: its slices, model first.
        stored_bytes: bytes of its files on disk (framing included).
    """

    rank: int | None
    files: tuple[str, ...]
    slices: tuple[RankSlice, ...]
    stored_bytes: int

    @property
    def count(self) -> int:
        """Elements of all its slices."""
        return sum(s.count for s in self.slices)

    @property
    def n_bytes(self) -> int:
        """Bytes of all its slices' elements (dtypes of unknown size count 0 here and are flagged by the reader)."""
        return sum(s.n_bytes or 0 for s in self.slices)

    @property
    def model_bytes(self) -> int:
        """Bytes of its model slices (optimizer state left out)."""
        return sum(s.n_bytes or 0 for s in self.slices if not s.optimizer)


@dataclass(frozen=True, slots=True)
class Projection:
    """The same tensors at another world size, sharded on dim 0 as FSDP2 does.

    Attributes:
        world_size: ranks.
        max_rank_bytes: bytes on the fullest rank (rank 0).
        min_rank_bytes: bytes on the emptiest rank.
        max_rank_model_bytes: model bytes on the fullest rank (optimizer state left out).
    """

    world_size: int
    max_rank_bytes: int
    min_rank_bytes: int
    max_rank_model_bytes: int = 0


@dataclass(frozen=True, slots=True)
class RankLayout:
    """How a checkpoint is laid out over its ranks.

    Attributes:
        source: the folder.
        format: what wrote it (``"torch.distributed.checkpoint"``, ``"deepspeed"``, ``"megatron"``).
        ranks: one share per rank, in rank order.
        total_bytes: bytes of every global tensor, counted once (replicated copies are not double counted).
        projections: the per-rank bytes at other world sizes.
        facts: what the folder says of its parallelism (``"zero_stage": "2"``, ``"tp": "4"``), as strings.
    """

    source: str
    format: str
    ranks: tuple[RankShare, ...]
    total_bytes: int
    projections: tuple[Projection, ...] = ()
    facts: tuple[tuple[str, str], ...] = ()

    @property
    def world_size(self) -> int:
        """Number of ranks."""
        return len(self.ranks)

    @property
    def imbalance(self) -> float | None:
        """Bytes on the fullest rank over the mean (1.0: perfectly even); ``None`` with no bytes."""
        sizes = [r.n_bytes for r in self.ranks]
        mean = sum(sizes) / len(sizes) if sizes else 0
        return max(sizes) / mean if mean else None


def fsdp_projection(tensors: Iterable[tuple[str, tuple[int, ...], str]], world_size: int,
                    optimizer: Sequence[bool] | None = None) -> Projection:  # fmt: skip
    """Per-rank bytes of ``(name, shape, dtype)`` tensors sharded on dim 0 over ``world_size`` ranks.

    FSDP2 ``fully_shard`` gives rank ``r`` rows ``[r*c, (r+1)*c)`` with ``c = ceil(rows / N)``
    (``torch.chunk``), so rank 0 is the fullest and the last ranks may hold nothing; a 0-d
    tensor is kept whole on rank 0 here.
    """
    if world_size < 1:
        raise ValueError("world_size must be at least 1")
    per_rank = [0] * world_size
    model_rank0 = 0
    flags = list(optimizer) if optimizer is not None else None
    for i, (_, shape, dtype) in enumerate(tensors):
        row = prod(shape[1:]) if shape else 1
        rows = shape[0] if shape else 1
        step = -(-rows // world_size) if rows else 0
        for r in range(world_size):
            got = max(0, min(step, rows - r * step))
            per_rank[r] += n_bytes(dtype, got * row) or 0
            if r == 0 and not (flags and flags[i]):
                model_rank0 += n_bytes(dtype, got * row) or 0
            if got == 0:
                break
    return Projection(world_size, max(per_rank), min(per_rank), model_rank0)


def rank_layout(source: Any, world_sizes: Sequence[int] = ()) -> RankLayout:
    """The rank layout of a sharded checkpoint folder, with projections at ``world_sizes``.

    Raises:
        UnsupportedFormatError: the source is not a sharded checkpoint paramscope knows.

    Example:
        >>> import tempfile, warnings, torch  # torch writes the folder; reading it needs no torch
        >>> import torch.distributed.checkpoint as dcp
        >>> folder = tempfile.TemporaryDirectory()
        >>> with warnings.catch_warnings():  # one process, no process group: dcp says so
        ...     warnings.simplefilter("ignore")
        ...     _ = dcp.save({"w": torch.zeros(4, 2)}, checkpoint_id=folder.name, no_dist=True)
        >>> rank_layout(folder.name, world_sizes=(16,)).world_size
        1
        >>> folder.cleanup()
    """
    import importlib

    for name in LAYOUT_READERS:
        try:
            mod = importlib.import_module(f"paramscope.readers.distributed.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"paramscope.readers.distributed.{name}":
                continue  # reader not part of this build
            raise
        if mod.can_read(source):
            layout: RankLayout = mod.rank_layout(source, world_sizes=world_sizes)
            return layout
    raise UnsupportedFormatError(
        "a rank layout needs a sharded checkpoint folder (PyTorch Distributed Checkpoint, DeepSpeed, Megatron-LM)",
        where=os.fspath(source) if isinstance(source, (str, os.PathLike)) else None,
    )
