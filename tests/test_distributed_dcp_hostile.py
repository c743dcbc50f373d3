"""Hostile Distributed Checkpoint folders: each ends in one line and exit 2, nothing runs or is allocated.

The folders are written with torch's own metadata classes and ``pickle``, then altered the way an
attacker or a broken copy would: a pickle naming another global, byte ranges past a file,
storage paths leaving the folder, a missing rank file, sizes that lie.
"""

from __future__ import annotations

import os
import pickle
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
md = pytest.importorskip("torch.distributed.checkpoint.metadata")
fs = pytest.importorskip("torch.distributed.checkpoint.filesystem")

from paramscope.cli import main  # noqa: E402
from paramscope.core.errors import CorruptFileError, UnsafeFileError  # noqa: E402
from paramscope.readers.distributed import dcp  # noqa: E402

Chunks = list[tuple[tuple[int, ...], tuple[int, ...], str, int, int]]


def forge(folder: Path, tensors: dict[str, tuple[tuple[int, ...], Chunks]], file_bytes: dict[str, int],
          planner_data: Any = None) -> Path:  # fmt: skip
    """A DCP folder from torch's own classes: ``{name: (shape, [(offsets, sizes, file, offset, length)])}``."""
    folder.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    storage: dict[Any, Any] = {}
    for name, (shape, chunks) in tensors.items():
        entries[name] = md.TensorStorageMetadata(
            md.TensorProperties(dtype=torch.float32), torch.Size(shape),
            [md.ChunkStorageMetadata(torch.Size(o), torch.Size(s)) for o, s, *_ in chunks],
        )  # fmt: skip
        for o, _, file, offset, length in chunks:
            storage[md.MetadataIndex(name, torch.Size(o))] = fs._StorageInfo(file, offset, length)
    meta = md.Metadata(entries, planner_data=planner_data, storage_data=storage)
    (folder / ".metadata").write_bytes(pickle.dumps(meta))
    for name, size in file_bytes.items():
        with open(folder / name, "wb") as f:
            f.truncate(size)  # sparse: no data is written
    return folder


def good(folder: Path) -> Path:
    """A (4, 6) weight split by rows over two ranks, 48 bytes of data per chunk with framing."""
    return forge(folder, {"model.w": ((4, 6), [((0, 0), (2, 6), "__0_0.distcp", 0, 64), ((2, 0), (2, 6), "__1_0.distcp", 0, 64)])},
                 {"__0_0.distcp": 64, "__1_0.distcp": 64})  # fmt: skip


def fails(capsys: pytest.CaptureFixture[str], folder: Path, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        dcp.read(folder)
    assert words in str(info.value)
    assert main(["summary", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("paramscope: error:") and words in err


def test_the_forged_good_folder_reads(tmp_path: Path) -> None:
    anatomy = dcp.read(good(tmp_path / "ok"))
    (layer,) = anatomy.layers
    assert layer.tensors[0].shape == (4, 6)


class _Run:
    """Pickles as a call of os.system: what a malicious .metadata would do on pickle.load."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.canary}",))


def test_a_global_outside_the_allow_list_is_refused_and_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    canary = tmp_path / "ran"
    folder = good(tmp_path / "ck")
    meta = md.Metadata({}, planner_data={"x": _Run(canary)}, storage_data={})
    (folder / ".metadata").write_bytes(pickle.dumps(meta))
    fails(capsys, folder, UnsafeFileError, "system")
    assert not canary.exists()


def test_an_allowed_class_called_instead_of_built_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = good(tmp_path / "ck")
    # GLOBAL Metadata, empty args, REDUCE: calling the class, which DCP never writes.
    raw = b"\x80\x02ctorch.distributed.checkpoint.metadata\nMetadata\n)R."
    (folder / ".metadata").write_bytes(raw)
    fails(capsys, folder, CorruptFileError, "unexpected call")


def test_a_chunk_past_the_end_of_its_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = forge(tmp_path / "ck", {"w": ((4, 6), [((0, 0), (4, 6), "__0_0.distcp", 10**12, 96)])}, {"__0_0.distcp": 96})
    fails(capsys, folder, CorruptFileError, "which has 96 bytes")


@pytest.mark.parametrize("path", ["../outside.distcp", "/etc/passwd", "sub/../../x.distcp", "C:\\x.distcp"])
def test_a_storage_path_leaving_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str) -> None:
    (tmp_path / "outside.distcp").write_bytes(b"\0" * 96)
    folder = forge(tmp_path / "ck", {"w": ((4, 6), [((0, 0), (4, 6), path, 0, 96)])}, {})
    fails(capsys, folder, UnsafeFileError, "leaves the checkpoint folder")


def test_a_symlink_leading_out_of_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "secret").write_bytes(b"\0" * 96)
    folder = forge(tmp_path / "ck", {"w": ((4, 6), [((0, 0), (4, 6), "__0_0.distcp", 0, 96)])}, {})
    os.symlink(tmp_path / "secret", folder / "__0_0.distcp")
    fails(capsys, folder, UnsafeFileError, "link leading out")


def test_a_missing_rank_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = good(tmp_path / "ck")
    (folder / "__1_0.distcp").unlink()
    fails(capsys, folder, CorruptFileError, "'__1_0.distcp' is missing")


def test_lying_sizes_are_compared_never_allocated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A 10^9 x 10^9 tensor whose chunks tile it but whose 64-byte storage cannot hold them.
    big = 10**9
    folder = forge(tmp_path / "ck", {"w": ((big, big), [((0, 0), (big, big), "__0_0.distcp", 0, 64)])}, {"__0_0.distcp": 64})
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFileError, match="needs 4000000000000000000 bytes"):
            dcp.read(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20
    fails(capsys, folder, CorruptFileError, "holds 64")


def test_chunks_that_overlap_or_leave_gaps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overlap = [((0, 0), (3, 6), "__0_0.distcp", 0, 96), ((2, 0), (2, 6), "__1_0.distcp", 0, 96)]
    files = {"__0_0.distcp": 96, "__1_0.distcp": 96}
    # 3x6 + 2x6 = 30 elements, not 24: the count check catches it before the overlap sweep.
    fails(capsys, forge(tmp_path / "a", {"w": ((4, 6), overlap)}, files), CorruptFileError, "hold 30 elements")
    # Same count as the tensor, but two chunks cover rows 1..2 twice and row 3 never.
    twice = [((0, 0), (2, 6), "__0_0.distcp", 0, 96), ((1, 0), (2, 6), "__1_0.distcp", 0, 96)]
    fails(capsys, forge(tmp_path / "b", {"w": ((4, 6), twice)}, files), CorruptFileError, "overlap")
    past = [((0, 0), (2, 6), "__0_0.distcp", 0, 96), ((3, 0), (2, 6), "__1_0.distcp", 0, 96)]
    fails(capsys, forge(tmp_path / "c", {"w": ((4, 6), past)}, files), CorruptFileError, "past its size")


def test_a_chunk_without_a_storage_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = good(tmp_path / "ck")
    meta = pickle.loads((folder / ".metadata").read_bytes())
    meta.storage_data.pop(md.MetadataIndex("model.w", torch.Size((2, 0))))
    (folder / ".metadata").write_bytes(pickle.dumps(meta))
    fails(capsys, folder, CorruptFileError, "has no storage entry")


def test_a_truncated_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = good(tmp_path / "ck")
    raw = (folder / ".metadata").read_bytes()
    (folder / ".metadata").write_bytes(raw[: len(raw) // 2])
    fails(capsys, folder, CorruptFileError, "")


def test_reading_a_dcp_folder_imports_no_framework(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = good(tmp_path / "ck")
    code = (
        "import sys; from paramscope.api import summary, layout; "
        f"summary({str(folder)!r}); layout({str(folder)!r}); print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
