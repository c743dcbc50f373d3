"""``paramscope diff``: two sources compared tensor by tensor, against the frameworks' own state dicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import paramscope
from paramscope.analysis.diff import canonical_name, diff
from paramscope.readers import read

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paramscope", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def _tiny_llama(**overrides: Any) -> Any:
    cfg = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    cfg.update(overrides)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg))


def _save(model: Any, folder: Path, dtype: Any = None) -> Path:
    sd = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    safetensors_torch.save_file(sd, str(folder / "model.safetensors"))
    return folder / "model.safetensors"


def test_a_checkpoint_and_the_model_it_came_from_are_the_same(tmp_path: Path) -> None:
    model = _tiny_llama()
    d = diff(read(_save(model, tmp_path / "ckpt")), read(model))
    assert d.same, (d.added, d.removed, d.changed, d.renamed)
    assert d.n_same == len(model.state_dict())
    proc = _cli("diff", str(tmp_path / "ckpt" / "model.safetensors"), str(tmp_path / "ckpt"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2].startswith("same:")


def test_a_tied_head_stored_once_is_tied_not_removed(tmp_path: Path) -> None:
    model = _tiny_llama(tie_word_embeddings=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the oracle: torch ties them
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    safetensors_torch.save_file(sd, str(tmp_path / "model.safetensors"))
    d = diff(read(model), read(tmp_path / "model.safetensors"))
    assert d.same
    assert d.tied == ("lm_head.weight",)


def test_fp16_export_changes_every_dtype_and_halves_the_bytes(tmp_path: Path) -> None:
    model = _tiny_llama()
    d = diff(read(_save(model, tmp_path / "a")), read(_save(model, tmp_path / "b", torch.float16)))
    sd = model.state_dict()
    assert {c.a.name for c in d.changed} == set(sd)
    assert all(c.what == ("dtype", "bytes") for c in d.changed)
    assert d.totals_a.n_bytes == sum(v.numel() * v.element_size() for v in sd.values())
    assert d.totals_b.n_bytes == sum(v.numel() * 2 for v in sd.values())
    proc = _cli("diff", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "paramscope-diff/1" and doc["same"] is False
    assert {c["name"] for c in doc["changed"]} == set(sd)
    assert doc["changed"][0]["a"]["dtype"] == "float32" and doc["changed"][0]["b"]["dtype"] == "float16"


def test_a_fine_tune_with_a_resized_vocabulary(tmp_path: Path) -> None:
    base = _tiny_llama()
    tuned = _tiny_llama()
    tuned.resize_token_embeddings(100)
    tuned.model.layers[1].mlp.down_proj = torch.nn.Linear(64, 32, bias=True)  # adds a bias
    sa, sb = base.state_dict(), tuned.state_dict()
    # The oracle: torch's own state dicts, compared in plain Python.
    differ = {k for k in sa.keys() & sb.keys() if sa[k].shape != sb[k].shape}
    d = diff(read(_save(base, tmp_path / "base")), read(_save(tuned, tmp_path / "tuned")))
    assert {c.a.name for c in d.changed} == differ == {"model.embed_tokens.weight", "lm_head.weight"}
    assert [s.name for s in d.added] == sorted(sb.keys() - sa.keys()) == ["model.layers.1.mlp.down_proj.bias"]
    assert not d.removed and not d.renamed
    assert d.totals_b.params - d.totals_a.params == sum(v.numel() for v in sb.values()) - sum(
        v.numel() for v in sa.values()
    )


def test_wrapper_prefixes_are_matched(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}  # what DDP's state_dict has
    safetensors_torch.save_file(wrapped, str(tmp_path / "ddp.safetensors"))
    d = diff(read(model), read(tmp_path / "ddp.safetensors"))
    assert d.same and d.n_same == 4


def test_gguf_names_match_hugging_face_names() -> None:
    gguf = pytest.importorskip("gguf")
    # The oracle: gguf-py's own map from Hugging Face names to GGUF names, for the llama family.
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 4)
    model = _tiny_llama(num_hidden_layers=4)
    checked = 0
    for hf in model.state_dict():
        base, _, suffix = hf.rpartition(".")
        mapped = names.get_name(base)
        if mapped is None:
            continue
        assert canonical_name(f"{mapped}.{suffix}") == hf
        checked += 1
    assert checked == len(model.state_dict())


def test_a_gguf_export_matches_its_safetensors_by_name(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    model = _tiny_llama()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    for hf, v in model.state_dict().items():
        base, _, suffix = hf.rpartition(".")
        writer.add_tensor(f"{names.get_name(base)}.{suffix}", v.to(torch.float16).numpy().astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    d = diff(read(_save(model, tmp_path / "st")), read(tmp_path / "m.gguf"))
    assert not d.added and not d.removed and not d.renamed
    assert len(d.changed) == len(model.state_dict())
    assert all(c.what == ("dtype", "bytes") and c.note.startswith("matched as") for c in d.changed)


def test_a_keras_model_and_its_pytorch_port() -> None:
    keras = pytest.importorskip("keras")
    # Named: Keras numbers unnamed layers across the whole process.
    k = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="dense"),
                          keras.layers.BatchNormalization(name="batch_normalization"), keras.layers.Dense(2, name="dense_1")])
    t = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    d = diff(read(k), read(t))
    pairs = {(c.a.name, c.b.name) for c in d.renamed}
    assert ("dense.kernel", "0.weight") in pairs and ("batch_normalization.moving_variance", "1.running_var") in pairs
    kernel = next(c for c in d.renamed if c.a.name == "dense.kernel")
    # The oracle: each framework's own tensor shapes.
    assert kernel.a.shape == tuple(k.layers[0].kernel.shape)
    assert kernel.b.shape == tuple(t[0].weight.shape) == tuple(reversed(kernel.a.shape))
    assert "transposed" in kernel.note and kernel.what == ()
    assert [s.name for s in d.added] == ["1.num_batches_tracked"]  # a PyTorch buffer Keras has not
    assert not d.removed and not d.changed
    assert len(d.renamed) == len(k.weights) == sum(1 for _ in t.parameters()) + 2


def test_api_and_bad_input(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 3)
    assert paramscope.diff(model, model).same
    proc = _cli("diff", str(tmp_path / "missing.safetensors"), str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no such file" in proc.stderr


def test_markdown_escapes_names_from_files(tmp_path: Path) -> None:
    safetensors_torch.save_file({"<img src=x onerror=alert(1)>.weight": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    safetensors_torch.save_file({"b.weight": torch.zeros(3)}, str(tmp_path / "b.safetensors"))
    proc = _cli("diff", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--format", "markdown")
    assert proc.returncode == 1, proc.stderr
    assert "<img" not in proc.stdout and "&lt;img" in proc.stdout
