"""Reader for GGUF files (llama.cpp / ggml), versions 2 and 3, from the header alone.

Layout (ggml's docs/gguf.md): magic ``GGUF``, version (u32), tensor count (u64), metadata
count (u64), the metadata key/values, one info per tensor (name, rank, dims, ggml type, offset),
padding to ``general.alignment`` (default 32), then the data. Only the header is read; every
length in it is checked against the bytes really left in the file before anything is
allocated, and every tensor's bytes must lie inside the file.

GGUF stores dims in ggml order, fastest-varying first (``ne[0]`` is a row's length). Shapes
here are reversed into PyTorch's row-major order: a ``[4096, 11008]`` ggml tensor is shown as
``(11008, 4096)``, the same as the ``nn.Linear`` weight it came from. The logical parameter
count is the element count; the bytes are the real storage of its (block-quantised) type.

This file is long (about 530 lines) because it is the whole GGUF format: header, typed metadata
values, tensor infos and split files; the ggml type table lives in core/dtypes.py.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from paramscope.core import sniff
from paramscope.core.anatomy import Anatomy, Layer, Tensor
from paramscope.core.dtypes import lookup_dtype
from paramscope.core.errors import CorruptFileError, TargetError, UnsupportedFormatError
from paramscope.core import limits
from paramscope.core.files import folder_member, open_regular
from paramscope.core.tree import FlatTensor
from paramscope.rules.names import CHECKPOINT_NOTE, anatomy_from_flat, map_tensors

__all__ = ["GGML_TYPES", "FILE_TYPES", "GGUFTensor", "GGUFHeader", "read_header", "can_read", "read"]

MAGIC = b"GGUF"
#: ggml's GGML_MAX_DIMS.
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
#: Largest single metadata string kept in memory (chat templates are a few KB).
MAX_STRING_BYTES = 64 * 1024 * 1024
#: Nesting depth of arrays of arrays accepted.
MAX_ARRAY_DEPTH = 8
#: Arrays up to this length are shown whole in the metadata; longer ones are summarised.
SHOW_ARRAY = 16
_CHUNK = 1 << 20
_U64 = struct.Struct("<Q")

#: ggml type id -> paramscope dtype name (ggml.h ``enum ggml_type``); sizes are in core.dtypes.
#: Ids 4 and 5 (Q4_2, Q4_3) were removed before GGUF existed and never appear in files.
GGML_TYPES: Mapping[int, str] = {
    0: "float32", 1: "float16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0",
    9: "q8_1", 10: "q2_k", 11: "q3_k", 12: "q4_k", 13: "q5_k", 14: "q6_k", 15: "q8_k",
    16: "iq2_xxs", 17: "iq2_xs", 18: "iq3_xxs", 19: "iq1_s", 20: "iq4_nl", 21: "iq3_s",
    22: "iq2_s", 23: "iq4_xs", 24: "int8", 25: "int16", 26: "int32", 27: "int64",
    28: "float64", 29: "iq1_m", 30: "bfloat16", 31: "q4_0_4_4", 32: "q4_0_4_8",
    33: "q4_0_8_8", 34: "tq1_0", 35: "tq2_0", 36: "iq4_nl_4_4", 37: "iq4_nl_4_8",
    38: "iq4_nl_8_8", 39: "mxfp4", 40: "nvfp4", 41: "q1_0",
}  # fmt: skip

#: ``general.file_type`` values (llama.h ``enum llama_ftype``), the model's dominant quantisation.
FILE_TYPES: Mapping[int, str] = {
    0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1", 7: "MOSTLY_Q8_0",
    8: "MOSTLY_Q5_0", 9: "MOSTLY_Q5_1", 10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S",
    12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L", 14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M",
    16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M", 18: "MOSTLY_Q6_K", 19: "MOSTLY_IQ2_XXS",
    20: "MOSTLY_IQ2_XS", 21: "MOSTLY_Q2_K_S", 22: "MOSTLY_IQ3_XS", 23: "MOSTLY_IQ3_XXS",
    24: "MOSTLY_IQ1_S", 25: "MOSTLY_IQ4_NL", 26: "MOSTLY_IQ3_S", 27: "MOSTLY_IQ3_M",
    28: "MOSTLY_IQ2_S", 29: "MOSTLY_IQ2_M", 30: "MOSTLY_IQ4_XS", 31: "MOSTLY_IQ1_M",
    32: "MOSTLY_BF16", 36: "MOSTLY_TQ1_0", 37: "MOSTLY_TQ2_0", 38: "MOSTLY_MXFP4_MOE",
    39: "MOSTLY_NVFP4", 40: "MOSTLY_Q1_0", 1024: "GUESSED",
}  # fmt: skip

# Metadata value types (gguf_type): id -> (name, struct format or "" for string/array).
_VALUE_TYPES: Mapping[int, tuple[str, str]] = {
    0: ("uint8", "<B"), 1: ("int8", "<b"), 2: ("uint16", "<H"), 3: ("int16", "<h"),
    4: ("uint32", "<I"), 5: ("int32", "<i"), 6: ("float32", "<f"), 7: ("bool", "<?"),
    8: ("string", ""), 9: ("array", ""), 10: ("uint64", "<Q"), 11: ("int64", "<q"),
    12: ("float64", "<d"),
}  # fmt: skip
_STRING, _ARRAY = 8, 9
# Fewest bytes one element of each type takes (a string is at least its 8-byte length,
# an array its 4-byte type and 8-byte count): a count times this must fit in the file.
_MIN_BYTES = {t: struct.calcsize(f) if f else (8 if t == _STRING else 12) for t, (_, f) in _VALUE_TYPES.items()}


@dataclass(frozen=True, slots=True)
class GGUFTensor:
    """One tensor info of a GGUF header.

    Attributes:
        name: its name (``"blk.0.attn_q.weight"``).
        dims: its dims in ggml order (``ne[0]`` first, the fastest-varying).
        type_id: its ggml type id.
        dtype: paramscope's dtype name for the type.
        offset: its first byte, relative to the data region.
        n_bytes: bytes of storage.
    """

    name: str
    dims: tuple[int, ...]
    type_id: int
    dtype: str
    offset: int
    n_bytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape in PyTorch (row-major) order: ggml dims reversed."""
        return tuple(reversed(self.dims))


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    """The validated header of one GGUF file.

    Attributes:
        path: the file.
        version: the format version (2 or 3).
        metadata: every key, its value as display text (long arrays summarised).
        tensors: the tensor infos, in file order.
        alignment: the data alignment.
        data_start: the file offset where tensor data begins.
        file_bytes: the file's size.
    """

    path: str
    version: int
    metadata: Mapping[str, str]
    tensors: tuple[GGUFTensor, ...]
    alignment: int
    data_start: int
    file_bytes: int


class _Cursor:
    """Reads a file's header through a window, checking every length against the file size."""

    def __init__(self, f: BinaryIO, size: int, path: str) -> None:
        self.f, self.size, self.path = f, size, path
        self.pos = 0
        self.buf = b""
        self.buf_start = 0

    def fail(self, what: str, at: int | None = None) -> CorruptFileError:
        return CorruptFileError(f"{what} (byte {self.pos if at is None else at:,})", where=self.path)

    @property
    def left(self) -> int:
        return self.size - self.pos

    def _window(self, n: int, what: str) -> int:
        if n > self.left:
            raise self.fail(f"{what} needs {n:,} bytes but only {self.left:,} are left; the file is truncated")
        off = self.pos - self.buf_start
        if off < 0 or off + n > len(self.buf):
            self.f.seek(self.pos)
            self.buf = self.f.read(max(n, _CHUNK))
            self.buf_start = self.pos
            off = 0
            if len(self.buf) < n:
                raise self.fail(f"file ended inside {what}")
        return off

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        off = self._window(n, what)
        self.pos += n
        return struct.unpack_from(fmt, self.buf, off)[0]

    def take(self, n: int, what: str) -> bytes:
        if n > MAX_STRING_BYTES:
            raise self.fail(f"{what} claims {n:,} bytes, over the {MAX_STRING_BYTES:,}-byte limit")
        off = self._window(n, what)
        self.pos += n
        return self.buf[off : off + n]

    def skip(self, n: int, what: str) -> None:
        if n > self.left:
            raise self.fail(f"{what} needs {n:,} bytes but only {self.left:,} are left; the file is truncated")
        self.pos += n

    def skip_strings(self, count: int, what: str) -> None:
        """Skip ``count`` length-prefixed strings, checking each length against the file."""
        unpack_from = _U64.unpack_from
        for _ in range(count):
            off = self.pos - self.buf_start
            if off < 0 or off + 8 > len(self.buf):
                off = self._window(8, f"string length in {what}")
            n = unpack_from(self.buf, off)[0]
            self.pos += 8
            if n > self.size - self.pos:
                raise self.fail(f"string in {what} claims {n:,} bytes but only {self.left:,} are left", self.pos - 8)
            self.pos += n

    def string(self, what: str, *, strict: bool = True) -> str:
        at = self.pos
        n = self.unpack("<Q", f"length of {what}")
        if n > self.left:
            raise self.fail(
                f"{what} claims {n:,} bytes but only {self.left:,} are left in the file", at
            )
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if strict:
                raise self.fail(f"{what} is not valid UTF-8", at) from None
            return raw.decode("utf-8", errors="replace")


def _value(c: _Cursor, type_id: int, key: str, depth: int = 0) -> str:
    """Read one metadata value and return it as display text (long arrays summarised)."""
    if type_id not in _VALUE_TYPES:
        raise c.fail(f"metadata {key!r} has unknown value type {type_id}")
    name, fmt = _VALUE_TYPES[type_id]
    if fmt:
        v = c.unpack(fmt, f"value of {key!r}")
        return str(v).lower() if isinstance(v, bool) else str(v)
    if type_id == _STRING:
        return c.string(f"string value of {key!r}", strict=False)
    if depth >= MAX_ARRAY_DEPTH:
        raise c.fail(f"metadata {key!r} nests arrays more than {MAX_ARRAY_DEPTH} deep")
    at = c.pos
    elem = c.unpack("<I", f"array type of {key!r}")
    count = c.unpack("<Q", f"array length of {key!r}")
    if elem not in _VALUE_TYPES:
        raise c.fail(f"metadata {key!r} is an array of unknown type {elem}", at)
    if count * _MIN_BYTES[elem] > c.left:
        raise c.fail(
            f"metadata {key!r} claims {count:,} array elements, more than the {c.left:,} bytes "
            "left in the file can hold",
            at,
        )
    ename, efmt = _VALUE_TYPES[elem]
    if efmt and count > SHOW_ARRAY:
        c.skip(count * struct.calcsize(efmt), f"array {key!r}")
        return f"array[{count}] of {ename}"
    shown = [_value(c, elem, key, depth + 1) for _ in range(min(count, SHOW_ARRAY))]
    if elem == _STRING:
        c.skip_strings(count - len(shown), f"array {key!r}")
    else:
        for _ in range(count - len(shown)):
            _value(c, elem, key, depth + 1)
    if count > SHOW_ARRAY:
        return f"array[{count}] of {ename}"
    return "[" + ", ".join(repr(s) if elem == _STRING else s for s in shown) + "]"


def read_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Read and validate a GGUF file's header and tensor infos, never the tensor data.

    Args:
        path: the ``.gguf`` file.

    Returns:
        The validated header.

    Raises:
        CorruptFileError: a length, count, type or offset is inconsistent with the file.
        UnsupportedFormatError: version 1 (obsolete), an unknown version, or big-endian.

    Example:
        >>> import os, tempfile, numpy as np, gguf  # gguf, the format's own library, writes the file
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "tiny.gguf")
        >>> w = gguf.GGUFWriter(path, "llama")
        >>> w.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float16))
        >>> w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
        >>> h = read_header(path)
        >>> h.metadata["general.architecture"], len(h.tensors)
        ('llama', 1)
        >>> folder.cleanup()
    """
    spath = os.fspath(path)
    try:
        with open_regular(spath) as f:
            size = os.fstat(f.fileno()).st_size
            return _parse(_Cursor(f, size, spath))
    except OSError as e:
        raise TargetError(f"cannot read file: {e.strerror or e}", where=spath) from None


def _parse(c: _Cursor) -> GGUFHeader:
    if c.size < 4 or c.take(4, "magic") != MAGIC:
        raise CorruptFileError("not a GGUF file: the first 4 bytes are not 'GGUF'", where=c.path)
    version = c.unpack("<I", "version")
    if version == 1:
        raise UnsupportedFormatError(
            "GGUF version 1 (2023, 32-bit counts) is obsolete and not read; convert the model "
            "again with a current llama.cpp",
            where=c.path,
        )
    if version not in (2, 3):
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in (1, 2, 3):
            raise UnsupportedFormatError("big-endian GGUF files are not supported", where=c.path)
        raise UnsupportedFormatError(
            f"GGUF version {version} (byte 4) is unknown; versions 2 and 3 are read", where=c.path
        )
    n_tensors = c.unpack("<Q", "tensor count")
    n_kv = c.unpack("<Q", "metadata count")
    # Each key/value takes at least 13 bytes, each tensor info at least 24 (name length, rank,
    # type, offset): counts the file cannot hold are refused before any loop or allocation.
    if n_kv * 13 > c.left:
        raise c.fail(f"metadata count {n_kv:,} (byte 16) cannot fit in the {c.size:,}-byte file", 16)
    if n_tensors * 24 > c.left:
        raise c.fail(f"tensor count {n_tensors:,} (byte 8) cannot fit in the {c.size:,}-byte file", 8)
    limits.check("tensor count (byte 8)", n_tensors, limits.MAX_TENSORS, "MAX_TENSORS", where=c.path)
    meta: dict[str, str] = {}
    raw_alignment: tuple[int, int] | None = None
    for i in range(n_kv):
        at = c.pos
        key = c.string(f"key of metadata entry {i}")
        if key in meta:
            raise c.fail(f"duplicate metadata key {key!r}", at)
        type_id = c.unpack("<I", f"value type of {key!r}")
        if key == "general.alignment":
            raw_alignment = (type_id, c.pos)
        meta[key] = _value(c, type_id, key)
    alignment = DEFAULT_ALIGNMENT
    if raw_alignment is not None:
        type_id, at = raw_alignment
        alignment = int(meta["general.alignment"]) if type_id == 4 else 0
        if alignment <= 0 or alignment & (alignment - 1):
            raise c.fail("general.alignment must be a power-of-two uint32", at)
    if "general.file_type" in meta and meta["general.file_type"].isdigit():
        ft = int(meta["general.file_type"])
        meta["general.file_type"] = f"{ft} ({FILE_TYPES.get(ft, 'unknown')})"
    tensors: list[GGUFTensor] = []
    names: set[str] = set()
    for i in range(n_tensors):
        at = c.pos
        name = c.string(f"name of tensor {i}")
        if name in names:
            raise c.fail(f"duplicate tensor name {name!r}", at)
        names.add(name)
        n_dims = c.unpack("<I", f"rank of tensor {name!r}")
        if n_dims > MAX_DIMS:
            raise c.fail(f"tensor {name!r} has {n_dims} dims; GGUF allows at most {MAX_DIMS}", c.pos - 4)
        dims = tuple(c.unpack("<Q", f"dims of tensor {name!r}") for _ in range(n_dims))
        count = 1
        for d in dims:
            count *= d
        if any(d >= 2**63 for d in dims) or count >= 2**63:
            raise c.fail(f"tensor {name!r} dims {list(dims)} overflow a 64-bit element count", at)
        type_id = c.unpack("<I", f"type of tensor {name!r}")
        if type_id not in GGML_TYPES:
            raise c.fail(f"tensor {name!r} has unknown ggml type {type_id}", c.pos - 4)
        dtype = lookup_dtype(GGML_TYPES[type_id])
        size = None if dtype is None else dtype.n_bytes(count)
        assert dtype is not None and size is not None  # every ggml type has a fixed size
        offset = c.unpack("<Q", f"offset of tensor {name!r}")
        if dims and dims[0] % dtype.block_elements:
            raise c.fail(
                f"tensor {name!r}: row length {dims[0]} is not a multiple of the "
                f"{dtype.block_elements}-element {dtype.name} block",
                at,
            )
        if offset % alignment:
            raise c.fail(f"tensor {name!r} offset {offset:,} is not a multiple of the alignment {alignment}", at)
        tensors.append(GGUFTensor(name, dims, type_id, dtype.name, offset, size))
    data_start = -(-c.pos // alignment) * alignment
    end = 0
    for t in sorted(tensors, key=lambda t: t.offset):
        if t.offset < end:
            raise CorruptFileError(
                f"tensor {t.name!r} at data offset {t.offset:,} overlaps the previous tensor", where=c.path
            )
        end = t.offset + t.n_bytes
        if data_start + end > c.size:
            raise CorruptFileError(
                f"tensor {t.name!r} ends at byte {data_start + end:,}, past the end of the "
                f"{c.size:,}-byte file; the file is truncated or corrupt",
                where=c.path,
            )
    return GGUFHeader(c.path, version, meta, tuple(tensors), alignment, data_start, c.size)


def can_read(source: Any) -> bool:
    """Whether ``source`` is a file starting with the GGUF magic (or named ``*.gguf``)."""
    p = sniff.file_path(source)
    if p is None:
        return False
    return p.suffix.lower() == ".gguf" or sniff.head(p, len(MAGIC)) == MAGIC


def _short(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value):,} characters)"


def _storage_why(_: Layer, t: Tensor) -> Tensor:
    """Add how a block-quantised tensor is stored to its explanation."""
    dt = lookup_dtype(t.dtype)
    if dt is None or dt.block_elements == 1:
        return t
    how = (
        f"stored as {dt.name}: blocks of {dt.block_elements} weights in {dt.block_bytes} bytes "
        f"({dt.bits:.4g} bits per weight)"
    )
    return replace(t, why=f"{t.why}; {how}" if t.why else how)


_SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def _int_meta(h: GGUFHeader, key: str) -> int | None:
    value = h.metadata.get(key, "")
    return int(value) if value.lstrip("-").isdigit() else None


def _splits(first: GGUFHeader, path: Path) -> tuple[list[GGUFHeader], list[str]]:
    """All splits of a ``gguf-split`` model, found by llama.cpp's file-name pattern.

    Returns the headers read and notes; a split that is missing is reported, not guessed.
    """
    count = _int_meta(first, "split.count") or 1
    if count <= 1:
        return [first], []
    m = _SPLIT_NAME.match(path.name)
    if m is None or int(m["count"]) != count:
        return [first], [
            f"This file is one of {count} splits, but its name does not follow the "
            "PREFIX-00001-of-0000N.gguf pattern, so only its own tensors are counted."
        ]
    headers: list[GGUFHeader] = []
    missing: list[str] = []
    for k in range(1, count + 1):
        sibling = path.with_name(f"{m['prefix']}-{k:05d}-of-{count:05d}.gguf")
        if sibling.name == path.name:
            h = first
        elif os.path.lexists(sibling) and (
            # The folder's rule: a split is a regular file inside the first split's folder.
            split := folder_member(path.parent, sibling.name, what="split", noun="the model's folder", must_exist=False)
        ).is_file():
            h = read_header(split)
        else:
            missing.append(sibling.name)
            continue
        if _int_meta(h, "split.no") != k - 1 or _int_meta(h, "split.count") != count:
            raise CorruptFileError(
                f"split metadata (split.no {h.metadata.get('split.no')}, split.count "
                f"{h.metadata.get('split.count')}) does not match its file name",
                where=h.path,
            )
        headers.append(h)
    notes = [f"Read {len(headers)} of {count} splits ({', '.join(x.path.rsplit(os.sep, 1)[-1] for x in headers)})."]
    if missing:
        notes.append(f"Missing splits, not counted: {', '.join(missing)}.")
    else:
        expected = _int_meta(first, "split.tensors.count")
        found = sum(len(h.tensors) for h in headers)
        if expected is not None and expected != found:
            raise CorruptFileError(
                f"split.tensors.count says {expected} tensors but the {count} splits hold {found}",
                where=first.path,
            )
    return headers, notes


def read(source: str | os.PathLike[str], **options: Any) -> Anatomy:
    """Read a GGUF file into an anatomy.

    Args:
        source: the ``.gguf`` file.
        **options: ignored (the reader needs none).

    Returns:
        The tensors as a layer tree (shapes in PyTorch order), every metadata key as text
        (large arrays such as the vocabulary summarised as ``array[32000] of string``), and a
        note when the output head is tied to the token embedding.

    Example:
        >>> import os, tempfile, numpy as np, gguf  # gguf, the format's own library, writes the file
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "tiny.gguf")
        >>> w = gguf.GGUFWriter(path, "llama")
        >>> w.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float16))
        >>> w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
        >>> from paramscope.analysis import totals
        >>> t = totals(read(path))
        >>> t.params, t.n_bytes  # 16 x 8 float16 values
        (128, 256)
        >>> folder.cleanup()
    """
    p = Path(source)
    h = read_header(source)
    headers, split_notes = _splits(h, p)
    first = next((x for x in headers if _int_meta(x, "split.no") in (0, None)), h)
    flat: list[FlatTensor] = []
    names: dict[str, str] = {}
    for x in headers:
        for t in x.tensors:
            if t.name in names:
                raise CorruptFileError(
                    f"tensor {t.name!r} is in two splits ({names[t.name]} and this one)", where=x.path
                )
            names[t.name] = os.path.basename(x.path)
            flat.append(FlatTensor(t.name, t.shape, t.dtype, is_param=True))
    meta = {k: _short(v) for k, v in first.metadata.items()}
    meta["gguf.version"] = str(first.version)
    meta["gguf.alignment"] = str(first.alignment)
    notes = [
        "Shapes are shown in PyTorch order: GGUF stores dims reversed (ggml order, fastest first).",
        *split_notes,
        CHECKPOINT_NOTE,
    ]
    missing_splits = len(headers) < (_int_meta(first, "split.count") or 1)
    tied: dict[str, str] = {}
    # llama.cpp uses the token embedding as the output head when a decoder (it has a final
    # norm) stores no output tensor.
    if (
        not missing_splits
        and "output.weight" not in names
        and "token_embd.weight" in names
        and "output_norm.weight" in names
    ):
        tied["output.weight"] = "token_embd.weight"
    anatomy = anatomy_from_flat(
        flat,
        name=meta.get("general.name") or (_SPLIT_NAME.sub(r"\g<prefix>", p.name) if headers[1:] else p.stem),
        framework="gguf",
        source=os.fspath(source),
        metadata=meta,
        notes=notes,
        tied=tied,
        tie_reason="the file has no output.weight, so llama.cpp uses the token embedding as the output head",
    )
    anatomy = anatomy.with_(layers=tuple(map_tensors(la, _storage_why) for la in anatomy.layers))
    if missing_splits:
        # The missing splits' tensors are unknown: an unexplained layer makes totals incomplete.
        rest = Layer("(missing splits)", path="(missing splits)", known=False,
                     note="tensors stored in splits that were not found")
        anatomy = anatomy.with_(layers=(*anatomy.layers, rest))
    return anatomy
