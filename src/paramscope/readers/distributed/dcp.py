"""PyTorch Distributed Checkpoint folders (``dcp.save``), read from their metadata alone.

FSDP2, DTensor and torchtitan jobs save with ``torch.distributed.checkpoint``: a folder with one
pickled ``.metadata`` and one ``__<rank>_<n>.distcp`` per writing rank. The metadata names every
tensor of the state dict with its *global* shape and dtype, and each rank's chunk of it, so the
whole model is known without reading a byte of weights or gathering anything
(:mod:`.dcp_folder` checks it; :mod:`.dcp_pickle` parses it without unpickling). Saved with
``HuggingFaceStorageWriter(save_distributed=True)`` instead, the folder holds one
``shard-<rank + 1>-model-<i>-of-<n>.safetensors`` per rank and file, each header saying where its
pieces sit (:mod:`.dcp_safetensors`); both become the same checked checkpoint.

Keys are the flattened state dict: with ``get_state_dict`` and ``{"model": ..., "optim": ...}``
they read ``model.layers.0.attention.wq.weight`` and ``optim.state.layers.0...exp_avg``. The
model's tensors become the anatomy (named as the module names them, without the common
``model.`` prefix); optimizer state (a first key component containing ``optim``, or
``state.``/``param_groups.`` at the top) is kept apart in ``extras``, as for training checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.dtypes import n_bytes
from paramscope.core.errors import CorruptFileError
from paramscope.core.tree import FlatTensor
from paramscope.readers.distributed.dcp_folder import DcpCheckpoint, GlobalTensor, load_checkpoint, rank_of_file
from paramscope.readers.distributed.dcp_safetensors import is_sharded_folder, load_sharded
from paramscope.readers.distributed.layout import RankLayout, RankShare, RankSlice, fsdp_projection
from paramscope.readers.distributed import megatron_dist
from paramscope.rules.names import anatomy_from_flat

__all__ = ["can_read", "read", "anatomy_of", "rank_layout"]

_MODEL_PREFIXES = ("model.", "module.", "app.model.")
_MOMENTS = {
    "exp_avg": "Adam's running mean of gradients (first moment)",
    "exp_avg_sq": "Adam's running mean of squared gradients (second moment)",
    "momentum_buffer": "SGD momentum",
    "step": "the optimizer's step counter",
}


def can_read(source: Any) -> bool:
    """Whether ``source`` is a DCP folder (or its ``.metadata`` file).

    Example:
        >>> can_read("no-such-folder")
        False
    """
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source)
    if path.name == ".metadata":
        path = path.parent
    # os.path.isfile answers False for every error, which is what "not mine" needs.
    return os.path.isdir(path) and (os.path.isfile(path / ".metadata") or is_sharded_folder(path))


def read(source: Any, **options: Any) -> Anatomy:
    """Read a DCP folder's global model: names, global shapes, dtypes, roles, and its rank layout facts.

    Args:
        source: the folder, or its ``.metadata``.
        **options: ignored (readers share one signature).

    Raises:
        UnsafeFileError: the metadata names a forbidden global or a path outside the folder.
        CorruptFileError: missing rank files, byte ranges past a file, chunks that do not tile.

    Example:
        >>> import tempfile, warnings, torch  # torch writes the folder; reading it needs no torch
        >>> import torch.distributed.checkpoint as dcp
        >>> folder = tempfile.TemporaryDirectory()
        >>> with warnings.catch_warnings():  # one process, no process group: dcp says so
        ...     warnings.simplefilter("ignore")
        ...     _ = dcp.save({"w": torch.zeros(4, 2)}, checkpoint_id=folder.name, no_dist=True)
        >>> read(folder.name).metadata["world_size"]
        '1'
        >>> folder.cleanup()
    """
    return anatomy_of(_load(source))


def _load(source: Any) -> DcpCheckpoint:
    path = Path(source)
    folder = path.parent if path.name == ".metadata" else path
    try:
        if not os.path.isfile(folder / ".metadata") and is_sharded_folder(folder):
            return load_sharded(folder)
        return load_checkpoint(folder)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError, MemoryError) as e:
        raise CorruptFileError(f"malformed Distributed Checkpoint ({type(e).__name__}: {str(e)[:200]})", where=str(folder)) from None


def rank_layout(source: Any, world_sizes: Iterable[int] = ()) -> RankLayout:
    """Which rank holds which chunk of which tensor, from the data file each chunk is in.

    Example:
        >>> import tempfile, warnings, torch  # torch writes the folder; reading it needs no torch
        >>> import torch.distributed.checkpoint as dcp
        >>> folder = tempfile.TemporaryDirectory()
        >>> with warnings.catch_warnings():  # one process, no process group: dcp says so
        ...     warnings.simplefilter("ignore")
        ...     _ = dcp.save({"w": torch.zeros(4, 2)}, checkpoint_id=folder.name, no_dist=True)
        >>> found = rank_layout(folder.name)
        >>> found.world_size, [s.rank for s in found.ranks]
        (1, [0])
        >>> folder.cleanup()
    """
    ckpt = _load(source)
    by_file: dict[str, list[RankSlice]] = {f: [] for f in ckpt.file_bytes}
    for t in ckpt.tensors:
        opt = _is_optimizer(t.name)
        for c in t.chunks:
            by_file[c.file].append(RankSlice(t.name, c.offsets, c.sizes, t.dtype, opt))
    by_rank: dict[int | None, list[str]] = {}
    for f in sorted(by_file):
        by_rank.setdefault(rank_of_file(f), []).append(f)
    shares = tuple(
        RankShare(rank, tuple(files), tuple(sorted((s for f in files for s in by_file[f]), key=lambda s: s.optimizer)),
                  sum(ckpt.file_bytes[f] for f in files))  # fmt: skip
        for rank, files in sorted(by_rank.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    )
    globals_ = [(t.name, t.shape, t.dtype) for t in ckpt.tensors]
    flags = [_is_optimizer(t.name) for t in ckpt.tensors]
    total = sum(n_bytes(dt, _numel(shape)) or 0 for _, shape, dt in globals_)
    return RankLayout(ckpt.folder, "torch.distributed.checkpoint", shares, total,
                      tuple(fsdp_projection(globals_, n, flags) for n in world_sizes),
                      (("metadata_version", ckpt.version or "unversioned"),))  # fmt: skip


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _is_optimizer(name: str) -> bool:
    first = name.split(".", 1)[0].lower()
    return "optim" in first or first in ("state", "param_groups")


def _model_prefix(names: Iterable[str]) -> str:
    names = list(names)
    for prefix in _MODEL_PREFIXES:
        if names and all(n.startswith(prefix) for n in names):
            return prefix
    return ""


def anatomy_of(ckpt: DcpCheckpoint) -> Anatomy:
    """The anatomy of a checked DCP folder: model tensors as layers, optimizer state as extras."""
    model = [t for t in ckpt.tensors if not _is_optimizer(t.name)]
    prefix = _model_prefix(t.name for t in model)
    if prefix:
        other = [t for t in model if not t.name.startswith(prefix)]
        model = [t for t in model if t.name.startswith(prefix)]
    else:
        other = []
    flat = [FlatTensor(t.name[len(prefix):], t.shape, t.dtype) for t in model]
    optim = [t for t in ckpt.tensors if _is_optimizer(t.name)]
    extras = []
    if optim:
        extras.append(TensorGroup("optimizer", tuple(_extra(t, True) for t in optim), note="optimizer state saved with the model"))
    if other:
        extras.append(TensorGroup("other", tuple(_extra(t, False) for t in other), note="tensors outside the model's entry"))
    files = sorted(ckpt.file_bytes)
    ranks = sorted({r for f in files if (r := rank_of_file(f)) is not None})
    sharded_safetensors = ckpt.storage == "safetensors"
    meta = {
        "format": "PyTorch Distributed Checkpoint (torch.distributed.checkpoint)",
        "storage": "safetensors per rank (HuggingFaceStorageWriter)" if sharded_safetensors else ".metadata and .distcp files",
        "metadata_version": ckpt.version or "unversioned",
        "data_files": str(len(files)),
        "data_bytes": str(sum(ckpt.file_bytes.values())),
        "chunks": str(sum(len(t.chunks) for t in ckpt.tensors)),
        "world_size": str(len(ranks)) if ranks else "?",
        "non_tensor_entries": str(len(ckpt.blobs)),
    }
    if sharded_safetensors:
        notes = [
            f"Global shapes are the extent of the pieces the {len(ranks) or '?'} ranks' safetensors headers place "
            "(the format records no global size; torch's reader infers it the same way): a missing file of the "
            "last rank would go unnoticed. No tensor data was read. `paramscope layout` shows which rank holds what.",
        ]
    else:
        notes = [
            f"Global shapes read from the .metadata of a checkpoint written by {len(ranks) or '?'} ranks; "
            "no tensor data was read. `paramscope layout` shows which rank holds what.",
        ]
    if prefix:
        notes.append(f"Model tensors are the checkpoint's {prefix[:-1]!r} entries.")
    sharded = sum(1 for t in model if len(t.chunks) > 1)
    if sharded:
        notes.append(f"{sharded} of {len(model)} model tensors are split over several ranks; counts are of the global tensors.")
    if megatron_dist.is_torch_dist(ckpt.folder):
        meta["writer"] = "Megatron-core dist_checkpointing (torch_dist)"
        flat, more = megatron_dist.unstack(flat)
        notes += more
    anatomy = anatomy_from_flat(flat, name=Path(ckpt.folder).name or ckpt.folder, framework="torch",
                                source=ckpt.folder, metadata=meta, notes=notes)  # fmt: skip
    return anatomy.with_(extras=tuple(extras), metadata=MappingProxyType(dict(anatomy.metadata)))


def _extra(t: GlobalTensor, optimizer: bool) -> Tensor:
    last = t.name.rsplit(".", 1)[-1]
    why = _MOMENTS.get(last, "optimizer state") if optimizer else "stored in the checkpoint, not part of the model"
    return Tensor(t.name, t.shape, t.dtype, Role.BUFFER, False, "", None, f"{why}; not part of the model" if optimizer else why)
