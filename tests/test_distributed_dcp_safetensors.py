"""Distributed Checkpoints saved as safetensors rank files (``HuggingFaceStorageWriter``), read from the headers.

The checkpoints are written by the real 2-rank gloo job of :mod:`_dcp_jobs`; the oracles are
torch's own ``HuggingFaceStorageReader(...).read_metadata()`` and the unsharded model.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
hf_storage = pytest.importorskip("torch.distributed.checkpoint.hf_storage")

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.cli import main  # noqa: E402
from paramscope.core.errors import CorruptFileError, UnsafeFileError  # noqa: E402
from paramscope.readers import reader_for  # noqa: E402
from paramscope.readers.distributed import dcp  # noqa: E402
from paramscope.readers.distributed.dcp_safetensors import load_sharded  # noqa: E402
from paramscope.readers.distributed.layout import rank_layout  # noqa: E402

FOLDERS = ["hf_fsdp2", "hf_split", "hf_plain"]


@pytest.mark.parametrize("which", FOLDERS)
def test_every_tensor_and_piece_matches_torchs_reader(dcp_job: tuple[Path, dict[str, Any]], which: str) -> None:
    out, _ = dcp_job
    theirs = hf_storage.HuggingFaceStorageReader(str(out / which)).read_metadata()
    ours = load_sharded(out / which)
    assert sorted(t.name for t in ours.tensors) == sorted(theirs.state_dict_metadata)
    for t in ours.tensors:
        md = theirs.state_dict_metadata[t.name]
        assert t.shape == tuple(md.size)
        assert t.dtype == str(md.properties.dtype).removeprefix("torch.")
        assert sorted((c.offsets, c.sizes) for c in t.chunks) == sorted((tuple(c.offsets), tuple(c.sizes)) for c in md.chunks)
    # Each piece's bytes are where safetensors' own reader finds them.
    from safetensors import safe_open

    for t in ours.tensors:
        for c in t.chunks:
            with safe_open(str(out / which / c.file), framework="pt") as f:
                data = f.get_tensor(t.name)
            raw = (out / which / c.file).read_bytes()[c.byte_offset : c.byte_offset + c.stored_bytes]
            assert raw == data.contiguous().view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize("which", FOLDERS)
def test_global_model_matches_the_unsharded_model(dcp_job: tuple[Path, dict[str, Any]], which: str) -> None:
    out, expected = dcp_job
    assert reader_for(out / which) is dcp
    anatomy = dcp.read(out / which)
    got = {f"{la.path}.{t.name}": [list(t.shape or ()), t.dtype] for la in anatomy.walk() for t in la.tensors}
    assert got == expected["tensors"]
    assert totals(anatomy).params == expected["n_params"]
    assert anatomy.metadata["storage"].startswith("safetensors per rank")


def test_rank_layout_and_files_per_rank(dcp_job: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = dcp_job
    layout = rank_layout(out / "hf_split", world_sizes=(4,))
    assert [r.rank for r in layout.ranks] == [0, 1]
    assert [r.files for r in layout.ranks] == [
        ("shard-00001-model-00001-of-00002.safetensors", "shard-00001-model-00002-of-00002.safetensors"),
        ("shard-00002-model-00001-of-00002.safetensors", "shard-00002-model-00002-of-00002.safetensors"),
    ]
    assert sum(r.n_bytes for r in layout.ranks) == layout.total_bytes
    assert main(["layout", str(out / "hf_fsdp2"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["world_size"] == 2


def _rewrite_header(path: Path, change: Any) -> None:
    """Rewrite a safetensors file's JSON header with ``change(header)``, keeping its data bytes."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    change(header)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def _info(header: dict[str, Any]) -> dict[str, Any]:
    return json.loads(header["__metadata__"]["DCP_SHARDING_INFO"])  # type: ignore[no-any-return]


def _set_info(header: dict[str, Any], info: dict[str, Any]) -> None:
    header["__metadata__"]["DCP_SHARDING_INFO"] = json.dumps(info)


def _overlap(header: dict[str, Any]) -> None:
    info = _info(header)
    info["embed.weight"]["saved_offsets"] = [0, 0]  # rank 1's rows put over rank 0's
    _set_info(header, info)


def _bad_offsets(header: dict[str, Any]) -> None:
    info = _info(header)
    info["embed.weight"]["saved_offsets"] = [-25, 0]
    _set_info(header, info)


def _not_json(header: dict[str, Any]) -> None:
    header["__metadata__"]["DCP_SHARDING_INFO"] = "{not json"


def _other_dtype(header: dict[str, Any]) -> None:
    header["embed.weight"]["dtype"] = "I32"  # same width: the file stays consistent, the ranks disagree


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (_overlap, CorruptFileError, "chunks of .embed.weight. hold 800 elements"),
        (_bad_offsets, CorruptFileError, "non-negative saved_offsets"),
        (_not_json, CorruptFileError, "DCP_SHARDING_INFO"),
        (_other_dtype, CorruptFileError, "disagree on their dtype"),
    ],
)
def test_rank_files_that_lie_end_in_one_line(dcp_job: tuple[Path, dict[str, Any]], tmp_path: Path, change: Any,
                                             error: type[Exception], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out, _ = dcp_job
    folder = tmp_path / "ckpt"
    shutil.copytree(out / "hf_fsdp2", folder)
    _rewrite_header(folder / "shard-00002-model-00001-of-00001.safetensors", change)
    with pytest.raises(error, match=message):
        load_sharded(folder)
    assert main(["summary", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("embed.weight" in err or "DCP_SHARDING_INFO" in err)


def test_a_missing_rank_and_a_link_out(dcp_job: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = dcp_job
    gap = tmp_path / "gap"
    gap.mkdir()
    shutil.copy(out / "hf_fsdp2" / "shard-00002-model-00001-of-00001.safetensors", gap)
    with pytest.raises(CorruptFileError, match="shard 1 are missing"):
        load_sharded(gap)
    linked = tmp_path / "linked"
    linked.mkdir()
    shutil.copy(out / "hf_fsdp2" / "shard-00001-model-00001-of-00001.safetensors", linked)
    (linked / "shard-00002-model-00001-of-00001.safetensors").symlink_to(out / "hf_fsdp2" / "shard-00002-model-00001-of-00001.safetensors")
    with pytest.raises(UnsafeFileError, match="symlink out"):
        load_sharded(linked)
