"""Fuzzing checkpoint zips' headers with torch as the oracle: paramscope never describes other tensors.

Hypothesis edits bytes inside a ``torch.save`` checkpoint's structure (local headers, central
directory, end record) and inserts duplicate members. Whenever both paramscope and
``torch.load(weights_only=True)`` accept the result, they must name the same tensors with the
same shapes; paramscope may refuse more than torch, never read something else. Any exception
other than a paramscope error fails the test. No deadlines: timing is not behaviour.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

from paramscope.core.errors import ParamscopeError  # noqa: E402
from paramscope.readers import read  # noqa: E402

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _checkpoint() -> tuple[bytes, list[tuple[int, int]]]:
    """A two-tensor checkpoint and the byte ranges of its zip structure."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3, 4), "b": torch.ones(4)}, buf)
    data = buf.getvalue()
    regions = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            n, m = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
            regions.append((info.header_offset, info.header_offset + 30 + n + m))
        regions.append((zf.start_dir, len(data)))
    return data, regions


BASE, REGIONS = _checkpoint()
_EDIT = hs.tuples(hs.integers(0, len(REGIONS) - 1), hs.floats(0, 1, exclude_max=True), hs.integers(0, 255))


def _tensors(anatomy: Any) -> dict[str, tuple[int, ...]]:
    return {t.name if not la.path else f"{la.path}.{t.name}".removeprefix("."): t.shape
            for top in anatomy.layers for la in top.walk() for t in la.tensors}  # fmt: skip


def _agree(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        path.write_bytes(blob)
        try:
            ours = _tensors(read(path))
        except ParamscopeError:
            return
        try:
            theirs = torch.load(path, weights_only=True, map_location="cpu")
        except Exception:  # torch refuses what paramscope accepts: allowed (paramscope reads no data)
            return
        assert isinstance(theirs, dict)
        expected = {k: tuple(v.shape) for k, v in theirs.items()}
        assert sorted(ours.values()) == sorted(expected.values()), (ours, expected)


def test_untouched_checkpoint_agrees() -> None:
    _agree(BASE)


@FUZZ
@given(edits=hs.lists(_EDIT, min_size=1, max_size=4))
def test_header_edits_never_describe_other_tensors(edits: list[tuple[int, float, int]]) -> None:
    blob = bytearray(BASE)
    for region, where, value in edits:
        start, stop = REGIONS[region]
        blob[start + int(where * (stop - start))] = value
    _agree(bytes(blob))


@FUZZ
@given(order=hs.permutations(range(8)), duplicate=hs.integers(0, 7), swap=hs.booleans())
def test_reordered_and_duplicated_members(order: list[int], duplicate: int, swap: bool) -> None:
    # Members rewritten in any order, one of them twice (the copy with other content when it is
    # data.pkl): zipfile and torch break the tie differently, so paramscope must refuse.
    with zipfile.ZipFile(io.BytesIO(BASE)) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    members = [members[i] for i in order if i < len(members)]
    name, data = members[duplicate % len(members)]
    other = torch.ones(1) if swap else torch.zeros(2)
    if name.endswith("data.pkl"):
        alt = io.BytesIO()
        torch.save({"other": other}, alt)
        with zipfile.ZipFile(alt) as zf:
            data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    out = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(out, "w") as zf:
        for i, (n, d) in enumerate(members):
            zf.writestr(n, d)
            if i == duplicate % len(members):
                zf.writestr(name, data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        path.write_bytes(out.getvalue())
        with pytest.raises(ParamscopeError):
            read(path)
