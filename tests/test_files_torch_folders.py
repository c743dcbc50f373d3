"""PyTorch checkpoint folders as Hugging Face writes them: pytorch_model.bin, or shards and an index.

transformers 5 writes safetensors whatever ``safe_serialization`` says, so the ``.bin`` layout is
written here as transformers 4 wrote it: ``torch.save`` of the state dict, or of each shard that
``huggingface_hub.split_torch_state_dict_into_shards`` plans, beside the index and config.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hub = pytest.importorskip("huggingface_hub")

from paramscope.analysis import totals  # noqa: E402
from paramscope.cli import main  # noqa: E402
from paramscope.core.errors import CorruptFileError, TargetError, UnsafeFileError  # noqa: E402
from paramscope.readers import read, reader_for  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")
INDEX = "pytorch_model.bin.index.json"


def _model() -> Any:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=100, max_position_embeddings=16, tie_word_embeddings=True,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg)


def _expected(model: Any) -> tuple[int, int]:
    """(parameters, persistent buffers) as torch counts them; tied parameters once."""
    params = sum(p.numel() for p in model.parameters())
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    buffers = sum(t.numel() for n, t in model.state_dict().items() if n not in names)
    return params, buffers


def _save(model: Any, folder: Path, shard_bytes: int | None) -> Path:
    folder.mkdir()
    model.config.save_pretrained(folder)
    sd = model.state_dict()
    if shard_bytes is None:
        torch.save(sd, folder / "pytorch_model.bin")
        return folder
    plan = hub.split_torch_state_dict_into_shards(sd, filename_pattern="pytorch_model{suffix}.bin", max_shard_size=shard_bytes)
    for name, tensors in plan.filename_to_tensors.items():
        torch.save({t: sd[t] for t in tensors}, folder / name)
    (folder / INDEX).write_text(json.dumps({"metadata": plan.metadata, "weight_map": plan.tensor_to_filename}))
    return folder


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    model = _model()
    base = tmp_path_factory.mktemp("torch_folders")
    return model, _save(model, base / "single", None), _save(model, base / "sharded", 10_000)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_single_bin_folder(saved: tuple[Any, Path, Path]) -> None:
    model, single, _ = saved
    assert reader_for(single).__name__.endswith("readers.torch.checkpoint")
    a = read(single)
    t = totals(a)
    assert (t.params, t.buffers) == _expected(model)
    assert a.framework == "torch" and a.name == "single"
    assert a.metadata["model_type"] == "llama" and a.metadata["tie_word_embeddings"] == "true"
    assert any("lm_head.weight" in n and "counted once" in n for n in a.notes)


def test_sharded_folder_and_its_index(saved: tuple[Any, Path, Path]) -> None:
    model, _, sharded = saved
    shards = sorted(sharded.glob("pytorch_model-*-of-*.bin"))
    assert len(shards) > 2
    for source in (sharded, sharded / INDEX):
        assert reader_for(source).__name__.endswith("readers.torch.checkpoint")
        a = read(source)
        assert (totals(a).params, totals(a).buffers) == _expected(model)
        assert a.metadata["shards"] == str(len(shards))
        assert a.metadata["model_type"] == "llama" and "index.total_size" in a.metadata


def test_tie_declared_only_by_config_is_counted_once(tmp_path: Path, saved: tuple[Any, Path, Path]) -> None:
    # transformers drops lm_head.weight when it is tied; config.json says it is the embedding.
    model, single, _ = saved
    folder = tmp_path / "untied"
    folder.mkdir()
    (folder / "config.json").write_bytes((single / "config.json").read_bytes())
    torch.save({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}, folder / "pytorch_model.bin")
    assert totals(read(folder)).params == _expected(model)[0]


def test_buffers_of_a_plain_state_dict(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    (tmp_path / "bn").mkdir()
    torch.save(net.state_dict(), tmp_path / "bn" / "pytorch_model.bin")
    (tmp_path / "bn" / "training_args.bin").write_bytes(b"\x80\x04not weights")  # never read
    t = totals(read(tmp_path / "bn"))
    assert (t.params, t.buffers) == _expected(net)


def test_cli_json(saved: tuple[Any, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    model, _, sharded = saved
    assert main(["summary", str(sharded), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["framework"] == "torch" and doc["totals"]["params"] == _expected(model)[0]
    assert doc["metadata"]["model_type"] == "llama"


def test_safetensors_and_config_only_folders_stay_with_their_readers(tmp_path: Path, saved: tuple[Any, Path, Path]) -> None:
    model, single, _ = saved
    model.save_pretrained(tmp_path / "st")
    (tmp_path / "st" / "pytorch_model.bin").write_bytes((single / "pytorch_model.bin").read_bytes())
    assert reader_for(tmp_path / "st").__name__.endswith("readers.safetensors")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_bytes((single / "config.json").read_bytes())
    assert reader_for(tmp_path / "cfg").__name__.endswith("readers.hf.config")


def _hostile(folder: Path, outside: Path, kind: str) -> tuple[type[Exception], str]:
    index = json.loads((folder / INDEX).read_text())
    wm = index["weight_map"]
    first = next(iter(wm))
    if kind == "absolute":
        wm[first] = str(outside)
        err: tuple[type[Exception], str] = (UnsafeFileError, "leaves the checkpoint folder")
    elif kind == "dotdot":
        wm[first] = "../outside.bin"
        err = (UnsafeFileError, "leaves the checkpoint folder")
    elif kind == "symlink":
        os.symlink(outside, folder / "link.bin")
        wm[first] = "link.bin"
        err = (UnsafeFileError, "symlink out of the checkpoint folder")
    elif kind == "missing_tensor":
        wm["model.layers.9.mlp.up_proj.weight"] = wm[first]
        err = (CorruptFileError, f"'model.layers.9.mlp.up_proj.weight' is listed in the index but not stored in {wm[first]}")
    else:
        wm[first] = "pytorch_model-00099-of-00099.bin"
        err = (CorruptFileError, "shard pytorch_model-00099-of-00099.bin named in the index does not exist")
    (folder / INDEX).write_text(json.dumps(index))
    return err


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "missing_tensor", "missing_shard"])
def test_hostile_index(tmp_path: Path, saved: tuple[Any, Path, Path], capsys: pytest.CaptureFixture[str], kind: str) -> None:
    folder = _copy(saved[2], tmp_path / "ckpt")
    outside = tmp_path / "outside.bin"
    outside.write_bytes((saved[1] / "pytorch_model.bin").read_bytes())
    error, needle = _hostile(folder, outside, kind)
    with pytest.raises(error) as info:
        read(folder)
    assert needle in str(info.value) and INDEX in str(info.value)
    assert main(["summary", str(folder)]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("paramscope: error: ") and needle in err


def test_unindexed_tensor_is_a_note_and_two_indexes_are_refused(tmp_path: Path, saved: tuple[Any, Path, Path]) -> None:
    folder = _copy(saved[2], tmp_path / "ckpt")
    index = json.loads((folder / INDEX).read_text())
    dropped = next(iter(index["weight_map"]))
    del index["weight_map"][dropped]
    (folder / INDEX).write_text(json.dumps(index))
    a = read(folder)
    assert any("1 tensors stored in the shards are not listed" in n for n in a.notes)
    (folder / "other.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(TargetError, match="2 PyTorch index files"):
        read(folder)


def test_reading_imports_no_torch(saved: tuple[Any, Path, Path]) -> None:
    model, _, sharded = saved
    code = (
        "import sys; from paramscope.readers import read; from paramscope.analysis import totals;"
        f"a = read({str(sharded)!r}); print(totals(a).params);"
        "bad = [m for m in ('torch', 'transformers', 'keras', 'tensorflow') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": SRC}, check=True)
    assert out.stdout.split() == [str(_expected(model)[0]), "[]"]
