"""DeepSpeed ZeRO folders: the global model from param_shapes equals what zero_to_fp32.py rebuilds.

Two sources: checkpoints saved by DeepSpeed's own engine in a 2-process gloo job on CPU
(``_deepspeed_jobs``, ZeRO 2 and 3), and folders built file by file with DeepSpeed's save layout
and its own classes (``_deepspeed_folders``: ZeRO 1, 2, 3 and the hostile cases). The oracle is
DeepSpeed's ``get_fp32_state_dict_from_zero_checkpoint`` on the same folder, and the unsharded
torch model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
zero_to_fp32 = pytest.importorskip("deepspeed.utils.zero_to_fp32")

import _dcp_jobs  # noqa: E402
from _deepspeed_folders import write_zero_folder  # noqa: E402

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.cli import main  # noqa: E402
from paramscope.core.errors import CorruptFileError, UnsafeFileError  # noqa: E402
from paramscope.readers import reader_for  # noqa: E402
from paramscope.readers.distributed import deepspeed as ds  # noqa: E402
from paramscope.readers.distributed.layout import rank_layout  # noqa: E402


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_the_model_equals_zero_to_fp32(tmp_path: Path, stage: int) -> None:
    model: Any = _dcp_jobs.small_model()
    write_zero_folder(tmp_path, model, stage)
    theirs = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(str(tmp_path))
    # The folder is faithful: DeepSpeed's converter gets the model's own values back from it.
    for name, value in model.state_dict().items():
        assert torch.equal(theirs[name].contiguous() if hasattr(theirs[name], "contiguous") else theirs[name], value)
    assert reader_for(tmp_path) is ds
    anatomy = ds.read(tmp_path)
    ours = {f"{la.path}.{t.name}": t.shape for la in anatomy.walk() for t in la.tensors}
    assert ours == {k: tuple(v.shape) for k, v in theirs.items()}
    assert totals(anatomy).params == sum(p.numel() for p in model.parameters())
    assert anatomy.metadata["zero_stage"] == str(stage) and anatomy.metadata["dp_world_size"] == "2"
    (optimizer,) = anatomy.extras
    master = sum(t.count or 0 for t in optimizer.tensors if "fp32_master" in t.name)
    assert master >= totals(anatomy).params  # the float32 master copy, padding included


def test_rank_layout_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model: Any = _dcp_jobs.small_model()
    folder = write_zero_folder(tmp_path, model, 2)
    layout = rank_layout(tmp_path, world_sizes=(4,))
    assert [r.rank for r in layout.ranks] == [0, 1]
    assert layout.ranks[0].files == ("zero_pp_rank_0_mp_rank_00_optim_states.pt", "mp_rank_00_model_states.pt")
    parts = [s.count for r in layout.ranks for s in r.slices if s.tensor == "fp32 flat group 0"]
    assert sum(parts) == sum(p.numel() for p in model.parameters())
    assert main(["layout", str(tmp_path), "--width", "120"]) == 0
    assert "zero_stage: 2" in capsys.readouterr().out
    assert main(["summary", str(folder), "--width", "120"]) == 0


def test_a_missing_rank_file_and_a_foreign_global(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_zero_folder(tmp_path / "a", _dcp_jobs.small_model(), 2)
    (folder / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    with pytest.raises(CorruptFileError, match="a rank's file is missing"):
        ds.read(tmp_path / "a")
    folder = write_zero_folder(tmp_path / "b", _dcp_jobs.small_model(), 2)
    value = torch.load(folder / "mp_rank_00_model_states.pt", weights_only=False)
    value["ds_config"] = {"hook": _Run()}
    torch.save(value, folder / "mp_rank_00_model_states.pt")
    with pytest.raises(UnsafeFileError, match="posix.system|os.system"):
        ds.read(tmp_path / "b")
    assert main(["summary", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="FIFOs are a POSIX feature")
def test_a_rank_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    from _attacks import run_cli

    folder = write_zero_folder(tmp_path / "ckpt", _dcp_jobs.small_model(), 2)
    (folder / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    os.mkfifo(folder / "zero_pp_rank_1_mp_rank_00_optim_states.pt")  # a plain open() would wait for a writer forever
    out = run_cli(tmp_path / "ckpt", tmp=tmp_path)
    assert out.rc == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().count("\n") == 0 and "FIFO" in out.stderr


def test_lying_param_shapes_are_caught(tmp_path: Path) -> None:
    folder = write_zero_folder(tmp_path, _dcp_jobs.small_model(), 2)
    value = torch.load(folder / "mp_rank_00_model_states.pt", weights_only=False)
    value["param_shapes"][0]["embed.weight"] = torch.Size([10**9, 16])
    torch.save(value, folder / "mp_rank_00_model_states.pt")
    with pytest.raises(CorruptFileError, match="its parameters need"):
        ds.read(tmp_path)


class _Run:
    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, ("echo never",))


@pytest.mark.parametrize("stage", [2, 3])
def test_checkpoints_saved_by_the_deepspeed_engine(engine_checkpoints: Path, stage: int) -> None:
    root = engine_checkpoints / f"zero{stage}"
    theirs = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(str(root))
    anatomy = ds.read(root)
    ours = {f"{la.path}.{t.name}": t.shape for la in anatomy.walk() for t in la.tensors}
    assert ours == {k: tuple(v.shape) for k, v in theirs.items()}
    model: Any = _dcp_jobs.small_model()
    assert totals(anatomy).params == sum(p.numel() for p in model.parameters())
    assert anatomy.metadata["zero_stage"] == str(stage) and anatomy.metadata["dp_world_size"] == "2"
    layout = rank_layout(root)
    assert [r.rank for r in layout.ranks] == [0, 1]
    master = sum(s.count for r in layout.ranks for s in r.slices if s.tensor == "fp32 flat group 0")
    assert master >= totals(anatomy).params


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_frozen_parameters_and_ties_saved_by_the_engine(engine_checkpoints: Path, stage: int) -> None:
    import _deepspeed_jobs

    root = engine_checkpoints / f"tied_frozen_zero{stage}"
    model: Any = _deepspeed_jobs.tied_frozen_model()
    anatomy = ds.read(root)
    found = totals(anatomy)
    assert found.params == sum(p.numel() for p in model.parameters())  # the tied head once
    assert found.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    roles = {f"{la.path}.{t.name}": t.role.value for la in anatomy.walk() for t in la.tensors}
    assert {k for k, v in roles.items() if v == "frozen"} == {n for n, p in model.named_parameters() if not p.requires_grad}
    theirs = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(str(root))
    unique = {n for n, _ in model.named_parameters()}
    if stage == 1:  # DeepSpeed records no frozen_param_shapes at stage 1 and zero_to_fp32 drops them
        assert set(theirs) == {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
        assert any("zero_to_fp32.py leaves them out" in n for n in anatomy.notes)
    else:
        assert set(theirs) - {"head.weight"} == unique
    assert set(roles) == unique
    layout = rank_layout(root)
    rank0 = {s.tensor for s in layout.ranks[0].slices}
    assert stage == 3 or unique <= rank0


@pytest.mark.parametrize("stage", [1, 2])
def test_moe_experts_come_from_every_expert_file(engine_checkpoints: Path, tmp_path: Path, stage: int) -> None:
    """Rank 0's param_shapes hold only its local experts; each expert has its own file, under its global number."""
    import json

    root = engine_checkpoints / f"moe_zero{stage}"
    oracle = json.loads((engine_checkpoints / f"moe_zero{stage}.json").read_text())
    anatomy = ds.read(root)
    assert totals(anatomy).params == totals(anatomy).trainable == oracle["params"]
    names = [f"{la.path}.{t.name}" for la in anatomy.walk() for t in la.tensors]
    files = sorted((root / "global_step1").glob("layer_0_expert_*_mp_rank_00_model_states.pt"))
    stored = {k: tuple(v.shape) for f in files for k, v in torch.load(f, weights_only=True).items()}
    assert stored and all(n in names for n in stored)
    layout = rank_layout(root)
    for rank, experts in oracle["experts_saved_by_rank"].items():
        held = {f for f in layout.ranks[int(rank)].files if "_expert_" in f}
        assert held == {f"layer_0_expert_{e}_mp_rank_00_model_states.pt" for e in experts}
    shutil.copytree(root, tmp_path / "damaged")
    (tmp_path / "damaged" / "global_step1" / files[-1].name).unlink()
    with pytest.raises(CorruptFileError, match="expert's file is missing"):
        ds.read(tmp_path / "damaged")


def test_a_live_zero3_module_is_counted_by_ds_shape(engine_checkpoints: Path) -> None:
    import json

    found = json.loads((engine_checkpoints / "zero3_live.json").read_text())
    model: Any = _dcp_jobs.small_model()
    assert found["local_numel"] == 0  # ZeRO-3 empties every parameter on every rank
    assert found["paramscope"] == found["ds_numel"] == sum(p.numel() for p in model.parameters())
    assert found["sharding"] == "zero3"
