"""Reader for safetensors files: single files, sharded checkpoints and model folders.

A safetensors file is an 8-byte little-endian header length, a JSON header naming every
tensor's dtype, shape and byte range, then the raw data. Only the length and the header are
read: the data is never touched, so a 140 GB checkpoint is summarised from a few hundred KB.
Everything in the header is checked against the file's real size before it is trusted
(format: the safetensors README and the reference implementation's ``Metadata::validate``).

Sharded checkpoints are a ``*.safetensors.index.json`` whose ``weight_map`` names the shard of
each tensor; every path in it must stay inside the folder, which is checked before any shard
is opened. A ``config.json`` beside the weights adds the model type and declared weight ties.

This file is long (about 450 lines) because one format's checks (lengths, offsets tiling the
data, dtypes, shards and their index) read best in the order a file is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import CorruptFileError, TargetError
from paramscope.core.files import folder_member, open_regular
from paramscope.core.strict_json import loads_strict
from paramscope.core.tree import FlatTensor
from paramscope.readers.hf.folder import folder_facts, read_index, short
from paramscope.rules.names import CHECKPOINT_NOTE, anatomy_from_flat, natural_key

__all__ = [
    "MAX_HEADER_BYTES",
    "DTYPES",
    "DTYPE_BITS",
    "Entry",
    "Header",
    "read_header",
    "can_read",
    "read",
]

#: The reference implementation refuses headers over 100 MB (``MAX_HEADER_SIZE``); so do we.
MAX_HEADER_BYTES = 100_000_000
#: Element counts past 2**64 cannot be addressed by any reader (the reference uses usize).
_MAX_ELEMENTS = 2**64

#: Every dtype code of the format (safetensors ``Dtype`` enum) -> paramscope's canonical name.
DTYPES: Mapping[str, str] = {
    "BOOL": "bool",
    "F4": "float4_e2m1fn",
    "F6_E2M3": "float6_e2m3fn",
    "F6_E3M2": "float6_e3m2fn",
    "U8": "uint8",
    "I8": "int8",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "C64": "complex64",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
}

#: Bits per element of each dtype code (safetensors ``Dtype::bitsize``).
DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
    "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64,
    "U64": 64,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Entry:
    """One tensor of a safetensors header, validated.

    Attributes:
        name: its name.
        dtype: the file's dtype code (``"BF16"``).
        shape: its shape.
        begin: first byte within the data region.
        end: one past its last byte within the data region.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True, slots=True)
class Header:
    """The validated header of one safetensors file.

    Attributes:
        path: the file.
        entries: the tensors, in header order.
        metadata: the ``__metadata__`` strings.
        header_bytes: the JSON header's length.
        file_bytes: the file's size.
    """

    path: str
    entries: tuple[Entry, ...]
    metadata: Mapping[str, str]
    header_bytes: int
    file_bytes: int


def _where(path: str | os.PathLike[str], entry: str | None = None) -> str:
    base = os.fspath(path)
    return f"{base}, tensor {entry!r}" if entry is not None else base


def _nonneg_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _entry(path: str, name: str, info: object, data_start: int) -> Entry:
    where = _where(path, name)
    if not isinstance(info, dict):
        raise CorruptFileError("header entry is not an object with dtype, shape and data_offsets", where=where)
    for key in ("dtype", "shape", "data_offsets"):
        if key not in info:
            raise CorruptFileError(f"header entry has no {key!r}", where=where)
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise CorruptFileError(
            f"unknown dtype {dtype!r}; the safetensors format defines {', '.join(DTYPES)}",
            where=where,
        )
    if not isinstance(shape, list) or not all(_nonneg_int(d) for d in shape):
        raise CorruptFileError(f"shape must be a list of non-negative integers, got {str(shape)[:80]}", where=where)
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_nonneg_int(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise CorruptFileError(
            f"data_offsets must be [begin, end] with 0 <= begin <= end, got {str(offsets)[:80]}",
            where=where,
        )
    count = 1
    for d in shape:
        count *= d
        if count >= _MAX_ELEMENTS:
            raise CorruptFileError(
                f"shape {str(shape)[:80]} has more than 2**64 elements; the file is corrupt",
                where=where,
            )
    bits = count * DTYPE_BITS[dtype]
    if bits % 8:
        raise CorruptFileError(
            f"{count} elements of {dtype} ({DTYPE_BITS[dtype]} bits) do not fill whole bytes",
            where=where,
        )
    begin, end = offsets
    if end - begin != bits // 8:
        raise CorruptFileError(
            f"data_offsets [{begin}, {end}] hold {end - begin} bytes but {dtype} x {shape} needs "
            f"{bits // 8} (file bytes {data_start + begin}..{data_start + end})",
            where=where,
        )
    return Entry(name, dtype, tuple(shape), begin, end)


def read_header(path: str | os.PathLike[str]) -> Header:
    """Read and validate the header of one safetensors file, never its data.

    Args:
        path: the file.

    Returns:
        The validated header.

    Raises:
        CorruptFileError: the length, the JSON or an entry is inconsistent with the format or
            the file's size (the message names the file, the tensor and byte offsets).

    Example:
        >>> import json, os, struct, tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "model.safetensors")
        >>> header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}}).encode()
        >>> with open(path, "wb") as f:  # an 8-byte header length, the JSON header, 12 bytes of data
        ...     _ = f.write(struct.pack("<Q", len(header)) + header + bytes(12))
        >>> h = read_header(path)
        >>> h.entries[0].dtype, h.entries[0].shape
        ('BF16', (2, 3))
        >>> folder.cleanup()
    """
    spath = os.fspath(path)
    try:
        with open_regular(spath) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise CorruptFileError(
                    f"file is {size} bytes, too short for the 8-byte header length", where=spath
                )
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER_BYTES:
                raise CorruptFileError(
                    f"header length {n:,} (bytes 0-7) exceeds the format's {MAX_HEADER_BYTES:,}-byte "
                    "limit; the file is corrupt or not safetensors",
                    where=spath,
                )
            if n > size - 8:
                raise CorruptFileError(
                    f"header length {n:,} (bytes 0-7) runs past the end of the {size:,}-byte file; "
                    "the file is truncated or not safetensors",
                    where=spath,
                )
            raw = f.read(n)
    except OSError as e:
        raise TargetError(f"cannot read file: {e.strerror or e}", where=spath) from None
    if len(raw) != n:
        raise CorruptFileError(f"file ended inside the {n:,}-byte header", where=spath)
    if not raw.lstrip(b" \t\r\n").startswith(b"{"):
        raise CorruptFileError("header (from byte 8) is not a JSON object", where=spath)
    doc = loads_strict(raw, where=f"{spath}, header at byte 8", max_bytes=MAX_HEADER_BYTES)
    del raw  # up to 100 MB, not needed once parsed
    if not isinstance(doc, dict):
        raise CorruptFileError("header (from byte 8) is not a JSON object", where=spath)
    data_start = 8 + n
    meta: dict[str, str] = {}
    entries: list[Entry] = []
    for name, info in doc.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise CorruptFileError("__metadata__ must be an object of strings", where=spath)
            for k, v in info.items():
                if not isinstance(v, str):
                    raise CorruptFileError(
                        f"__metadata__ value for {k!r} is {type(v).__name__}, but the format allows "
                        "only strings",
                        where=spath,
                    )
                meta[k] = v
            continue
        entries.append(_entry(spath, name, info, data_start))
    _check_tiling(spath, entries, size - data_start, data_start)
    return Header(spath, tuple(entries), meta, n, size)


def _check_tiling(path: str, entries: Sequence[Entry], data_bytes: int, data_start: int) -> None:
    # The tensors must cover the data region exactly: sorted by offset, each starts where the
    # previous ended and the last ends at the end of the file (reference: Metadata::validate).
    pos = 0
    prev = ""
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin < pos:
            raise CorruptFileError(
                f"data_offsets [{e.begin}, {e.end}] overlap the previous tensor {prev!r}, which ends "
                f"at {pos} (file byte {data_start + e.begin})",
                where=_where(path, e.name),
            )
        if e.begin > pos:
            raise CorruptFileError(
                f"{e.begin - pos} bytes between data offsets {pos} and {e.begin} belong to no tensor "
                f"(file bytes {data_start + pos}..{data_start + e.begin})",
                where=_where(path, e.name),
            )
        pos, prev = e.end, e.name
        if pos > data_bytes:
            raise CorruptFileError(
                f"tensor ends at file byte {data_start + pos:,} but the file has only "
                f"{data_start + data_bytes:,} bytes; the file is truncated",
                where=_where(path, e.name),
            )
    if pos != data_bytes:
        raise CorruptFileError(
            f"{data_bytes - pos:,} bytes after the last tensor (file bytes {data_start + pos:,}.."
            f"{data_start + data_bytes:,}) belong to no tensor",
            where=path,
        )


# --- folders, shards and the index ---------------------------------------------------------


def _is_index(p: Path) -> bool:
    return p.name.endswith(".safetensors.index.json")


def can_read(source: Any) -> bool:
    """Whether ``source`` is a safetensors file, index, or a folder holding them (cheap, safe)."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    p = Path(source)
    try:
        if p.is_dir():
            return any(
                e.name.endswith(".safetensors") or _is_index(Path(e.name)) for e in os.scandir(p)
            )
        if not p.is_file():
            return False
        if p.suffix == ".safetensors" or _is_index(p):
            return True
        with open(p, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{"



@dataclass(frozen=True, slots=True)
class _Found:
    files: tuple[Path, ...]
    index: Path | None
    folder: Path
    weight_map: Mapping[str, Path] | None
    index_meta: Mapping[str, str]


def _locate(source: str | os.PathLike[str]) -> _Found:
    p = Path(source)
    folder = p if p.is_dir() else p.parent
    index: Path | None = None
    if p.is_dir():
        names = sorted(os.listdir(p), key=natural_key)
        indexes = [folder / n for n in names if _is_index(Path(n))]
        if len(indexes) > 1:
            raise TargetError(
                f"folder has {len(indexes)} safetensors index files ({', '.join(i.name for i in indexes)}); "
                "pass the one to read",
                where=str(p),
            )
        if indexes:
            index = folder_member(folder, indexes[0].name, what="index")
        else:
            # Every weight file found by listing the folder follows the folder's rule: a
            # symlink out of it, or a FIFO, is refused, as the index's shards are.
            files = tuple(folder_member(folder, n, what="weight file") for n in names if n.endswith(".safetensors"))
            return _Found(files, None, folder, None, {})
    elif _is_index(p):
        index = p
    else:
        return _Found((p,), None, folder, None, {})
    weight_map, index_meta = read_index(index, folder)
    files = tuple(sorted(set(weight_map.values()), key=lambda q: natural_key(q.name)))
    for f in files:
        if not f.is_file():
            raise CorruptFileError(f"shard {f.name} named in the index does not exist", where=str(index))
    return _Found(files, index, folder, weight_map, index_meta)



def read(source: str | os.PathLike[str], **options: Any) -> Anatomy:
    """Read a safetensors file, index or folder into an anatomy, from the headers alone.

    Args:
        source: a ``.safetensors`` file, a ``*.safetensors.index.json``, or a folder with either.
        **options: ignored (the reader needs none).

    Returns:
        One layer tree over all shards; ``metadata`` holds ``__metadata__``, the shard count
        and, with a ``config.json`` beside, ``model_type`` and ``architectures``.

    Raises:
        CorruptFileError: a header or the index is inconsistent.
        UnsafeFileError: the index points outside the folder.

    Example:
        >>> import json, os, struct, tempfile
        >>> from paramscope.analysis import totals
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "model.safetensors")
        >>> header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}}).encode()
        >>> with open(path, "wb") as f:
        ...     _ = f.write(struct.pack("<Q", len(header)) + header + bytes(12))
        >>> t = totals(read(path))
        >>> t.params, t.n_bytes  # 2 x 3 bfloat16 values, 2 bytes each
        (6, 12)
        >>> folder.cleanup()
    """
    found = _locate(source)
    if not found.files:
        raise TargetError("folder holds no .safetensors file", where=os.fspath(source))
    flat: list[FlatTensor] = []
    owner: dict[str, Path] = {}
    notes: list[str] = [CHECKPOINT_NOTE]
    metadata: dict[str, str] = {}
    unindexed = 0
    # One header at a time: a shard's entries are dropped once its flat tensors are made.
    for file in found.files:
        h = read_header(file)
        for k, v in h.metadata.items():
            metadata.setdefault(k, short(v))
        shard = Path(h.path)
        for e in h.entries:
            if found.weight_map is not None and found.weight_map.get(e.name) != shard:
                unindexed += 1
                continue
            if e.name in owner:
                raise CorruptFileError(
                    f"tensor {e.name!r} is stored in both {owner[e.name].name} and {shard.name}; "
                    "the checkpoint is ambiguous",
                    where=str(found.folder),
                )
            owner[e.name] = shard
            flat.append(FlatTensor(e.name, e.shape, DTYPES[e.dtype]))
    if found.weight_map is not None:
        assert found.index is not None
        for name, shard in found.weight_map.items():
            if name not in owner:
                raise CorruptFileError(
                    f"tensor {name!r} is listed in the index but not stored in {shard.name}",
                    where=str(found.index),
                )
        if unindexed:
            notes.append(
                f"{unindexed} tensors stored in the shards are not listed in the index and are "
                "left out (loaders read only indexed tensors)."
            )
        for k, v in found.index_meta.items():
            metadata.setdefault(f"index.{k}", short(v))
    del h, owner  # a million-tensor header's entries are not needed past this point
    if len(found.files) > 1:
        metadata["shards"] = str(len(found.files))
    in_folder = found.index is not None or Path(source).is_dir()
    tied: dict[str, str] = {}
    how = ""
    if in_folder:
        tied, how = folder_facts(found.folder, [ft.name for ft in flat], metadata, notes)
    p = Path(source)
    name = p.name.removesuffix(".safetensors.index.json").removesuffix(".safetensors") or p.name
    if p.is_dir() or found.index is not None:
        name = found.folder.resolve().name
    return anatomy_from_flat(
        flat,
        name=name,
        framework="safetensors",
        source=os.fspath(source),
        metadata=metadata,
        notes=notes,
        tied=tied,
        tie_reason=how,
        sort=True,
    )
