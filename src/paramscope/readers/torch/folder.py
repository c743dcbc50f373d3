"""PyTorch checkpoints as Hugging Face stores them: a folder, or the index of a sharded one.

``save_pretrained(..., safe_serialization=False)`` writes ``pytorch_model.bin`` beside
``config.json``, or shards ``pytorch_model-00001-of-00003.bin`` listed in
``pytorch_model.bin.index.json`` (``{"metadata": {...}, "weight_map": {tensor: shard}}``).
Each shard is read like any checkpoint file (its pickle interpreted, never unpickled; no tensor
data read) and the shards are merged into one anatomy. The index's paths are checked before
any shard is opened (:func:`paramscope.readers.hf.folder.read_index`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paramscope.core.anatomy import Anatomy, Role
from paramscope.core.files import folder_member
from paramscope.core.errors import CorruptFileError, TargetError
from paramscope.core.tree import FlatTensor
from paramscope.readers.hf.folder import folder_facts, read_index, short
from paramscope.readers.torch.checkpoint_anatomy import shard_tensors
from paramscope.readers.torch.tensor_pickle import StorageRef
from paramscope.rules.names import anatomy_from_flat, natural_key

__all__ = ["is_index", "claims_folder", "read_folder", "Loader"]

#: Reads one checkpoint file: (the pickle's value, its storages by key, metadata so far).
Loader = Callable[[Path], tuple[Any, dict[str, StorageRef], dict[str, str]]]

_INDEX_SUFFIXES = (".bin.index.json", ".pt.index.json")
#: Single-file weights save_pretrained writes, in the order they are looked for.
_SINGLE = ("pytorch_model.bin", "adapter_model.bin")
_SHARD = re.compile(r"-\d+-of-\d+\.bin$")


def is_index(name: str) -> bool:
    """Whether ``name`` is a PyTorch shard index.

    Example:
        >>> is_index("pytorch_model.bin.index.json"), is_index("model.safetensors.index.json")
        (True, False)
    """
    return name.endswith(_INDEX_SUFFIXES)


def claims_folder(folder: Path) -> bool:
    """Whether ``folder`` holds PyTorch weights and no safetensors (those are read as safetensors).

    Example:
        >>> claims_folder(Path("no-such-folder"))
        False
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    if any(n.endswith(".safetensors") for n in names):
        return False
    return any(n in _SINGLE or is_index(n) or _SHARD.search(n) for n in names)


def _files(folder: Path) -> tuple[Path | None, list[Path]]:
    """(the index, or ``None`` and the weight files) of a folder."""
    names = sorted(os.listdir(folder), key=natural_key)
    indexes = [n for n in names if is_index(n)]
    if len(indexes) > 1:
        raise TargetError(
            f"folder has {len(indexes)} PyTorch index files ({', '.join(indexes)}); pass the one to read",
            where=str(folder),
        )
    if indexes:
        return folder / indexes[0], []
    # Only the weights save_pretrained writes: training_args.bin and the like are not weights.
    # Every name found by listing follows the folder rule: inside it (a symlink out is refused,
    # not followed) and a regular file.
    for single in _SINGLE:
        if single in names:
            return None, [folder_member(folder, single, what="weights file")]
    return None, [folder_member(folder, n, what="weights file") for n in names if _SHARD.search(n)]


def read_folder(source: Path, load: Loader) -> Anatomy:
    """Read a folder of PyTorch weights, or a shard index, into one anatomy.

    Args:
        source: the folder, or a ``*.bin.index.json`` / ``*.pt.index.json``.
        load: reads one checkpoint file (the single-file reader's machinery).

    Raises:
        UnsafeFileError: the index names a path outside the folder (nothing outside is opened).
        CorruptFileError: the index is malformed, names a missing shard, or lists a tensor its
            shard does not store.
        TargetError: the folder holds no weights, or more than one index.
    """
    folder = source if source.is_dir() else source.parent
    if source.is_dir():
        index, files = _files(source)
    else:
        index, files = source, []
    weight_map: dict[str, Path] | None = None
    index_meta: dict[str, str] = {}
    if index is not None:
        weight_map, index_meta = read_index(index, folder)
        files = sorted(set(weight_map.values()), key=lambda q: natural_key(q.name))
    if not files:
        raise TargetError("folder holds no PyTorch weights (pytorch_model.bin or its shards)", where=str(source))
    flat: list[FlatTensor] = []
    owner: dict[str, Path] = {}
    metadata: dict[str, str] = {}
    storages = 0
    storage_bytes = 0
    unindexed = 0
    for shard in files:
        value, refs, meta = load(shard)
        for key in ("format", "byteorder"):
            if key in meta:
                metadata.setdefault(key, meta[key])
        storages += len(refs)
        storage_bytes += sum(r.n_bytes for r in refs.values())
        for name, t in shard_tensors(value, str(shard)):
            if weight_map is not None and weight_map.get(name) != shard:
                unindexed += 1
                continue
            if name in owner:
                raise CorruptFileError(
                    f"tensor {name!r} is stored in both {owner[name].name} and {shard.name}; "
                    "the checkpoint is ambiguous",
                    where=str(folder),
                )
            owner[name] = shard
            role = (Role.TRAINABLE if t.requires_grad else Role.FROZEN) if t.is_parameter else None
            # Storage keys restart in every shard: the shard's name keeps them apart.
            flat.append(FlatTensor(name, t.shape, t.dtype, f"{shard.name}/{t.key}", role, True if t.is_parameter else None))
    notes: list[str] = []
    if weight_map is not None:
        for name, shard in weight_map.items():
            if name not in owner:
                raise CorruptFileError(
                    f"tensor {name!r} is listed in the index but not stored in {shard.name}", where=str(index)
                )
        if unindexed:
            notes.append(
                f"{unindexed} tensors stored in the shards are not listed in the index and are "
                "left out (loaders read only indexed tensors)."
            )
        for k, v in index_meta.items():
            metadata.setdefault(f"index.{k}", short(v))
    if flat and not any(ft.role is not None for ft in flat):
        notes.append(
            "A state dict does not say which tensors are parameters and which are buffers; "
            "roles come from the tensor names."
        )
    metadata["storages"] = str(storages)
    metadata["storage_bytes"] = str(storage_bytes)
    if len(files) > 1:
        metadata["shards"] = str(len(files))
    tied, how = folder_facts(folder, [ft.name for ft in flat], metadata, notes)
    return anatomy_from_flat(
        flat,
        name=folder.resolve().name,
        framework="torch",
        source=os.fspath(source),
        metadata=metadata,
        notes=notes,
        tied=tied,
        tie_reason=how,
    )
