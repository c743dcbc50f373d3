"""A Distributed Checkpoint folder as checked data: global tensors, their chunks, and the files.

``dcp.save`` writes one ``.metadata`` and, per rank, ``__<rank>_<n>.distcp`` files holding the
chunks that rank owned. This module turns the parsed metadata into :class:`DcpCheckpoint` and
checks everything a reader relies on before anything trusts it:

- every storage path is a plain relative name inside the folder (no ``..``, not absolute, no
  symlink leading out) naming an existing regular file;
- every chunk's byte range lies inside its file (sizes from ``os.stat``, not from the header)
  and is at least as long as the chunk's elements need;
- the chunks of each tensor lie inside its global shape and tile it: no two overlap and their
  element counts add up to the whole.

Sizes from the header are only multiplied and compared, never used to allocate.
"""

from __future__ import annotations

import gc
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any

from paramscope.core.dtypes import n_bytes
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.readers.distributed.dcp_pickle import MAX_METADATA_BYTES, Dtype, Record, parse_metadata

__all__ = ["Chunk", "GlobalTensor", "BytesEntry", "DcpCheckpoint", "load_checkpoint", "rank_of_file", "check_tiling", "SHARD_FILE"]

_RANK_FILE = re.compile(r"^__(\d+)_(\d+)\.distcp$")
#: A rank's file from ``HuggingFaceStorageWriter(save_distributed=True)``: shard numbers start at 1.
SHARD_FILE = re.compile(r"^shard-(\d{1,9})-model-(\d{1,9})-of-(\d{1,9})\.safetensors$")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One rank's piece of a tensor: where it sits in the global tensor and where its bytes are.

    Attributes:
        offsets: index of its first element in each dimension of the global tensor.
        sizes: its extent in each dimension.
        file: the file holding it, relative to the folder.
        byte_offset: where its stored bytes start in that file.
        stored_bytes: how many bytes are stored (``torch.save`` framing included).
    """

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: str
    byte_offset: int
    stored_bytes: int

    @property
    def count(self) -> int:
        """Elements in the chunk."""
        return prod(self.sizes)


@dataclass(frozen=True, slots=True)
class GlobalTensor:
    """A tensor of the saved state dict, with its global shape and its chunks."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True, slots=True)
class BytesEntry:
    """A non-tensor value of the state dict (a step counter, a config), stored as pickled bytes."""

    name: str
    file: str
    byte_offset: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class DcpCheckpoint:
    """A checked Distributed Checkpoint folder.

    Attributes:
        folder: the folder.
        tensors: every tensor, in the order of the metadata.
        blobs: every non-tensor entry.
        file_bytes: size on disk of each data file, by relative path.
        version: the metadata's ``version`` field, ``""`` when absent (written before torch 2.4).
        storage: ``"distcp"`` (a ``.metadata`` and ``.distcp`` files, the default writer) or
            ``"safetensors"`` (``HuggingFaceStorageWriter``'s rank files, see :mod:`.dcp_safetensors`).
    """

    folder: str
    tensors: tuple[GlobalTensor, ...]
    blobs: tuple[BytesEntry, ...]
    file_bytes: Mapping[str, int]
    version: str
    storage: str = "distcp"


def rank_of_file(name: str) -> int | None:
    """The rank that wrote a data file, from the name DCP gives it (``__3_0.distcp`` -> 3; the
    safetensors writer numbers from 1: ``shard-00004-model-00001-of-00002.safetensors`` -> 3).

    Example:
        >>> rank_of_file("__3_0.distcp"), rank_of_file("shard-00004-model-00001-of-00002.safetensors"), rank_of_file("a.bin")
        (3, 3, None)
    """
    m = _RANK_FILE.match(name) or SHARD_FILE.match(name)
    return int(m.group(1)) - (m.re is SHARD_FILE) if m else None


def load_checkpoint(folder: str | os.PathLike[str]) -> DcpCheckpoint:
    """Read and check a DCP folder's metadata; no tensor data is read.

    Raises:
        UnsafeFileError: the pickle names a forbidden global, or a path leaves the folder.
        CorruptFileError: a file is missing, a byte range runs past its file, or chunks do not
            tile their tensor.
    """
    root = Path(folder)
    meta_path = root / ".metadata"
    where = str(meta_path)
    size = meta_path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise CorruptFileError(f"a {size}-byte .metadata is larger than the {MAX_METADATA_BYTES >> 20} MiB paramscope reads", where=where)
    # A 70B model's metadata builds millions of small tuples, dicts and records, none in a cycle
    # (reference counting frees them): the cyclic collector's full passes over them, during the
    # parse and on the first allocations after it, are wasted work.
    collecting = gc.isenabled()
    gc.disable()
    try:
        metadata = parse_metadata(meta_path.read_bytes(), where)
        return _Checker(root, where).check(metadata)
    finally:
        if collecting:
            gc.enable()


class _Checker:
    def __init__(self, root: Path, where: str) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.where = where
        self.sizes: dict[str, int] = {}

    def corrupt(self, what: str) -> CorruptFileError:
        return CorruptFileError(what, where=self.where)

    def check(self, md: Record) -> DcpCheckpoint:
        entries = md.state.get("state_dict_metadata")
        storage = md.state.get("storage_data")
        if not isinstance(entries, dict) or not isinstance(storage, dict):
            raise self.corrupt("the metadata has no state_dict_metadata or storage_data dict")
        index = self._index(storage)
        tensors: list[GlobalTensor] = []
        blobs: list[BytesEntry] = []
        for name, entry in entries.items():
            if not isinstance(name, str) or not isinstance(entry, Record):
                raise self.corrupt(f"entry {name!r} is not a named storage record")
            if entry.cls == "BytesStorageMetadata":
                info = index.get((name, None))
                if info is None:
                    raise self.corrupt(f"{name!r} has no storage entry")
                file, offset, length = self._range(name, info, 0)
                blobs.append(BytesEntry(name, file, offset, length))
            elif entry.cls == "TensorStorageMetadata":
                tensors.append(self._tensor(name, entry, index))
            else:
                raise self.corrupt(f"entry {name!r} is a {entry.cls}, not tensor or bytes metadata")
        version = md.state.get("version")
        return DcpCheckpoint(str(self.root), tuple(tensors), tuple(blobs), MappingProxyType(dict(self.sizes)),
                             version if isinstance(version, str) else "")  # fmt: skip

    def _index(self, storage: dict[Any, Any]) -> dict[tuple[str, tuple[int, ...] | None], Record]:
        out: dict[tuple[str, tuple[int, ...] | None], Record] = {}
        for key, info in storage.items():
            if not (isinstance(key, Record) and key.cls == "MetadataIndex" and isinstance(info, Record)
                    and info.cls == "_StorageInfo"):  # fmt: skip
                raise self.corrupt("storage_data maps something other than MetadataIndex -> _StorageInfo")
            fqn, offset = key.state.get("fqn"), key.state.get("offset")
            if not isinstance(fqn, str) or not (offset is None or isinstance(offset, tuple)):
                raise self.corrupt("a MetadataIndex without a name or with a bad offset")
            out[fqn, offset] = info
        return out

    def _tensor(self, name: str, entry: Record, index: dict[tuple[str, tuple[int, ...] | None], Record]) -> GlobalTensor:
        props, shape, chunks = entry.state.get("properties"), entry.state.get("size"), entry.state.get("chunks")
        if not isinstance(props, Record) or not isinstance(shape, tuple) or not isinstance(chunks, list):
            raise self.corrupt(f"tensor {name!r} lacks properties, size or chunks")
        dtype = props.state.get("dtype")
        if not isinstance(dtype, Dtype):
            raise self.corrupt(f"tensor {name!r} has no dtype")
        out: list[Chunk] = []
        for c in chunks:
            offsets, sizes = (c.state.get("offsets"), c.state.get("sizes")) if isinstance(c, Record) else (None, None)
            if not isinstance(offsets, tuple) or not isinstance(sizes, tuple) or not len(offsets) == len(sizes) == len(shape):
                raise self.corrupt(f"a chunk of {name!r} does not match its {len(shape)}-d shape")
            for dim, (o, s, full) in enumerate(zip(offsets, sizes, shape)):
                if o + s > full:
                    raise self.corrupt(f"a chunk of {name!r} spans {o}..{o + s} on dim {dim}, past its size {full}")
            info = index.get((name, offsets))
            if info is None:
                raise self.corrupt(f"the chunk of {name!r} at {list(offsets)} has no storage entry")
            need = n_bytes(dtype.name, prod(sizes)) or 0
            file, offset, length = self._range(name, info, need)
            out.append(Chunk(offsets, sizes, file, offset, length))
        check_tiling(name, shape, out, self.where)
        return GlobalTensor(name, shape, dtype.name, tuple(out))

    def _range(self, name: str, info: Record, need: int) -> tuple[str, int, int]:
        rel, offset, length = (info.state.get(k) for k in ("relative_path", "offset", "length"))
        if not isinstance(rel, str) or type(offset) is not int or type(length) is not int or offset < 0 or length < 0:
            raise self.corrupt(f"the storage entry of {name!r} lacks a path, offset or length")
        size = self._file_size(rel)
        if offset + length > size:
            raise self.corrupt(f"{name!r} is stored at bytes {offset}..{offset + length} of {rel}, which has {size} bytes")
        # Transforms (compression) change the stored length; without them the bytes must hold the elements.
        if not info.state.get("transform_descriptors") and length < need:
            raise self.corrupt(f"{name!r} needs {need} bytes but its storage entry in {rel} holds {length}")
        return rel, offset, length

    def _file_size(self, rel: str) -> int:
        if rel in self.sizes:
            return self.sizes[rel]
        parts = PurePosixPath(rel).parts
        if (not rel or "\0" in rel or "\\" in rel or PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).drive
                or any(p in ("..", ".") for p in parts)):  # fmt: skip
            raise UnsafeFileError(f"storage path {rel!r} leaves the checkpoint folder; paramscope reads nothing from it", where=self.where)
        path = self.root / rel
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                target = os.path.realpath(path)
                if os.path.commonpath([target, self.real_root]) != self.real_root:
                    raise UnsafeFileError(f"storage file {rel!r} is a link leading out of the folder", where=self.where)
                st = os.stat(path)
        except FileNotFoundError:
            raise CorruptFileError(f"storage file {rel!r} is missing: a rank's file was not copied", where=self.where) from None
        if not stat.S_ISREG(st.st_mode):
            raise CorruptFileError(f"storage path {rel!r} is not a regular file", where=self.where)
        self.sizes[rel] = st.st_size
        return st.st_size


def check_tiling(name: str, shape: tuple[int, ...], chunks: list[Chunk], where: str) -> None:
    """Chunks tile the tensor: inside it (checked by the caller), pairwise disjoint, volumes summing to it."""
    total = sum(c.count for c in chunks)
    if total != prod(shape):
        raise CorruptFileError(f"the chunks of {name!r} hold {total} elements; its shape {list(shape)} has {prod(shape)}", where=where)
    if not shape:
        return
    # Sweep along dim 0: only chunks whose dim-0 ranges meet can overlap.
    ordered = sorted((c for c in chunks if c.count), key=lambda c: c.offsets[0])
    active: list[Chunk] = []
    for c in ordered:
        active = [a for a in active if a.offsets[0] + a.sizes[0] > c.offsets[0]]
        for a in active:
            if all(ao < co + cs and co < ao + as_ for ao, as_, co, cs in zip(a.offsets, a.sizes, c.offsets, c.sizes)):
                raise CorruptFileError(f"two chunks of {name!r} overlap (at {list(a.offsets)} and {list(c.offsets)})", where=where)
        active.append(c)
