"""DeepSpeed universal checkpoints: the model read from ``zero/<name>/`` equals the torch model.

The folders are the real thing: ZeRO 1/2/3 checkpoints saved by DeepSpeed's engine in a 2-process
gloo job (the session fixture ``engine_checkpoints``), converted by DeepSpeed's own
``ds_to_universal``. The oracles are the unsharded torch model and the ``fp32.pt`` files loaded
with torch; the hostile cases are those folders with one file changed.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
ds_to_universal = pytest.importorskip("deepspeed.checkpoint.ds_to_universal")

import _dcp_jobs  # noqa: E402

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.cli import main  # noqa: E402
from paramscope.core.errors import CorruptFileError, LimitError, UnsafeFileError  # noqa: E402
from paramscope.readers import reader_for  # noqa: E402
from paramscope.readers.distributed import deepspeed as ds  # noqa: E402
from paramscope.readers.distributed import deepspeed_universal as dsu  # noqa: E402
from paramscope.readers.distributed.layout import rank_layout  # noqa: E402

TAG = "global_step1_universal"


@pytest.fixture(scope="module")
def universal(engine_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each engine-saved folder copied and converted: ``<name>/global_step1_universal`` beside ``<name>/latest_universal``."""
    out = tmp_path_factory.mktemp("universal")
    for name in ("zero1", "zero2", "zero3", "tied_frozen_zero1", "tied_frozen_zero2", "tied_frozen_zero3"):
        shutil.copytree(engine_checkpoints / name, out / name)
        # --inject_missing_state: the engine records no universal_checkpoint_info for a plain model,
        # and without it the converter refuses ZeRO 1/2 folders.
        args = argparse.Namespace(input_folder=str(out / name / "global_step1"), output_folder=str(out / name / TAG),
                                  num_extract_workers=1, num_merge_workers=1, keep_temp_folder=False, strict=True,
                                  inject_missing_state=True)  # fmt: skip
        ds_to_universal.main(args)
    return out


def _copy(universal: Path, name: str, tmp_path: Path) -> Path:
    """A writable copy of one converted checkpoint; returns its universal folder."""
    shutil.copytree(universal / name, tmp_path / name)
    return tmp_path / name / TAG


def _fp32(folder: Path, name: str) -> Any:
    """What DeepSpeed wrote for ``name``: a dict holding ``param`` (ZeRO 1/2), or the bare flat tensor (ZeRO 3)."""
    value = torch.load(folder / "zero" / name / "fp32.pt", weights_only=False)
    return value["param"] if isinstance(value, dict) else value


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_the_model_equals_the_torch_model(universal: Path, stage: int) -> None:
    folder = universal / f"zero{stage}" / TAG
    model: Any = _dcp_jobs.small_model()
    assert reader_for(folder) is dsu
    anatomy = dsu.read(folder)
    ours = {f"{la.path}.{t.name}": t.shape for la in anatomy.walk() for t in la.tensors}
    assert ours == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name, shape in ours.items():  # the merged tensors DeepSpeed wrote hold exactly these parameters
        theirs = _fp32(folder, name)
        assert (tuple(theirs.shape) == shape) if stage < 3 else (theirs.numel() == theirs.shape[0] == torch.Size(shape).numel())
    found = totals(anatomy)
    assert found.params == found.trainable == sum(p.numel() for p in model.parameters())
    assert anatomy.metadata["format"] == "DeepSpeed universal checkpoint"
    assert anatomy.metadata["saved_zero_stage"] == str(stage) and anatomy.metadata["saved_dp_world_size"] == "2"
    (optimizer,) = anatomy.extras
    moments = {t.name: t.count for t in optimizer.tensors}
    for name, p in model.named_parameters():
        assert moments[f"{name}.exp_avg"] == moments[f"{name}.exp_avg_sq"] == moments[f"{name}.fp32"] == p.numel()
    assert all(f"{n}.step" in moments for n, _ in model.named_parameters()) == (stage < 3)  # ZeRO 3's writes no step.pt
    # ZeRO 3's optimizer_state.pt is rank 0's whole optimizer state: its flat partition and moments come along.
    assert any(n.startswith("optimizer_state.fp32_flat_groups") for n in moments) == (stage == 3)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_frozen_parameters_and_ties(universal: Path, stage: int) -> None:
    import _deepspeed_jobs

    folder = universal / f"tied_frozen_zero{stage}" / TAG
    model: Any = _deepspeed_jobs.tied_frozen_model()
    anatomy = dsu.read(folder)
    found = totals(anatomy)
    assert found.params == sum(p.numel() for p in model.parameters())  # the tied head once
    assert found.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    roles = {f"{la.path}.{t.name}": t.role.value for la in anatomy.walk() for t in la.tensors}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {k for k, v in roles.items() if v == "frozen"} == frozen
    unique = {n for n, _ in model.named_parameters()}
    written = {p.name for p in (folder / "zero").iterdir() if p.is_dir()}
    if stage < 3:  # every tensor of the stored module, tied alias included, gets its zero/ folder
        assert written == set(model.state_dict()) and set(roles) == unique | {"head.weight"}
        assert any("share one storage" in n for n in anatomy.notes)
    else:  # ZeRO 3: only what the optimizer trains; frozen shapes come from frozen_param_shapes
        assert written == {n for n, p in model.named_parameters() if p.requires_grad} and set(roles) == unique
        assert any("no zero/ folder" in n for n in anatomy.notes)


def test_the_parent_folder_the_cli_and_the_layout(universal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "zero2"
    folder = _copy(universal, "zero2", tmp_path)
    assert dsu.read(parent).source == str(folder)  # through latest_universal
    # Beside `latest`, the parent is first a ZeRO checkpoint: the universal folder is read when named.
    assert reader_for(parent) is ds and not ds.can_read(folder) and not dsu.can_read(parent / "global_step1")
    (parent / "latest").unlink()
    assert reader_for(parent) is dsu
    assert main(["summary", str(folder), "--width", "120"]) == 0
    out = capsys.readouterr().out
    assert "DeepSpeed universal checkpoint" in out and "Optimizer state" in out
    layout = rank_layout(folder, world_sizes=(4,))
    (share,) = layout.ranks
    assert layout.format == "deepspeed universal" and share.rank is None and len(layout.projections) == 1
    model: Any = _dcp_jobs.small_model()
    assert sum(s.count for s in share.slices if not s.optimizer) == sum(p.numel() for p in model.parameters())
    assert main(["layout", str(parent), "--world-size", "4", "--width", "120"]) == 0
    assert "ranks: none: every tensor is stored whole" in capsys.readouterr().out


def _fails(capsys: pytest.CaptureFixture[str], target: Path, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        dsu.read(target)
    capsys.readouterr()
    assert main(["summary", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err


class _Run:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo never",))


def test_a_missing_fp32_a_missing_folder_and_a_foreign_global(universal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(universal, "zero2", tmp_path / "a")
    (folder / "zero" / "up.weight" / "fp32.pt").unlink()
    _fails(capsys, folder, CorruptFileError, "zero/up.weight has no fp32.pt")
    folder = _copy(universal, "zero2", tmp_path / "b")
    shutil.rmtree(folder / "zero" / "up.weight")
    _fails(capsys, folder, CorruptFileError, "param_shapes names up.weight, but zero/ has no folder")
    folder = _copy(universal, "zero2", tmp_path / "c")
    path = folder / "zero" / "up.weight" / "exp_avg.pt"
    torch.save({**torch.load(path, weights_only=False), "hook": _Run()}, path)
    _fails(capsys, folder, UnsafeFileError, "posix.system|os.system")


@pytest.mark.parametrize("stage", [2, 3])
def test_shapes_disagreeing_with_param_shapes(universal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], stage: int) -> None:
    folder = _copy(universal, f"zero{stage}", tmp_path)

    def write(state: str, rows: int) -> None:  # ZeRO 1/2 save a dict with "param", ZeRO 3 the bare flat tensor
        value = torch.zeros(rows, 16)
        torch.save({"param": value, "cat_dim": 0} if stage < 3 else value.flatten(), folder / "zero" / "up.weight" / f"{state}.pt")

    for state in ("fp32", "exp_avg", "exp_avg_sq"):
        write(state, 35)  # param_shapes says 36 x 16
    _fails(capsys, folder, CorruptFileError, "up.weight/fp32.pt holds a tensor of shape .* param_shapes")
    write("fp32", 36)
    _fails(capsys, folder, CorruptFileError, "exp_avg.pt holds 560 elements but fp32.pt 576")


def test_an_unknown_tensor_folder(universal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(universal, "zero2", tmp_path)
    shutil.copytree(folder / "zero" / "up.bias", folder / "zero" / "extra.bias")
    _fails(capsys, folder, CorruptFileError, "zero/extra.bias is no parameter")


def test_latest_universal_naming_a_folder_outside(universal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "zero2"
    _copy(universal, "zero2", tmp_path)
    (parent / "latest").unlink()  # else the ZeRO reader answers for the parent
    for tag in ("..", "../zero2", "a\0b"):
        (parent / "latest_universal").write_text(tag)
        _fails(capsys, parent, UnsafeFileError, "latest_universal names")
    (parent / "latest_universal").write_text("x" * 1000)
    _fails(capsys, parent, CorruptFileError, "not a folder name")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", parent / "step_link")
    (parent / "latest_universal").write_text("step_link")
    _fails(capsys, parent, UnsafeFileError, "link out of the checkpoint folder")
    (parent / "latest_universal").unlink()
    (tmp_path / "secret").write_text("../../a secret")
    os.symlink(tmp_path / "secret", parent / "latest_universal")  # never read, so never echoed
    with pytest.raises(UnsafeFileError, match="symlink out of the checkpoint folder") as caught:
        dsu.read(parent)
    assert "secret" not in str(caught.value).replace(str(tmp_path / "secret"), "")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are a POSIX feature")
def test_links_out_of_the_folder_and_a_fifo(universal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(universal / "zero2" / TAG / "zero" / "up.bias", outside)
    folder = _copy(universal, "zero2", tmp_path / "a")
    os.symlink(outside, folder / "zero" / "stolen.bias")  # a tensor folder that is elsewhere
    _fails(capsys, folder, UnsafeFileError, "zero/stolen.bias is a link out of the checkpoint folder")
    folder = _copy(universal, "zero2", tmp_path / "b")
    (folder / "zero" / "up.bias" / "fp32.pt").unlink()
    os.symlink(outside / "fp32.pt", folder / "zero" / "up.bias" / "fp32.pt")  # one state file that is elsewhere
    _fails(capsys, folder, UnsafeFileError, "symlink out of the checkpoint folder")
    folder = _copy(universal, "zero2", tmp_path / "c")
    os.symlink("/etc/hostname", folder / "zero" / "notes.txt")  # even a file the reader would leave alone
    _fails(capsys, folder, UnsafeFileError, "symlink out of the checkpoint folder")
    parent = tmp_path / "d" / "zero2"
    _copy(universal, "zero2", tmp_path / "d")
    (parent / "latest").unlink()
    (parent / "latest_universal").unlink()
    os.mkfifo(parent / "latest_universal")  # a plain open() would wait for a writer forever
    _fails(capsys, parent, UnsafeFileError, "FIFO")


def test_the_number_of_tensor_folders_is_bounded(universal: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dsu, "MAX_TENSORS", 4)
    with pytest.raises(LimitError, match="MAX_TENSORS"):
        dsu.read(universal / "zero2" / TAG)


def test_reading_imports_no_framework(universal: Path) -> None:
    import subprocess
    import sys

    folder = universal / "tied_frozen_zero3" / TAG
    code = (
        "import sys; from paramscope.api import summary, layout; "
        f"summary({str(folder)!r}); layout({str(folder)!r}); print('torch' in sys.modules, 'deepspeed' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
