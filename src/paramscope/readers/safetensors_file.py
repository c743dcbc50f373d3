"""Reader for safetensors files: single files, sharded checkpoints and model folders.

A safetensors file is an 8-byte little-endian header length, a JSON header naming every
tensor's dtype, shape and byte range, then the raw data. Only the length and the header are
read: the data is never touched, so a 140 GB checkpoint is summarised from a few hundred KB.
Everything in the header is checked against the file's real size before it is trusted
(format: the safetensors README and the reference implementation's ``Metadata::validate``).

Sharded checkpoints are a ``*.safetensors.index.json`` whose ``weight_map`` names the shard of
each tensor; every path in it must stay inside the folder, which is checked before any shard
is opened. A ``config.json`` beside the weights adds the model type and declared weight ties.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import CorruptFileError, TargetError, UnsafeFileError
from paramscope.core.strict_json import loads_strict
from paramscope.core.tree import FlatTensor
from paramscope.rules.names import CHECKPOINT_NOTE, TOKEN_TABLES, anatomy_from_flat, natural_key

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
#: Largest config.json read beside the weights.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: Largest index file read (a 400-shard index is a few MB).
MAX_INDEX_BYTES = 64 * 1024 * 1024
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
        >>> h = read_header("model.safetensors")  # doctest: +SKIP
        >>> h.entries[0].dtype, h.entries[0].shape  # doctest: +SKIP
        ('BF16', (32000, 4096))
    """
    spath = os.fspath(path)
    try:
        with open(spath, "rb") as f:
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


def _load_json(path: Path, limit: int) -> Any:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise CorruptFileError(f"{size:,} bytes, over the {limit:,}-byte limit for this file", where=str(path))
            raw = f.read(size)
    except OSError as e:
        raise TargetError(f"cannot read file: {e.strerror or e}", where=str(path)) from None
    return loads_strict(raw, where=str(path), max_bytes=limit)


def _inside(base: str, target: str) -> bool:
    return os.path.commonpath([base, target]) == base


def _hub_blob(base: str, target: str) -> bool:
    """Whether ``target`` is a blob of the same Hugging Face cache repository as ``base``.

    The hub cache keeps ``models--org--name/snapshots/<revision>/model.safetensors`` as a
    symlink to ``models--org--name/blobs/<sha256>``: leaving the snapshot folder, but only
    for the repository's own blob store.
    """
    snap = Path(base)
    repo = snap.parent.parent
    if snap.parent.name != "snapshots" or not repo.name.startswith(("models--", "datasets--", "spaces--")):
        return False
    return _inside(str(repo / "blobs"), target)


def _shard_path(folder: Path, rel: object, index: Path, tensor: str) -> Path:
    """Resolve a shard named in an index, refusing anything that leaves the folder.

    Nothing is opened here: only the path's text and the symlinks on the way are examined.
    """
    where = f"{index}, weight_map[{tensor!r}]"
    if not isinstance(rel, str) or not rel:
        raise CorruptFileError(f"shard file name must be a non-empty string, got {rel!r}", where=where)
    parts = rel.replace("\\", "/").split("/")
    if "\x00" in rel or rel.startswith(("/", "\\")) or os.path.isabs(rel) or ":" in parts[0] or ".." in parts:
        raise UnsafeFileError(
            f"shard path {rel!r} leaves the checkpoint folder; refusing to open it", where=where
        )
    base = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(base, rel))
    if not _inside(base, target) and not _hub_blob(base, target):
        raise UnsafeFileError(
            f"shard path {rel!r} is a symlink out of the checkpoint folder (to {target}); "
            "refusing to open it",
            where=where,
        )
    return Path(target)


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
            index = indexes[0]
        else:
            files = tuple(folder / n for n in names if n.endswith(".safetensors") and (folder / n).is_file())
            return _Found(files, None, folder, None, {})
    elif _is_index(p):
        index = p
    else:
        return _Found((p,), None, folder, None, {})
    doc = _load_json(index, MAX_INDEX_BYTES)
    wm = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wm, dict):
        raise CorruptFileError("index has no \"weight_map\" object", where=str(index))
    meta_doc = doc.get("metadata")
    index_meta = (
        {str(k): str(v) for k, v in meta_doc.items() if isinstance(v, (str, int, float))}
        if isinstance(meta_doc, dict)
        else {}
    )
    # Every path is checked before any shard is opened.
    weight_map = {name: _shard_path(folder, rel, index, name) for name, rel in wm.items()}
    files = tuple(sorted(set(weight_map.values()), key=lambda q: natural_key(q.name)))
    for f in files:
        if not f.is_file():
            raise CorruptFileError(f"shard {f.name} named in the index does not exist", where=str(index))
    return _Found(files, index, folder, weight_map, index_meta)


#: Facts copied from a transformers config.json into the metadata.
_CONFIG_KEYS = (
    "model_type", "architectures", "torch_dtype", "dtype", "hidden_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size",
    "max_position_embeddings", "tie_word_embeddings",
)  # fmt: skip
#: Facts copied from a PEFT adapter_config.json (prefixed ``adapter.``).
_ADAPTER_KEYS = ("peft_type", "base_model_name_or_path", "r", "lora_alpha", "target_modules")


def _facts(doc: Mapping[str, Any], keys: Sequence[str]) -> dict[str, str]:
    """Scalar or list-of-scalar values of ``keys`` as display strings."""
    out: dict[str, str] = {}
    for key in keys:
        value = doc.get(key)
        if isinstance(value, bool):
            out[key] = str(value).lower()
        elif isinstance(value, (str, int, float)):
            out[key] = _short(str(value))
        elif isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            out[key] = _short(", ".join(map(str, value)))
    return out


def _config(folder: Path, name: str) -> dict[str, Any] | None:
    cfg = folder / name
    if not cfg.is_file():
        return None
    doc = _load_json(cfg, MAX_CONFIG_BYTES)
    return doc if isinstance(doc, dict) else None


_HEAD_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")


def _ties(config: Mapping[str, Any] | None, names: Sequence[str]) -> tuple[dict[str, str], str]:
    """Weight ties a transformers config declares, as alias -> target, and how it says so."""
    if config is None or "lm_head.weight" in names and config.get("tie_word_embeddings") is not True:
        return {}, ""
    tie = config.get("tie_word_embeddings")
    archs = config.get("architectures")
    has_head = isinstance(archs, list) and any(
        isinstance(a, str) and a.endswith(_HEAD_ARCHITECTURES) for a in archs
    )
    if tie is not True and not (tie is None and has_head):
        return {}, ""
    tables = [n for n in names if n.endswith(".weight") and n.rsplit(".", 2)[-2] in TOKEN_TABLES]
    if not tables:
        return {}, ""
    how = "config.json: tie_word_embeddings true" if tie is True else "config.json: tie_word_embeddings unset, which transformers ties by default"
    return {"lm_head.weight": tables[0]}, how


def _short(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value):,} characters)"


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
        >>> from paramscope.analysis import totals
        >>> totals(read("Llama-2-7b-hf")).params  # doctest: +SKIP
        6738415616
    """
    found = _locate(source)
    if not found.files:
        raise TargetError("folder holds no .safetensors file", where=os.fspath(source))
    headers = [read_header(f) for f in found.files]
    flat: list[FlatTensor] = []
    owner: dict[str, Path] = {}
    notes: list[str] = [CHECKPOINT_NOTE]
    metadata: dict[str, str] = {}
    unindexed = 0
    for h in headers:
        for k, v in h.metadata.items():
            metadata.setdefault(k, _short(v))
        for e in h.entries:
            shard = Path(h.path)
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
            metadata.setdefault(f"index.{k}", _short(v))
    if len(headers) > 1:
        metadata["shards"] = str(len(headers))
    in_folder = found.index is not None or Path(source).is_dir()
    config = _config(found.folder, "config.json") if in_folder else None
    tied: dict[str, str] = {}
    how = ""
    if config is not None:
        metadata.update(_facts(config, _CONFIG_KEYS))
        tied, how = _ties(config, [ft.name for ft in flat])
    adapter = _config(found.folder, "adapter_config.json") if in_folder else None
    if adapter is not None:
        metadata.update({f"adapter.{k}": v for k, v in _facts(adapter, _ADAPTER_KEYS).items()})
        notes.append(
            "This is an adapter (PEFT): its tensors are added to the base model "
            f"{adapter.get('base_model_name_or_path') or '(not named)'}, which is not counted here."
        )
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
