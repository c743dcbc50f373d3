"""Files that come from a folder: regular files only, and inside the folder (one rule, core/files.py).

A FIFO in place of an index, a config or a weight file would block the first ``open`` forever;
a symlink out of the folder would make paramscope describe (and name, in its output) a file the
user never gave it. Each case is read by the CLI in a child process: exit 2, one line naming
the file and what it is, nothing read from outside. The HDF5 readers' ``can_read`` answer from
bytes and never load h5py (libhdf5 runs only in the time-limited child).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _attacks import gguf_file, onnx_model, run_cli, safetensors_file

from paramscope.core.errors import TargetError, UnsafeFileError
from paramscope.core.files import folder_member, open_regular

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are a POSIX feature")


def assert_refused(out: object, *needles: str) -> None:
    rc, stderr = out.rc, out.stderr  # type: ignore[attr-defined]
    assert rc == 2, (rc, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("paramscope: error: "), stderr[-2000:]
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    f = tmp_path / "model"
    f.mkdir()
    return f


def _secret(tmp_path: Path) -> Path:
    return safetensors_file(tmp_path / "secret.safetensors", ["secret.weight"])


# --- FIFOs ------------------------------------------------------------------------------------------


def test_fifo_index_in_a_folder(tmp_path: Path, folder: Path) -> None:
    safetensors_file(folder / "model-00001-of-00001.safetensors", ["fc.weight"])
    os.mkfifo(folder / "model.safetensors.index.json")
    assert_refused(run_cli(folder, tmp=tmp_path), "model.safetensors.index.json", "FIFO")


def test_fifo_config_beside_the_weights(tmp_path: Path, folder: Path) -> None:
    safetensors_file(folder / "model.safetensors", ["fc.weight"])
    os.mkfifo(folder / "config.json")
    assert_refused(run_cli(folder, tmp=tmp_path), "config.json", "FIFO")


def test_fifo_weight_file_in_a_folder(tmp_path: Path, folder: Path) -> None:
    safetensors_file(folder / "a.safetensors", ["fc.weight"])
    os.mkfifo(folder / "b.safetensors")
    assert_refused(run_cli(folder, tmp=tmp_path), "b.safetensors", "FIFO")


def test_fifo_shard_named_by_the_index(tmp_path: Path, folder: Path) -> None:
    safetensors_file(folder / "a.safetensors", ["a.weight"])
    os.mkfifo(folder / "b.safetensors")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a.weight": "a.safetensors", "b.weight": "b.safetensors"}})
    )
    assert_refused(run_cli(folder, tmp=tmp_path), "b.safetensors", "FIFO")


def test_fifo_hf_config_folder(tmp_path: Path, folder: Path) -> None:
    os.mkfifo(folder / "config.json")
    assert_refused(run_cli(folder, tmp=tmp_path), "config.json")


@pytest.mark.parametrize("name", ["model.safetensors", "model.onnx", "model.gguf", "config.json"])
def test_fifo_given_as_the_target(tmp_path: Path, name: str) -> None:
    os.mkfifo(tmp_path / name)
    assert_refused(run_cli(tmp_path / name, tmp=tmp_path), name)


def test_fifo_onnx_external_data(tmp_path: Path, folder: Path) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2])
    weight.data_location = TensorProto.EXTERNAL
    for k, v in {"location": "w.bin", "offset": "0", "length": "8"}.items():
        entry = weight.external_data.add()
        entry.key, entry.value = k, v
    (folder / "m.onnx").write_bytes(onnx_model([helper.make_node("Add", ["x", "w"], ["y"])], initializers=[weight]))
    os.mkfifo(folder / "w.bin")
    assert_refused(run_cli(folder / "m.onnx", tmp=tmp_path), "w.bin", "FIFO")


# --- symlinks out of the folder ---------------------------------------------------------------------


def test_weight_file_symlinked_out_of_the_folder(tmp_path: Path, folder: Path) -> None:
    secret = _secret(tmp_path)
    (folder / "model.safetensors").symlink_to(secret)
    out = run_cli(folder, tmp=tmp_path)
    assert_refused(out, "model.safetensors", "symlink out")
    assert "secret.weight" not in out.stdout


def test_pytorch_weights_symlinked_out_of_the_folder(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    outside = tmp_path / "outside"
    outside.mkdir()
    torch.save({"secret.weight": torch.zeros(3)}, outside / "secret.bin")
    for name in ("pytorch_model.bin", "pytorch_model-00001-of-00002.bin"):
        folder = tmp_path / f"ckpt-{name[:16]}"
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "gpt2"}')
        (folder / name).symlink_to(outside / "secret.bin")
        out = run_cli(folder, tmp=tmp_path)
        assert_refused(out, name, "symlink out")
        assert "secret" not in out.stdout


def test_index_symlinked_out_of_the_folder(tmp_path: Path, folder: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps({"weight_map": {}}))
    (folder / "model.safetensors.index.json").symlink_to(outside)
    assert_refused(run_cli(folder, tmp=tmp_path), "symlink out")


def test_config_symlinked_out_of_the_folder(tmp_path: Path, folder: Path) -> None:
    safetensors_file(folder / "model.safetensors", ["fc.weight"])
    outside = tmp_path / "config.json"
    outside.write_text(json.dumps({"model_type": "llama"}))
    (folder / "config.json").symlink_to(outside)
    assert_refused(run_cli(folder, tmp=tmp_path), "config.json", "symlink out")


def test_gguf_split_symlinked_out_of_the_folder(tmp_path: Path, folder: Path) -> None:
    meta = {"split.count": "2", "split.no": "0"}
    first = folder / "m-00001-of-00002.gguf"
    # GGUF metadata values in this builder are strings; the reader parses the split fields as numbers.
    gguf_file(first, "a.weight", meta)
    gguf_file(tmp_path / "outside.gguf", "b.weight", {"split.count": "2", "split.no": "1"})
    (folder / "m-00002-of-00002.gguf").symlink_to(tmp_path / "outside.gguf")
    assert_refused(run_cli(first, tmp=tmp_path), "m-00002-of-00002.gguf", "symlink out")


def test_symlink_inside_the_folder_is_followed(tmp_path: Path, folder: Path) -> None:
    (folder / "real").mkdir()
    safetensors_file(folder / "real" / "w.safetensors", ["fc.weight"])
    (folder / "model.safetensors").symlink_to(folder / "real" / "w.safetensors")
    out = run_cli(folder, "--format", "json", tmp=tmp_path)
    assert out.rc == 0, out.stderr


# --- the helper itself ------------------------------------------------------------------------------


def test_open_regular_refuses_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    with pytest.raises(UnsafeFileError, match="FIFO"):
        open_regular(tmp_path / "p")
    with pytest.raises(TargetError, match="cannot open"):
        open_regular(tmp_path / "missing")


def test_folder_member_refuses_every_way_out(tmp_path: Path, folder: Path) -> None:
    (folder / "ok.bin").write_bytes(b"x")
    (folder / "out.bin").symlink_to(tmp_path)
    assert folder_member(folder, "ok.bin") == (folder / "ok.bin").resolve()
    for name in ("../x", "/etc/passwd", "a/../../x", "x\x00y", "C:\\x"):
        with pytest.raises(UnsafeFileError, match="leaves"):
            folder_member(folder, name)
    with pytest.raises(UnsafeFileError, match="symlink out"):
        folder_member(folder, "out.bin")
    (folder / "sub").mkdir()
    with pytest.raises(UnsafeFileError, match="a folder"):
        folder_member(folder, "sub")


# --- HDF5 can_read: bytes only ----------------------------------------------------------------------


def test_hdf5_can_read_never_imports_h5py(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "w.weights.h5", "w") as f:
        f.create_group("layers").create_dataset("vars/0", data=[1.0, 2.0])
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
    with h5py.File(tmp_path / "user_block.h5", "w", userblock_size=1024) as f:
        f.attrs["model_config"] = "{}"
    code = (
        "import sys\n"
        "from paramscope.readers.keras import archive, weights\n"
        f"d = {str(tmp_path)!r}\n"
        "got = [archive.can_read(d + '/m.h5'), weights.can_read(d + '/m.h5'),\n"
        "       archive.can_read(d + '/w.weights.h5'), weights.can_read(d + '/w.weights.h5'),\n"
        "       archive.can_read(d + '/user_block.h5')]\n"
        "assert got == [True, False, False, True, True], got\n"
        "assert 'h5py' not in sys.modules, 'h5py imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_pointer_files_are_read_bounded_and_never_waited_on(tmp_path: Path) -> None:
    from paramscope.core.files import read_head

    big = tmp_path / "latest"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # a 1 GiB pointer file: only limit + 1 bytes are read
    assert read_head(big, 256) == b"\0" * 257
    os.mkfifo(tmp_path / "fifo")
    assert read_head(tmp_path / "fifo", 256) is None  # no writer: refused at once, not waited on
    assert read_head(tmp_path / "missing", 256) is None
