"""Checkpoints written by a real 2-rank gloo job (DCP folders, FSDP1 rank files), read from their metadata.

The oracles are torch's own: the unsharded model (``sum(p.numel())``, its state dict),
``FileSystemReader(...).read_metadata()``, and the single file ``dcp_to_torch_save`` gathers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
dcp_meta = pytest.importorskip("torch.distributed.checkpoint")

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.cli import main  # noqa: E402
from paramscope.readers import reader_for  # noqa: E402
from paramscope.readers.distributed import dcp  # noqa: E402
from paramscope.readers.distributed.dcp_folder import load_checkpoint  # noqa: E402


def _torch_metadata(folder: Path) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    return FileSystemReader(str(folder)).read_metadata()


@pytest.mark.parametrize("which", ["plain", "fsdp2"])
def test_global_model_matches_the_unsharded_model(dcp_job: tuple[Path, dict[str, Any]], which: str) -> None:
    out, expected = dcp_job
    anatomy = dcp.read(out / which)
    assert reader_for(out / which) is dcp
    got = {f"{la.path}.{t.name}": [list(t.shape or ()), t.dtype] for la in anatomy.walk() for t in la.tensors}
    assert got == expected["tensors"]
    assert totals(anatomy).params == expected["n_params"]
    assert anatomy.metadata["world_size"] == "2"


@pytest.mark.parametrize("which", ["plain", "fsdp2"])
def test_every_tensor_and_chunk_matches_torchs_read_metadata(dcp_job: tuple[Path, dict[str, Any]], which: str) -> None:
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, MetadataIndex

    out, _ = dcp_job
    theirs = _torch_metadata(out / which)
    ours = load_checkpoint(out / which)
    tensors = {k: v for k, v in theirs.state_dict_metadata.items() if not isinstance(v, BytesStorageMetadata)}
    assert [t.name for t in ours.tensors] == list(tensors)
    assert sorted(b.name for b in ours.blobs) == sorted(set(theirs.state_dict_metadata) - set(tensors))
    for t in ours.tensors:
        md = tensors[t.name]
        assert t.shape == tuple(md.size)
        assert t.dtype == str(md.properties.dtype).removeprefix("torch.")
        assert [(c.offsets, c.sizes) for c in t.chunks] == [(tuple(c.offsets), tuple(c.sizes)) for c in md.chunks]
        for c in t.chunks:
            info = theirs.storage_data[MetadataIndex(t.name, torch.Size(c.offsets))]
            assert (c.file, c.byte_offset, c.stored_bytes) == (info.relative_path, info.offset, info.length)


def test_fsdp2_shards_every_parameter_over_both_ranks(dcp_job: tuple[Path, dict[str, Any]]) -> None:
    out, _ = dcp_job
    ckpt = load_checkpoint(out / "fsdp2")
    weight = next(t for t in ckpt.tensors if t.name == "model.embed.weight")
    # fully_shard splits dim 0 evenly: 50 rows -> 25 + 25, one chunk per rank file.
    assert sorted((c.file, c.offsets, c.sizes) for c in weight.chunks) == [
        ("__0_0.distcp", (0, 0), (25, 16)),
        ("__1_0.distcp", (25, 0), (25, 16)),
    ]


def test_optimizer_state_is_kept_apart_and_matches_dcp_to_torch_save(dcp_job: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out, expected = dcp_job
    gathered = tmp_path / "gathered.pt"
    dcp_to_torch_save(str(out / "fsdp2"), str(gathered))
    full = torch.load(gathered, weights_only=True)
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        elif isinstance(value, torch.Tensor):
            flat[prefix] = value

    walk("", full)
    anatomy = dcp.read(out / "fsdp2")
    model = {f"model.{la.path}.{t.name}": (t.shape, t.dtype) for la in anatomy.walk() for t in la.tensors}
    (optimizer,) = [g for g in anatomy.extras if g.name == "optimizer"]
    extras = {t.name: (t.shape, t.dtype) for t in optimizer.tensors}
    theirs = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in flat.items()}
    assert {**model, **extras} == theirs
    moments = sum(t.count or 0 for t in optimizer.tensors if t.name.endswith(("exp_avg", "exp_avg_sq")))
    assert moments == 2 * expected["n_params"]


def test_cli_summary_of_a_dcp_folder(dcp_job: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    out, expected = dcp_job
    assert main(["summary", str(out / "fsdp2"), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["params"] == expected["n_params"]


def test_rank_layout_of_the_fsdp2_job(dcp_job: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    from paramscope.readers.distributed.layout import rank_layout

    out, _ = dcp_job
    theirs = _torch_metadata(out / "fsdp2")
    layout = rank_layout(out / "fsdp2", world_sizes=(2, 4))
    assert [r.rank for r in layout.ranks] == [0, 1]
    # Every chunk torch lists is held by exactly one rank: the shares add up to the global tensors.
    n_chunks = sum(len(md.chunks) for md in theirs.state_dict_metadata.values() if hasattr(md, "chunks"))
    assert sum(len(r.slices) for r in layout.ranks) == n_chunks
    assert sum(r.n_bytes for r in layout.ranks) == layout.total_bytes
    # The FSDP2 projection at the job's own world size reproduces what fully_shard really wrote.
    at_two = layout.projections[0]
    assert (at_two.max_rank_bytes, at_two.min_rank_bytes) == (max(r.n_bytes for r in layout.ranks), min(r.n_bytes for r in layout.ranks))
    assert main(["layout", str(out / "fsdp2"), "--format", "json", "--world-size", "4"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["world_size"] == 2 and doc["projections"][0]["world_size"] == 4
    assert main(["layout", str(out / "fsdp2"), "--rank", "1", "--width", "120"]) == 0
    assert "model.embed.weight" in capsys.readouterr().out


def test_fsdp1_sharded_rank_files(dcp_job: tuple[Path, dict[str, Any]]) -> None:
    from paramscope.readers.distributed import fsdp1
    from paramscope.readers.distributed.layout import rank_layout

    out, expected = dcp_job
    assert reader_for(out / "fsdp1") is fsdp1
    anatomy = fsdp1.read(out / "fsdp1")
    got = {f"{la.path}.{t.name}": [list(t.shape or ()), t.dtype] for la in anatomy.walk() for t in la.tensors}
    assert got == expected["tensors"]
    assert totals(anatomy).params == expected["n_params"]
    placements = json.loads((out / "fsdp1_placements.json").read_text())
    layout = rank_layout(out / "fsdp1")
    ours = sorted([s.tensor, list(s.offsets), list(s.sizes), r.rank] for r in layout.ranks for s in r.slices)
    assert ours == sorted([name, o, s, rank] for name, shards in placements.items() for o, s, rank in shards)
    assert [r.files for r in layout.ranks] == [("rank0.pt",), ("rank1.pt",)]


def test_fsdp1_rank_files_that_do_not_match_their_metadata(dcp_job: tuple[Path, dict[str, Any]], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import shutil

    from paramscope.core.errors import CorruptFileError
    from paramscope.readers.distributed import fsdp1

    out, _ = dcp_job
    missing = tmp_path / "missing"
    missing.mkdir()
    shutil.copy(out / "fsdp1" / "rank0.pt", missing / "rank0.pt")
    shutil.copy(out / "fsdp1" / "rank0.pt", missing / "rank2.pt")
    with pytest.raises(CorruptFileError, match=r"ranks \[1\] whose files are missing|places elsewhere"):
        fsdp1.read(missing)
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copy(out / "fsdp1" / "rank0.pt", swapped / "rank0.pt")
    shutil.copy(out / "fsdp1" / "rank0.pt", swapped / "rank1.pt")
    with pytest.raises(CorruptFileError, match="places elsewhere"):
        fsdp1.read(swapped)
    assert main(["summary", str(swapped)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_metadata_written_by_torch_2_0_to_2_2(dcp_job: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    # torch 2.0 to 2.2 pickled TensorProperties (and its memory-format enum) from
    # torch.distributed._shard.sharded_tensor.metadata, and wrote no version or storage_meta.
    # The classes still live there: the job's real metadata is re-pickled with them.
    import pickle
    import shutil

    from torch.distributed._shard.sharded_tensor import metadata as shard_md
    from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata

    out, expected = dcp_job
    old = tmp_path / "old"
    shutil.copytree(out / "fsdp2", old)
    theirs = _torch_metadata(old)
    entries = {
        k: TensorStorageMetadata(shard_md.TensorProperties(dtype=v.properties.dtype), v.size, v.chunks)
        if isinstance(v, TensorStorageMetadata) else v
        for k, v in theirs.state_dict_metadata.items()
    }  # fmt: skip
    blob = pickle.dumps(Metadata(entries, planner_data=theirs.planner_data, storage_data=theirs.storage_data))
    assert b"torch.distributed._shard.sharded_tensor.metadata" in blob and b"TensorProperties" in blob
    (old / ".metadata").write_bytes(blob)
    assert _torch_metadata(old).state_dict_metadata.keys() == theirs.state_dict_metadata.keys()
    anatomy = dcp.read(old)
    got = {f"model.{la.path}.{t.name}": [list(t.shape or ()), t.dtype] for la in anatomy.walk() for t in la.tensors}
    assert got == {f"model.{k}": v for k, v in expected["tensors"].items()}
    assert totals(anatomy).params == expected["n_params"]
