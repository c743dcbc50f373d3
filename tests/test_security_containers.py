"""Zip archives that two readers could read differently are refused with one line.

The archives are written here byte by byte (local headers, central directory, end record) so
that each ambiguity is exactly the one named; torch and Python's zipfile are the oracles that
show two real readers disagreeing about the same bytes.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.parsers import zip as zip_parser
from paramscope.parsers.zip import open_zip
from paramscope.readers import read

STATE = pickle.dumps({"epoch": 3}, protocol=2)
OTHER = pickle.dumps({"epoch": 4}, protocol=2)
HIDDEN = b"PK\x03\x04 a member only a streaming reader sees"


@dataclass
class Member:
    """One member; ``local``/``central`` override the header fields written for it."""

    name: str
    data: bytes
    method: int = zipfile.ZIP_STORED
    local: dict[str, Any] = field(default_factory=dict)
    central: dict[str, Any] = field(default_factory=dict)
    after: bytes = b""  # bytes written after the member's data (a data descriptor, a gap)


def _fields(m: Member, overrides: dict[str, Any]) -> dict[str, Any]:
    body = zlib.compress(m.data)[2:-4] if m.method == zipfile.ZIP_DEFLATED else m.data
    out = {"name": m.name.encode(), "flags": 0x800, "method": m.method, "crc": zlib.crc32(m.data),
           "csize": len(body), "usize": len(m.data), "extra": b"", "body": body}  # fmt: skip
    out.update(overrides)
    return out


def build(members: list[Member], *, before: bytes = b"", after: bytes = b"", count: int | None = None,
          central_offsets: dict[int, int] | None = None) -> bytes:  # fmt: skip
    """A zip archive written by hand: each member's local header and data, the directory, the end."""
    out = bytearray(before)
    offsets = []
    for m in members:
        f = _fields(m, m.local)
        offsets.append(len(out) - len(before))
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, f["flags"], f["method"], 0, 0x21, f["crc"],
                           f["csize"], f["usize"], len(f["name"]), len(f["extra"]))  # fmt: skip
        out += f["name"] + f["extra"] + f["body"] + m.after
    directory = bytearray()
    for i, m in enumerate(members):
        f = _fields(m, m.central)
        offset = (central_offsets or {}).get(i, offsets[i])
        directory += struct.pack("<4s6H3L5HLL", b"PK\x01\x02", 20, 20, f["flags"], f["method"], 0, 0x21, f["crc"],
                                 f["csize"], f["usize"], len(f["name"]), len(f["extra"]), 0, 0, 0, 0, offset)  # fmt: skip
        directory += f["name"] + f["extra"]
    start = len(out) - len(before)
    n = len(members) if count is None else count
    out += directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(directory), start, 0)
    return bytes(out + after)


def checkpoint(data_pkl: bytes = STATE) -> list[Member]:
    return [Member("archive/data.pkl", data_pkl), Member("archive/version", b"3\n"), Member("archive/byteorder", b"little")]


def _write(tmp_path: Path, blob: bytes, name: str = "model.pt") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def test_hand_built_archive_is_read_by_zipfile_and_paramscope(tmp_path: Path) -> None:
    # The builder itself is sound: zipfile reads it and paramscope accepts it.
    path = _write(tmp_path, build(checkpoint()))
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None and pickle.loads(zf.read("archive/data.pkl")) == {"epoch": 3}
    assert read(path).metadata["epoch"] == "3"


AMBIGUOUS: dict[str, tuple[bytes, str]] = {
    "duplicate_data_pkl": (
        build([Member("archive/data.pkl", OTHER), *checkpoint()]),
        "the member 'archive/data.pkl' is named twice",
    ),
    "duplicate_ignoring_case": (
        build([*checkpoint(), Member("archive/DATA.PKL", OTHER)]),
        "differing only in case",
    ),
    "local_name_differs": (
        build([replace(checkpoint()[0], local={"name": b"archive/data.pkx"}), *checkpoint()[1:]]),
        "is named 'archive/data.pkx' in its local header",
    ),
    "local_sizes_differ": (
        build([replace(checkpoint()[0], local={"usize": 7, "csize": 7}), *checkpoint()[1:]]),
        "in its local header but",
    ),
    "local_method_differs": (
        build([replace(checkpoint()[0], local={"method": zipfile.ZIP_DEFLATED}), *checkpoint()[1:]]),
        "method 8 in its local header but 0x800 and 0",
    ),
    "stored_sizes_differ": (
        build([replace(checkpoint()[0], local={"usize": 9999}, central={"usize": 9999}), *checkpoint()[1:]]),
        "stored member 'archive/data.pkl' declares",
    ),
    "zip64_local_sizes_lie": (
        build([replace(checkpoint()[0], local={"usize": 0xFFFFFFFF, "csize": 0xFFFFFFFF,
               "extra": struct.pack("<2H2Q", 1, 16, 1 << 40, 1 << 40)}), *checkpoint()[1:]]),  # fmt: skip
        "1,099,511,627,776/1,099,511,627,776 bytes (stored/content) in its local header",
    ),
    "overlapping_members": (
        build(checkpoint(), central_offsets={1: 0}),
        "overlaps the member before it",
    ),
    "hidden_member_between": (
        build([replace(checkpoint()[0], after=HIDDEN), *checkpoint()[1:]]),
        f"starts {len(HIDDEN)} bytes after the end of the member before it",
    ),
    "data_before_archive": (
        build(checkpoint(), before=b"#!/bin/sh\necho a script before the zip\n"),
        "data before the archive",
    ),
    "data_after_archive": (
        build(checkpoint(), after=b"trailing bytes another tool would read"),
        "bytes after the end-of-archive record",
    ),
    "count_disagrees": (
        build(checkpoint(), count=2),
        "end record counts 2 members",
    ),
    "descriptor_flag_without_descriptor": (
        build([replace(checkpoint()[0], local={"flags": 0x808}, central={"flags": 0x808}), *checkpoint()[1:]]),
        "data descriptor after its data",
    ),
    "name_with_nul": (
        build([*checkpoint(), Member("archive/data.pkl\x00.txt", OTHER)]),
        "holds a NUL byte",
    ),
}


@pytest.mark.parametrize("case", sorted(AMBIGUOUS))
def test_ambiguous_checkpoint_refused(tmp_path: Path, case: str) -> None:
    blob, named = AMBIGUOUS[case]
    path = _write(tmp_path, blob)
    with pytest.raises(CorruptFileError) as info:
        read(path)
    message = str(info.value)
    assert named in message, message
    assert message.startswith(str(path)) and "\n" not in message


@pytest.mark.parametrize("case", ["duplicate_data_pkl", "local_name_differs", "data_before_archive", "data_after_archive"])
def test_ambiguous_keras_archive_refused(tmp_path: Path, case: str) -> None:
    # The same structures around a Keras archive's members.
    members = [Member("config.json", b"{}"), Member("metadata.json", b"{}"), Member("config.json", b"{}")]
    keras_blob = {
        "duplicate_data_pkl": build(members),
        "local_name_differs": build([replace(members[0], local={"name": b"config.jsoo"}), members[1]]),
        "data_before_archive": build(members[:2], before=b"junk"),
        "data_after_archive": build(members[:2], after=b"junk"),
    }[case]
    path = _write(tmp_path, keras_blob, "model.keras")
    with pytest.raises(UnsafeFileError, match="ambiguous zip archive"):
        read(path)


def test_too_many_members_refused_before_the_directory_is_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zip_parser, "MAX_MEMBERS", 2)
    path = _write(tmp_path, build(checkpoint()))
    with pytest.raises(UnsafeFileError, match="declares 3 members, more than the 2"):
        open_zip(path)


def test_first_member_folder_decides_where_torch_looks(tmp_path: Path) -> None:
    # torch takes the folder of the archive's first member as the archive's name.
    blob = build([Member("other/version", b"3\n"), *checkpoint()])
    with pytest.raises(UnsafeFileError, match="first member 'other/version' puts torch in folder 'other/'"):
        read(_write(tmp_path, blob))


def test_cli_refuses_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, AMBIGUOUS["duplicate_data_pkl"][0])
    done = subprocess.run([sys.executable, "-m", "paramscope", "summary", str(path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "ambiguous zip archive" in done.stderr and "Traceback" not in done.stderr


# -- oracles: real readers disagree, and real files still open ------------------------------------


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _rewrite_with_duplicate(torch: Any, tmp_path: Path) -> tuple[Path, bytes]:
    """A torch.save checkpoint rewritten with a second data.pkl whose value differs."""
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(3)}, good)
    with zipfile.ZipFile(good) as src:
        infos = src.infolist()
        pkl = next(i for i in infos if i.filename.endswith("/data.pkl"))
        rest = [i for i in infos if i is not pkl]
        # Order matters to torch's lookup (a binary search over the sorted directory): with the
        # extra member first and one other member before the pair, torch loads the extra one.
        seq = [(rest[0].filename, src.read(rest[0])), (pkl.filename, OTHER), (pkl.filename, src.read(pkl))]
        seq += [(i.filename, src.read(i)) for i in rest[1:]]
    buf = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buf, "w") as dst:
        for name, data in seq:
            dst.writestr(name, data)
    path = _write(tmp_path, buf.getvalue())
    return path, pkl.filename.encode()


def test_torch_and_zipfile_read_different_data_pkl(torch: Any, tmp_path: Path) -> None:
    path, name = _rewrite_with_duplicate(torch, tmp_path)
    loaded = torch.load(path, weights_only=True)
    with zipfile.ZipFile(path) as zf:
        assert b"epoch" not in zf.read(name.decode())  # zipfile keeps the last member: the clean one
    assert loaded == {"epoch": 4}  # torch loads the first: the other pickle
    with pytest.raises(UnsafeFileError, match="is named twice"):
        read(path)


def test_real_files_still_open(torch: Any, tmp_path: Path) -> None:
    state = {"w": torch.zeros(3, 4), "b": torch.ones(4)}
    files = {"file.pt": None, "buffer.pt": io.BytesIO(), "legacy.pt": None}
    for name, target in files.items():
        path = tmp_path / name
        if name == "legacy.pt":
            torch.save(state, path, _use_new_zipfile_serialization=False)
        elif target is not None:
            torch.save(state, target)
            path.write_bytes(target.getvalue())
        else:
            torch.save(state, path)
        tensors = {t.name: t.shape for la in read(path).layers for t in la.tensors}
        assert tensors == {"w": (3, 4), "b": (4,)}, (name, tensors)


@pytest.mark.parametrize("how", ["stored", "deflated", "zip64", "streamed", "streamed_zip64"])
def test_zipfile_variants_open(tmp_path: Path, how: str) -> None:
    class Unseekable(io.BytesIO):
        def seekable(self) -> bool:
            return False

        def seek(self, *args: object) -> int:
            raise io.UnsupportedOperation("unseekable")

    buf = Unseekable() if how.startswith("streamed") else io.BytesIO()
    method = zipfile.ZIP_DEFLATED if how in ("deflated", "streamed") else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        # An empty member too: its zip64 data descriptor reads alike with 4- and 8-byte sizes.
        for name, data in (("archive/data.pkl", STATE), ("archive/empty", b""), ("archive/version", b"3\n")):
            with zf.open(name, "w", force_zip64=how.endswith("zip64")) as member:
                member.write(data)
    path = _write(tmp_path, buf.getvalue())
    with open_zip(path) as zf:
        assert zf.read("archive/data.pkl") == STATE
    assert read(path).metadata["epoch"] == "3"
