"""Open a zip archive only when every reader would see the same members in it.

A zip names its members twice: once in a local header before each member's data and once in
the central directory at the end. Readers differ in which they trust and in how they break
ties: Python's :mod:`zipfile` keeps the *last* of two members with one name, PyTorch's loader
(miniz, looked up without regard to case) and ``unzip`` find the *first*, a streaming reader
walks the local headers from byte 0 and never reads the directory. So a ``pytorch_model.bin``
holding two ``data.pkl`` members can be a clean state dict to one tool and a payload to the
framework. A tool used to vet a file must describe the file the framework loads, so
:func:`open_zip` refuses every such ambiguity, with one line naming it:

- two members whose names are equal, or equal ignoring case;
- a local header that disagrees with the central directory on the name, the compression
  method, the flags, the CRC or the sizes (including sizes given in a zip64 extra field), or a
  data descriptor that disagrees with it;
- a stored member whose two sizes differ;
- members that overlap, leave unexplained bytes between them, or do not begin at byte 0;
  bytes between the last member and the central directory, or after the end record and its
  comment (data before or after the archive that another reader would see);
- an end record whose member count or directory size disagrees with the directory, or
  more members than :data:`MAX_MEMBERS`.

The checks read each member's local header (a few dozen bytes), never its data.
Format: PKWARE's APPNOTE.TXT, sections 4.3 (structure) and 4.5.3 (zip64 extra field).
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from paramscope.core.errors import CorruptFileError, UnsafeFileError

__all__ = ["MAX_MEMBERS", "open_zip", "ZIP_ERRORS"]

#: Most members an archive may hold: a checkpoint has one per storage (a 70B model's state dict
#: has a few thousand); the limit keeps the central directory's cost bounded before it is parsed.
MAX_MEMBERS = 1_000_000
#: Errors Python's zipfile raises while reading members, turned into CorruptFileError by readers.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError, ValueError)

_END = b"PK\x05\x06"
_END64 = b"PK\x06\x06"
_LOCATOR64 = b"PK\x06\x07"
_LOCAL = b"PK\x03\x04"
_DESCRIPTOR = b"PK\x07\x08"
_MAX_COMMENT = 0xFFFF
_UTF8_NAMES = 0x800
_HAS_DESCRIPTOR = 0x8


@dataclass(frozen=True, slots=True)
class _End:
    entries: int
    directory_size: int
    directory_offset: int
    #: Where the central directory must end: the zip64 end record, or the end record.
    directory_end: int


def open_zip(path: str | os.PathLike[str], *, where: str | None = None) -> zipfile.ZipFile:
    """A :class:`zipfile.ZipFile` of ``path``, once its structure is unambiguous.

    Args:
        path: the archive.
        where: how errors name the file (default: ``path``).

    Returns:
        The open archive; the caller closes it.

    Raises:
        CorruptFileError: not a readable zip archive.
        UnsafeFileError: the archive is ambiguous: two readers could see different members.

    Example:
        >>> import io, zipfile, tempfile, os
        >>> folder = tempfile.mkdtemp()
        >>> with zipfile.ZipFile(os.path.join(folder, "a.zip"), "w") as zf:
        ...     zf.writestr("a/data.pkl", b"x")
        >>> with open_zip(os.path.join(folder, "a.zip")) as zf:
        ...     zf.namelist()
        ['a/data.pkl']
    """
    where = where or os.fspath(path)
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise CorruptFileError(f"not a readable zip archive ({e.strerror or e})", where=where) from None
    with raw:
        # The end record first: the member count is bounded before zipfile parses the directory.
        end = _end_record(raw, os.fstat(raw.fileno()).st_size, where)
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as e:
            raise CorruptFileError(f"not a readable zip archive ({e})", where=where) from None
        try:
            _check_members(raw, zf.infolist(), end, where)
        except BaseException:
            zf.close()
            raise
    return zf


def _ambiguous(what: str, where: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"ambiguous zip archive: {what}; other tools (and the framework) could read different "
        "content from this file than paramscope would, so it is refused (rewrite the archive with a "
        "standard zip tool, or the framework's own save, to inspect it)",
        where=where,
    )


def _read_at(raw: BinaryIO, offset: int, n: int) -> bytes:
    raw.seek(offset)
    return raw.read(n)


def _end_record(raw: BinaryIO, size: int, where: str) -> _End:
    """The end-of-central-directory record, found as Python's zipfile finds it."""
    tail_start = max(0, size - 22 - _MAX_COMMENT)
    tail = _read_at(raw, tail_start, size - tail_start)
    at = len(tail) - 22 if tail[-22:-18] == _END else tail.rfind(_END)
    if at < 0 or len(tail) - at < 22:
        raise CorruptFileError("not a readable zip archive (no end-of-archive record)", where=where)
    (_, disk, cd_disk, on_disk, entries, cd_size, cd_offset, comment_len) = struct.unpack("<4s4H2LH", tail[at : at + 22])
    eocd = tail_start + at
    if eocd + 22 + comment_len != size:
        raise _ambiguous(
            f"{size - eocd - 22 - comment_len:+,} bytes after the end-of-archive record and its comment "
            f"(the record is at byte {eocd:,})",
            where,
        )
    if disk or cd_disk or on_disk != entries:
        raise CorruptFileError("a multi-disk (split) zip archive is not supported", where=where)
    directory_end = eocd
    locator = _read_at(raw, eocd - 20, 20) if eocd >= 20 else b""
    if locator[:4] == _LOCATOR64:
        (_, _, record_at, _) = struct.unpack("<4sLQL", locator)
        record = _read_at(raw, record_at, 56)
        if record[:4] != _END64 or record_at + 56 > eocd - 20:
            raise CorruptFileError(f"the zip64 end record at byte {record_at:,} is missing or malformed", where=where)
        (_, _, _, _, _, _, _, entries, cd_size, cd_offset) = struct.unpack("<4sQ2H2L4Q", record)
        directory_end = record_at
        if record_at + 56 != eocd - 20:
            raise _ambiguous(f"{eocd - 20 - record_at - 56:,} unexplained bytes after the zip64 end record", where)
    if entries > MAX_MEMBERS:
        raise UnsafeFileError(
            f"the archive declares {entries:,} members, more than the {MAX_MEMBERS:,} paramscope reads "
            "(a model archive has one per stored tensor)",
            where=where,
        )
    if cd_offset + cd_size != directory_end:
        raise _ambiguous(
            f"the central directory ({cd_size:,} bytes declared at byte {cd_offset:,}) does not end where the "
            f"end record begins (byte {directory_end:,}): data before the archive or between its parts",
            where,
        )
    return _End(entries, cd_size, cd_offset, directory_end)


def _name_bytes(info: zipfile.ZipInfo) -> bytes:
    return info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_NAMES else "cp437")


def _check_members(raw: BinaryIO, infos: list[zipfile.ZipInfo], end: _End, where: str) -> None:
    if len(infos) != end.entries:
        raise _ambiguous(f"the end record counts {end.entries:,} members but the directory lists {len(infos):,}", where)
    seen: dict[str, str] = {}
    for info in infos:
        if "\x00" in info.orig_filename:
            raise _ambiguous(f"member name {info.orig_filename[:80]!r} holds a NUL byte", where)
        key = info.orig_filename.casefold()
        if key in seen:
            same = "twice" if seen[key] == info.orig_filename else f"twice, differing only in case ({seen[key]!r})"
            raise _ambiguous(f"the member {info.orig_filename!r} is named {same}", where)
        seen[key] = info.orig_filename
    ends: tuple[int, ...] = (0,)  # where the next member may start: one offset, or two after a data descriptor
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset not in ends:
            pos = ends[0]
            gap = "overlaps the member before it" if info.header_offset < pos else (
                f"starts {info.header_offset - pos:,} bytes after the end of the member before it")  # fmt: skip
            first = " (the first member must start at byte 0)" if pos == 0 else ""
            raise _ambiguous(f"member {info.orig_filename!r} at byte {info.header_offset:,} {gap}{first}", where)
        ends = _check_local(raw, info, where)
    if end.directory_offset not in ends:
        pos = ends[0]
        raise _ambiguous(
            f"{end.directory_offset - pos:,} bytes between the last member and the central directory"
            if pos < end.directory_offset else "the last member runs into the central directory",
            where,
        )  # fmt: skip


def _check_local(raw: BinaryIO, info: zipfile.ZipInfo, where: str) -> tuple[int, ...]:
    """Compare a member's local header with its directory entry; the offsets where it may end."""
    name = info.orig_filename
    head = _read_at(raw, info.header_offset, 30)
    if len(head) < 30 or head[:4] != _LOCAL:
        raise CorruptFileError(f"member {name!r} has no local header at byte {info.header_offset:,}", where=where)
    (_, _, flags, method, _, _, crc, csize, usize, name_len, extra_len) = struct.unpack("<4s5H3L2H", head)
    local_name = _read_at(raw, info.header_offset + 30, name_len)
    extra = raw.read(extra_len)
    if local_name != _name_bytes(info):
        raise _ambiguous(
            f"member {name!r} is named {local_name[:80].decode('utf-8', 'replace')!r} in its local header", where
        )
    if flags & 0x1 or info.flag_bits & 0x1:
        raise UnsafeFileError(f"member {name!r} is encrypted; a model archive never is", where=where)
    if (flags & ~_UTF8_NAMES) != (info.flag_bits & ~_UTF8_NAMES) or method != info.compress_type:
        raise _ambiguous(
            f"member {name!r} has flags 0x{flags:x} and method {method} in its local header but 0x{info.flag_bits:x} "
            f"and {info.compress_type} in the central directory",
            where,
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise _ambiguous(
            f"stored member {name!r} declares {info.compress_size:,} bytes stored but {info.file_size:,} bytes of content",
            where,
        )
    zip64 = _zip64_sizes(extra, usize, csize)
    if zip64 is not None:
        usize, csize = zip64
    start = info.header_offset + 30 + name_len + extra_len
    stop = start + info.compress_size
    if not flags & _HAS_DESCRIPTOR:
        if (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size):
            raise _ambiguous(
                f"member {name!r} declares {csize:,}/{usize:,} bytes (stored/content) in its local header but "
                f"{info.compress_size:,}/{info.file_size:,} in the central directory",
                where,
            )
        return (stop,)
    return tuple(stop + n for n in _descriptor_lengths(raw, info, stop, where))


def _zip64_sizes(extra: bytes, usize: int, csize: int) -> tuple[int, int] | None:
    """(content size, stored size) from a local header's zip64 extra field, if it has one."""
    i = 0
    while i + 4 <= len(extra):
        tag, n = struct.unpack("<2H", extra[i : i + 4])
        body = extra[i + 4 : i + 4 + n]
        if tag == 0x0001:
            values = [struct.unpack("<Q", body[j : j + 8])[0] for j in range(0, len(body) - 7, 8)]
            # A local zip64 field holds both sizes, in this order, when either overflows.
            if usize == 0xFFFFFFFF or csize == 0xFFFFFFFF:
                if len(values) >= 2:
                    return values[0], values[1]
            return None
        i += 4 + n
    return None


def _descriptor_lengths(raw: BinaryIO, info: zipfile.ZipInfo, at: int, where: str) -> tuple[int, ...]:
    """The lengths the data descriptor after a member's data may have, given that it agrees with the
    directory: its sizes take 4 or 8 bytes each (zip64), which only the next member's position
    tells apart when both read alike (an empty member)."""
    blob = _read_at(raw, at, 24)
    signed = blob[:4] == _DESCRIPTOR
    body = blob[4:] if signed else blob
    found = []
    for fmt in ("<LLL", "<LQQ"):
        n = struct.calcsize(fmt)
        if len(body) >= n and struct.unpack(fmt, body[:n]) == (info.CRC, info.compress_size, info.file_size):
            found.append(n + (4 if signed else 0))
    if not found:
        raise _ambiguous(
            f"member {info.orig_filename!r}: the data descriptor after its data (byte {at:,}) disagrees with the "
            "central directory on its CRC or sizes",
            where,
        )
    return tuple(found)
