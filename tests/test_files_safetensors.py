"""safetensors reader: counts, shapes, dtypes and bytes equal what the safetensors library reports."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from paramscope.analysis import shared_tensors, totals
from paramscope.core import Role
from paramscope.core.dtypes import n_bytes
from paramscope.readers import read, reader_for
from paramscope.readers import safetensors as st

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
from safetensors import safe_open  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _oracle(files: list[Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype code) as the safetensors library reads them."""
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                sl = h.get_slice(k)
                out[k] = (tuple(sl.get_shape()), sl.get_dtype())
    return out


def _check_against_oracle(anatomy_files: list[Path], source: Path) -> None:
    a = read(source)
    oracle = _oracle(anatomy_files)
    seen = {}
    for layer in a.walk():
        for t in layer.tensors:
            full = f"{layer.path}.{t.name}" if t.name != layer.path else t.name
            seen[full] = (t.shape, t.dtype)
    assert set(seen) == set(oracle)
    for name, (shape, code) in oracle.items():
        assert seen[name] == (shape, st.DTYPES[code]), name
    t = totals(a)
    count = sum(torch.Size(s).numel() for s, _ in oracle.values())
    assert t.params + t.buffers == count
    # Bytes: the data region of each file is exactly the tensors' bytes.
    data = 0
    for f in anatomy_files:
        (n,) = struct.unpack("<Q", f.read_bytes()[:8])
        data += f.stat().st_size - 8 - n
    assert t.n_bytes == data
    by = Counter[str]()
    for s, code in oracle.values():
        by[st.DTYPES[code]] += torch.Size(s).numel()
    assert {d.dtype: d.count for d in t.by_dtype} == dict(by)


TORCH_DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64,
    torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16, torch.uint32, torch.uint64,
]  # fmt: skip
if hasattr(torch, "float8_e8m0fnu"):
    TORCH_DTYPES.append(torch.float8_e8m0fnu)


def test_every_torch_dtype_matches_library(tmp_path: Path) -> None:
    tensors = {f"t{i}.weight": torch.zeros((i + 1, 3), dtype=dt) for i, dt in enumerate(TORCH_DTYPES)}
    tensors["empty.weight"] = torch.zeros((0, 5))
    tensors["scalar"] = torch.zeros(())
    f = tmp_path / "m.safetensors"
    safetensors_torch.save_file(tensors, str(f), metadata={"format": "pt", "note": "x"})
    _check_against_oracle([f], f)
    a = read(f)
    assert a.framework == "safetensors" and a.name == "m"
    assert dict(a.metadata) == {"format": "pt", "note": "x"}
    assert reader_for(f) is st


def _raw_file(path: Path, entries: dict[str, tuple[str, list[int], int]]) -> None:
    """Write a safetensors file by hand: name -> (dtype code, shape, n_bytes)."""
    header: dict[str, object] = {}
    pos = 0
    for name, (code, shape, size) in entries.items():
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [pos, pos + size]}
        pos += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * pos)


def test_sub_byte_and_rare_dtypes_match_library(tmp_path: Path) -> None:
    # Dtypes torch cannot create; the library still reads their headers.
    entries = {
        "f4": ("F4", [4, 6], 12),
        "f6a": ("F6_E2M3", [4, 4], 12),
        "f6b": ("F6_E3M2", [8], 6),
        "e8m0": ("F8_E8M0", [7], 7),
        "c64": ("C64", [2, 2], 32),
    }
    f = tmp_path / "sub.safetensors"
    _raw_file(f, entries)
    a = read(f)
    for layer in a.walk():
        for t in layer.tensors:
            code, shape, size = entries[layer.path]
            assert t.shape == tuple(shape) and t.n_bytes == size, layer.path
            assert n_bytes(st.DTYPES[code], t.count) == size
    with safe_open(str(f), framework="pt") as h:
        assert {k: tuple(h.get_slice(k).get_shape()) for k in h.keys()} == {k: tuple(v[1]) for k, v in entries.items()}


def test_every_spec_dtype_has_a_size() -> None:
    for code, name in st.DTYPES.items():
        assert n_bytes(name, 8) == st.DTYPE_BITS[code], code


def _shards(tmp_path: Path) -> tuple[Path, dict[str, str], dict[str, torch.Tensor]]:
    tensors = {
        "model.embed_tokens.weight": torch.zeros(50, 8, dtype=torch.bfloat16),
        **{f"model.layers.{i}.mlp.up_proj.weight": torch.zeros(16, 8, dtype=torch.bfloat16) for i in range(12)},
        **{f"model.layers.{i}.input_layernorm.weight": torch.zeros(8) for i in range(12)},
        "model.norm.weight": torch.zeros(8),
        "lm_head.weight": torch.zeros(50, 8, dtype=torch.bfloat16),
    }
    names = list(tensors)
    weight_map: dict[str, str] = {}
    for s in range(3):
        part = names[s::3]
        fname = f"model-{s + 1:05d}-of-00003.safetensors"
        safetensors_torch.save_file({k: tensors[k] for k in part}, str(tmp_path / fname))
        weight_map.update({k: fname for k in part})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return tmp_path, weight_map, tensors


def test_sharded_index_folder_and_index_file(tmp_path: Path) -> None:
    folder, wm, tensors = _shards(tmp_path)
    files = sorted(folder.glob("*.safetensors"))
    _check_against_oracle(files, folder)
    _check_against_oracle(files, folder / "model.safetensors.index.json")
    a = read(folder)
    assert a.metadata["shards"] == "3"
    assert a.metadata["index.total_size"] == str(sum(t.numel() * t.element_size() for t in tensors.values()))
    # Natural order: layer 2 before layer 10.
    layers = a.find("model.layers")
    assert layers is not None and [c.name for c in layers.children] == [str(i) for i in range(12)]


def test_folder_of_shards_without_index(tmp_path: Path) -> None:
    folder, _, _ = _shards(tmp_path)
    (folder / "model.safetensors.index.json").unlink()
    _check_against_oracle(sorted(folder.glob("*.safetensors")), folder)


def test_index_tensor_missing_from_shard_refused(tmp_path: Path) -> None:
    folder, wm, _ = _shards(tmp_path)
    wm["ghost.weight"] = next(iter(wm.values()))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    with pytest.raises(st.CorruptFileError, match="ghost.weight"):
        read(folder)


def test_tensor_in_two_shards_refused(tmp_path: Path) -> None:
    safetensors_torch.save_file({"a.weight": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    safetensors_torch.save_file({"a.weight": torch.zeros(2)}, str(tmp_path / "y.safetensors"))
    with pytest.raises(st.CorruptFileError, match="both"):
        read(tmp_path)


class Net(torch.nn.Module):
    """Embedding -> Linear -> BatchNorm -> head tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(30, 8)
        self.proj = torch.nn.Linear(8, 8)
        self.bn = torch.nn.BatchNorm1d(8)
        self.head = torch.nn.Linear(8, 30, bias=False)
        self.head.weight = self.embed.weight


def test_torch_model_state_dict_totals(tmp_path: Path) -> None:
    net = Net()
    f = tmp_path / "net.safetensors"
    safetensors_torch.save_model(net, str(f))  # drops the tied duplicate
    a = read(f)
    t = totals(a)
    assert t.params == sum(p.numel() for p in net.parameters())
    assert t.buffers == sum(b.numel() for b in net.buffers())
    bn = a.find("bn")
    assert bn is not None and bn.type == "BatchNorm"
    roles = {x.name: (x.role, x.is_param) for x in bn.tensors}
    assert roles["running_mean"] == (Role.STATISTIC, False)
    assert roles["num_batches_tracked"] == (Role.BUFFER, False)


def _tiny_llama(tmp_path: Path, tie: bool) -> tuple[Path, int]:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=16, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=32, vocab_size=64, tie_word_embeddings=tie,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg)
    out = tmp_path / ("tied" if tie else "untied")
    model.save_pretrained(out)
    return out, sum(p.numel() for p in model.parameters())


def test_hf_folder_with_config_and_tied_head(tmp_path: Path) -> None:
    folder, n_params = _tiny_llama(tmp_path, tie=True)
    a = read(folder)
    assert totals(a).params == n_params
    assert a.metadata["model_type"] == "llama"
    assert a.metadata["architectures"] == "LlamaForCausalLM"
    assert any("lm_head.weight is not stored" in n for n in a.notes)
    assert a.name == "tied"
    config = json.loads((folder / "config.json").read_text())
    for key in ("num_hidden_layers", "hidden_size", "num_key_value_heads", "vocab_size"):
        assert a.metadata[key] == str(config[key])
    assert a.metadata["tie_word_embeddings"] == "true"


def test_hf_folder_untied(tmp_path: Path) -> None:
    folder, n_params = _tiny_llama(tmp_path, tie=False)
    a = read(folder)
    assert totals(a).params == n_params
    assert not any("tied" in n for n in a.notes)
    assert not shared_tensors(a)


def test_tied_name_present_is_marked_shared(tmp_path: Path) -> None:
    safetensors_torch.save_file(
        {"model.embed_tokens.weight": torch.zeros(10, 4), "lm_head.weight": torch.zeros(10, 4)},
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "tie_word_embeddings": True}))
    a = read(tmp_path)
    assert totals(a).params == 40
    assert list(shared_tensors(a).values()) == [["lm_head/weight", "model.embed_tokens/weight"]] or \
        list(shared_tensors(a).values()) == [["model.embed_tokens/weight", "lm_head/weight"]]


def test_names_with_control_characters_survive(tmp_path: Path) -> None:
    f = tmp_path / "evil.safetensors"
    _raw_file(f, {"evil\x1b[31m.w\x00": ("F32", [2], 8)})
    a = read(f)
    assert a.layers[0].name == "evil\x1b[31m"
    assert a.layers[0].tensors[0].name == "w\x00"


def test_reading_imports_no_framework(tmp_path: Path) -> None:
    folder, _, _ = _shards(tmp_path)
    code = (
        "import sys; from paramscope.readers import read; from paramscope.analysis import totals;"
        f"a = read({str(folder)!r}); totals(a);"
        "bad = [m for m in ('torch', 'keras', 'tensorflow', 'numpy', 'safetensors', 'jax') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_same_model_as_safetensors_and_pt_checkpoint(tmp_path: Path) -> None:
    # The same network saved by both formats reads as the same totals (the .pt reader is
    # paramscope's pickle-free torch checkpoint reader).
    pytest.importorskip("paramscope.readers.torch.checkpoint")
    net = Net()
    safetensors_torch.save_model(net, str(tmp_path / "net.safetensors"))
    torch.save(net.state_dict(), str(tmp_path / "net.pt"))
    a, b = totals(read(tmp_path / "net.safetensors")), totals(read(tmp_path / "net.pt"))
    assert (a.params, a.buffers, a.n_bytes) == (b.params, b.buffers, b.n_bytes)
    assert a.params == sum(p.numel() for p in net.parameters())
    roles_a = {(la.path, t.name): (t.role, t.is_param) for la in read(tmp_path / "net.safetensors").walk() for t in la.tensors}
    roles_b = {(la.path, t.name): (t.role, t.is_param) for la in read(tmp_path / "net.pt").walk() for t in la.tensors}
    assert {k: v for k, v in roles_b.items() if k in roles_a} == roles_a


def test_peft_adapter_folder(tmp_path: Path) -> None:
    r, d = 4, 16
    tensors = {}
    for i in range(2):
        p = f"base_model.model.model.layers.{i}.self_attn.q_proj."
        tensors[p + "lora_A.weight"] = torch.zeros(r, d)
        tensors[p + "lora_B.weight"] = torch.zeros(d, r)
    safetensors_torch.save_file(tensors, str(tmp_path / "adapter_model.safetensors"))
    (tmp_path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": "org/base", "r": r, "lora_alpha": 8,
        "target_modules": ["q_proj"]}))
    a = read(tmp_path)
    assert totals(a).params == 2 * (r * d + d * r)
    assert a.metadata["adapter.r"] == "4" and a.metadata["adapter.target_modules"] == "q_proj"
    assert any("adapter" in n and "org/base" in n for n in a.notes)
    lora_a = a.find("base_model.model.model.layers.0.self_attn.q_proj.lora_A")
    assert lora_a is not None and lora_a.tensors[0].why.startswith("LoRA down projection")
