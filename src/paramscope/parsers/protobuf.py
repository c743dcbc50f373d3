"""A bounded reader of the protobuf wire format, enough to walk an ONNX model without its data.

A protobuf message is a run of fields, each a key varint ``(field_number << 3) | wire_type``
followed by a varint (type 0), 8 bytes (1), a length-prefixed payload (2) or 4 bytes (5)
(https://protobuf.dev/programming-guides/encoding/). Length-delimited payloads are returned as
``(start, end)`` offsets into the buffer, so a tensor's ``raw_data`` is skipped without being
copied or even touched. Every length is checked against the bytes left in its enclosing
message; a varint longer than 10 bytes, an unknown wire type or a field running past its
parent fails with :class:`~paramscope.core.errors.CorruptFileError` naming the byte offset.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from paramscope.core.errors import CorruptFileError

__all__ = ["Field", "Buffer", "FileBytes", "encode_len", "VARINT", "I64", "LEN", "I32"]

VARINT, I64, LEN, I32 = 0, 1, 2, 5


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message.

    Attributes:
        number: the field number.
        wire: the wire type.
        value: the integer for VARINT/I64/I32 (raw bits), or the payload start offset for LEN.
        end: the offset just after the field.
        start: the offset of the field's key (``data[start:end]`` is the whole field).
    """

    number: int
    wire: int
    value: int
    end: int
    start: int = 0


class FileBytes:
    """Random access to a file's bytes through a few cached pages read with ``os.pread``.

    A big model is mostly tensor payloads that the scanner skips; reading only the pages that
    hold message headers keeps memory to a few MiB, where a memory map would bring whole
    page-cache folios around every header into the process.

    Args:
        fd: an open file descriptor.
        size: the file's size in bytes.
        page: bytes per cached page.
        pages: how many pages to keep.
    """

    def __init__(self, fd: int, size: int, page: int = 1 << 16, pages: int = 64) -> None:
        self.fd = fd
        self.size = size
        self.page = page
        self.pages = pages
        self.cache: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self.size

    def _page(self, index: int) -> bytes:
        data = self.cache.get(index)
        if data is None:
            if len(self.cache) >= self.pages:
                self.cache.pop(next(iter(self.cache)))
            data = self.cache[index] = os.pread(self.fd, self.page, index * self.page)
        return data

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, int):
            if not 0 <= key < self.size:
                raise IndexError(key)
            return self._page(key // self.page)[key % self.page]
        start, stop, _ = key.indices(self.size)
        if stop <= start:
            return b""
        if stop - start > 4 * self.page:
            return os.pread(self.fd, stop - start, start)
        first, last = start // self.page, (stop - 1) // self.page
        joined = b"".join(self._page(i) for i in range(first, last + 1))
        return joined[start - first * self.page : stop - first * self.page]


class Buffer:
    """Bytes (or a :class:`FileBytes` view) of one file, read field by field.

    Args:
        data: the file's bytes, or a :class:`FileBytes` for a large file.
        where: the file, for messages.

    Example:
        >>> [(f.number, f.value) for f in Buffer(b"\\x08\\x07", "m").fields(0, 2)]
        [(1, 7)]
    """

    def __init__(self, data: bytes | memoryview | FileBytes, where: str) -> None:
        self.data: Any = data if isinstance(data, FileBytes) else memoryview(data)
        self.where = where

    def error(self, what: str, offset: int) -> CorruptFileError:
        return CorruptFileError(f"{what} at byte {offset}; the protobuf is damaged or truncated", where=self.where)

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        """(value, next offset) of the varint at ``pos``, which must end before ``end``."""
        if pos < end:
            # Most keys and lengths fit one byte: read it without slicing (a third of the time
            # of reading a large graph goes here).
            first = self.data[pos]
            if first < 0x80:
                return first, pos + 1
        result = 0
        chunk = self.data[pos : min(pos + 10, end)]
        for i in range(10):
            if i >= len(chunk):
                raise self.error("a varint runs past the end of its message", pos)
            b = chunk[i]
            result |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if result >= 1 << 64:
                    raise self.error("a varint overflows 64 bits", pos)
                return result, pos + i + 1
        raise self.error("a varint longer than 10 bytes", pos)

    def fields(self, start: int, end: int) -> Iterator[Field]:
        """The fields of the message stored in ``[start, end)``."""
        if end > len(self.data) or start > end:
            raise self.error(f"a message of {end - start} bytes runs past the end of the file", start)
        pos = start
        while pos < end:
            at = pos
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.error("field number 0", at)
            if wire == VARINT:
                value, pos = self.varint(pos, end)
                yield Field(number, wire, value, pos, at)
            elif wire == LEN:
                length, pos = self.varint(pos, end)
                if length > end - pos:
                    raise self.error(
                        f"field {number} claims {length} bytes but {end - pos} are left in its message", at
                    )
                yield Field(number, wire, pos, pos + length, at)
                pos += length
            elif wire in (I64, I32):
                size = 8 if wire == I64 else 4
                if size > end - pos:
                    raise self.error(f"a {size}-byte field runs past the end of its message", at)
                value = int.from_bytes(self.data[pos : pos + size], "little")
                yield Field(number, wire, value, pos + size, at)
                pos += size
            else:
                raise self.error(f"unsupported wire type {wire} (field {number})", at)

    def text(self, f: Field) -> str:
        """A LEN field as UTF-8 text (invalid bytes replaced)."""
        self._need_len(f)
        return bytes(self.data[f.value : f.end]).decode("utf-8", "replace")

    def ints(self, f: Field) -> list[int]:
        """A repeated int64 field: one varint, or a packed run of them (signed two's complement)."""
        if f.wire == VARINT:
            return [_signed(f.value)]
        self._need_len(f)
        out = []
        pos = f.value
        while pos < f.end:
            value, pos = self.varint(pos, f.end)
            out.append(_signed(value))
        return out

    def count_packed(self, f: Field, item_bytes: int) -> int:
        """How many values a repeated numeric field holds (packed or one at a time)."""
        if f.wire != LEN:
            return 1
        if item_bytes:
            return (f.end - f.value) // item_bytes
        return sum(1 for b in self.data[f.value : f.end] if not b & 0x80)

    def float32(self, f: Field) -> float:
        """An I32 field as a float."""
        return float(struct.unpack("<f", f.value.to_bytes(4, "little"))[0])

    def _need_len(self, f: Field) -> None:
        if f.wire != LEN:
            raise self.error(f"field {f.number} should be length-delimited", f.value)


def encode_len(number: int, payload: bytes) -> bytes:
    """A length-delimited field: key, length, payload."""
    return _varint(number << 3 | LEN) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
