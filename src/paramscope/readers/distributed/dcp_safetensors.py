"""Distributed Checkpoints saved as sharded safetensors, read from the files' headers alone.

``dcp.save(state_dict, storage_writer=HuggingFaceStorageWriter(path, save_distributed=True))``
(torch 2.8 and later; torchtitan's Hugging Face export) writes no ``.metadata``. Each rank writes
``shard-<rank + 1>-model-<i>-of-<n>.safetensors`` holding its local piece of every tensor it
owns, and records where each piece sits in the global tensor in the header's ``__metadata__``:
``DCP_SHARDING_INFO`` is JSON text, ``{"<key>": {"saved_offsets": [...]}}``, beside
``DCP_VERSION`` (``torch/distributed/checkpoint/hf_storage.py`` and ``_hf_utils.py``).

The format records no global size: torch's ``HuggingFaceStorageReader`` takes, in each
dimension, the largest offset plus extent among a tensor's pieces, and so does this module.
Every header is read and checked by :func:`paramscope.readers.safetensors.read_header` (sizes
against the file, pieces tiling the data region); the pieces of each tensor must then agree on
their dtype and rank and tile the global tensor, as the chunks of a ``.metadata`` checkpoint
must. A missing rank file in the middle is a gap in the shard numbers and is refused; a missing
*last* rank would shrink the inferred shape unnoticed, which no reader of this format can see, so
the anatomy says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core.errors import CorruptFileError
from paramscope.core.files import folder_member
from paramscope.core.limits import MAX_TENSORS, check
from paramscope.core.strict_json import loads_strict
from paramscope.readers.distributed.dcp_folder import SHARD_FILE, Chunk, DcpCheckpoint, GlobalTensor, check_tiling
from paramscope.readers.safetensors import DTYPES, read_header
from paramscope.rules.names import natural_key

__all__ = ["is_sharded_folder", "load_sharded"]

_INFO_KEY = "DCP_SHARDING_INFO"
_VERSION_KEY = "DCP_VERSION"


def is_sharded_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a rank's ``shard-*-model-*-of-*.safetensors`` file.

    Example:
        >>> is_sharded_folder("no-such-folder")
        False
    """
    try:
        with os.scandir(path) as entries:
            return any(SHARD_FILE.match(e.name) for e in entries)
    except OSError:
        return False


def load_sharded(folder: str | os.PathLike[str]) -> DcpCheckpoint:
    """Read and check the rank files of a sharded-safetensors Distributed Checkpoint.

    Raises:
        UnsafeFileError: a rank file is a link out of the folder, or not a regular file.
        CorruptFileError: a header is damaged, its sharding information is malformed, a rank's
            files are missing, or the pieces of a tensor disagree or do not tile it.

    Example:
        >>> import json, os, struct, tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> def rank_file(rank, offset):  # rows offset..offset+1 of a 4 x 3 float32 tensor "w"
        ...     info = json.dumps({"w": {"saved_offsets": [offset, 0]}})
        ...     header = json.dumps({"__metadata__": {"DCP_SHARDING_INFO": info, "DCP_VERSION": "1.0"},
        ...                          "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
        ...     name = f"shard-{rank + 1:05d}-model-00001-of-00001.safetensors"
        ...     with open(os.path.join(folder.name, name), "wb") as f:
        ...         _ = f.write(struct.pack("<Q", len(header)) + header + bytes(24))
        >>> rank_file(0, 0); rank_file(1, 2)
        >>> ckpt = load_sharded(folder.name)
        >>> ckpt.tensors[0].shape, [c.offsets for c in ckpt.tensors[0].chunks]
        ((4, 3), [(0, 0), (2, 0)])
        >>> folder.cleanup()
    """
    root = Path(folder)
    where = str(root)
    named = sorted(((m, n) for n in os.listdir(root) if (m := SHARD_FILE.match(n))), key=lambda mn: natural_key(mn[1]))
    if not named:
        raise CorruptFileError("no shard-*-model-*-of-*.safetensors rank file in the folder", where=where)
    ranks = sorted({int(m.group(1)) for m, _ in named})
    missing = sorted(set(range(1, ranks[-1] + 1)) - set(ranks))
    if missing:
        raise CorruptFileError(
            f"the rank files of shard {', '.join(map(str, missing))} are missing (shards 1 to {ranks[-1]} are "
            "numbered by rank): a rank's file was not copied", where=where)  # fmt: skip
    pieces: dict[str, list[tuple[Chunk, str]]] = {}
    file_bytes: dict[str, int] = {}
    versions: set[str] = set()
    count = 0
    for _, name in named:
        header = read_header(folder_member(root, name, what="rank file"))
        file_bytes[name] = header.file_bytes
        info = _sharding_info(header.metadata, f"{where}/{name}")
        versions.add(header.metadata.get(_VERSION_KEY, ""))
        count += len(header.entries)
        check("tensors", count, MAX_TENSORS, "MAX_TENSORS", where=where)
        for e in header.entries:
            offsets = info.get(e.name, (0,) * len(e.shape))  # torch's reader: no entry means the whole tensor
            if len(offsets) != len(e.shape):
                raise CorruptFileError(f"{_INFO_KEY} gives {e.name!r} {len(offsets)} offsets for its {len(e.shape)}-d piece",
                                       where=f"{where}/{name}")  # fmt: skip
            start = 8 + header.header_bytes + e.begin
            pieces.setdefault(e.name, []).append((Chunk(offsets, e.shape, name, start, e.end - e.begin), e.dtype))
    tensors = tuple(_global(key, got, where) for key, got in pieces.items())
    version = ",".join(sorted(v for v in versions if v))
    return DcpCheckpoint(where, tensors, (), MappingProxyType(file_bytes), version, storage="safetensors")


def _sharding_info(metadata: Any, where: str) -> dict[str, tuple[int, ...]]:
    text = metadata.get(_INFO_KEY)
    if text is None:
        return {}
    doc = loads_strict(text, where=f"{where}, __metadata__[{_INFO_KEY!r}]")
    if not isinstance(doc, dict):
        raise CorruptFileError(f"{_INFO_KEY} is not a JSON object", where=where)
    out: dict[str, tuple[int, ...]] = {}
    for key, entry in doc.items():
        offsets = entry.get("saved_offsets") if isinstance(entry, dict) else None
        if not isinstance(offsets, list) or not all(type(o) is int and o >= 0 for o in offsets):
            raise CorruptFileError(f"{_INFO_KEY} gives {key!r} no list of non-negative saved_offsets", where=where)
        out[key] = tuple(offsets)
    return out


def _global(key: str, got: list[tuple[Chunk, str]], where: str) -> GlobalTensor:
    dtypes = {dtype for _, dtype in got}
    if len(dtypes) > 1:
        raise CorruptFileError(f"the pieces of {key!r} disagree on their dtype ({', '.join(sorted(dtypes))})", where=where)
    chunks = [c for c, _ in got]
    ndims = {len(c.sizes) for c in chunks}
    if len(ndims) > 1:
        raise CorruptFileError(f"the pieces of {key!r} disagree on their number of dimensions", where=where)
    shape = tuple(max(c.offsets[d] + c.sizes[d] for c in chunks) for d in range(ndims.pop()))
    check_tiling(key, shape, chunks, where)
    return GlobalTensor(key, shape, DTYPES[dtypes.pop()], tuple(chunks))
