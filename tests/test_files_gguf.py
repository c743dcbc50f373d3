"""GGUF reader: tensors, elements, bytes and metadata equal what the gguf package reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.analysis import totals
from paramscope.core import Role
from paramscope.core.dtypes import lookup_dtype
from paramscope.readers import read, reader_for
from paramscope.readers import gguf as g

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")
Q = gguf.GGMLQuantizationType
SIZES = gguf.GGML_QUANT_SIZES

SRC = str(Path(__file__).resolve().parents[1] / "src")

# gguf-py still lists Q8_1 with the old float layout (40 bytes); ggml's block_q8_1 is 36.
GGUF_PY_STALE = {Q.Q8_1}


def test_type_table_matches_gguf_package() -> None:
    for q in Q:
        assert q.value in g.GGML_TYPES, q.name
        dt = lookup_dtype(g.GGML_TYPES[q.value])
        assert dt is not None, q.name
        if q in GGUF_PY_STALE:
            assert (dt.block_elements, dt.block_bytes) == (32, 36)
        else:
            assert (dt.block_elements, max(dt.block_bytes, int(dt.bits) // 8)) == SIZES[q], q.name


def test_file_type_names_match_gguf_package() -> None:
    for ft in gguf.LlamaFileType:
        assert g.FILE_TYPES[ft.value] == ft.name


def _write(path: Path, tensors: dict[str, tuple[object, int]], kv: dict[str, object] | None = None,
           arch: str = "llama") -> Path:
    """Write a GGUF file: name -> (array or (rows, cols) for raw quantised bytes, type id)."""
    w = gguf.GGUFWriter(str(path), arch)
    for k, v in (kv or {}).items():
        if isinstance(v, list):
            w.add_array(k, v)
        elif isinstance(v, str):
            w.add_string(k, v)
        elif isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        else:
            w.add_uint32(k, int(v))  # type: ignore[call-overload]
    for name, (data, type_id) in tensors.items():
        q = Q(type_id)
        if isinstance(data, tuple):
            rows, cols = data
            be, bb = SIZES[q]
            raw = np.zeros((rows, cols // be * bb), dtype=np.uint8)
            w.add_tensor(name, raw, raw_dtype=q)
        else:
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _compare(path: Path) -> None:
    oracle = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    h = g.read_header(path)
    assert [t.name for t in h.tensors] == list(oracle)
    for t in h.tensors:
        o = oracle[t.name]
        assert list(t.dims) == [int(d) for d in o.shape], t.name
        assert t.shape == tuple(reversed([int(d) for d in o.shape]))
        assert t.type_id == int(o.tensor_type)
        assert t.n_bytes == int(o.n_bytes), t.name
        assert t.offset + h.data_start == int(o.data_offset)
    t = totals(read(path))
    assert t.params == sum(int(o.n_elements) for o in oracle.values())
    assert t.n_bytes == sum(int(o.n_bytes) for o in oracle.values())


def test_every_quant_type_counts_like_gguf(tmp_path: Path) -> None:
    tensors: dict[str, tuple[object, int]] = {}
    for q in Q:
        if q in GGUF_PY_STALE:
            continue
        be, _ = SIZES[q]
        tensors[f"t_{q.name.lower()}.weight"] = ((3, be * 2), q.value)
    _compare(_write(tmp_path / "all.gguf", tensors))


def test_real_quantised_data(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((4, 256)).astype(np.float32)
    tensors: dict[str, tuple[object, int]] = {"f32.weight": (x, Q.F32.value), "f16.weight": (x.astype(np.float16), Q.F16.value)}
    w = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "llama")
    for q in (Q.Q4_0, Q.Q8_0, Q.Q5_1, Q.TQ2_0, Q.MXFP4, Q.BF16):
        try:
            w.add_tensor(f"q_{q.name.lower()}.weight", gguf.quants.quantize(x, q), raw_dtype=q)
        except NotImplementedError:
            continue
    for name, (data, _) in tensors.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _compare(tmp_path / "q.gguf")


def _llama(path: Path, *, tied: bool, n_layers: int = 2, vocab: int = 64, dim: int = 256) -> Path:
    tensors: dict[str, tuple[object, int]] = {
        "token_embd.weight": ((vocab, dim), Q.Q8_0.value),
        "output_norm.weight": (np.ones(dim, np.float32), Q.F32.value),
    }
    if not tied:
        tensors["output.weight"] = ((vocab, dim), Q.Q6_K.value)
    for i in range(n_layers):
        p = f"blk.{i}."
        tensors |= {
            p + "attn_norm.weight": (np.ones(dim, np.float32), Q.F32.value),
            p + "attn_q.weight": ((dim, dim), Q.Q4_K.value),
            p + "attn_k.weight": ((dim // 4, dim), Q.Q4_K.value),
            p + "attn_v.weight": ((dim // 4, dim), Q.Q6_K.value),
            p + "attn_output.weight": ((dim, dim), Q.Q4_K.value),
            p + "ffn_norm.weight": (np.ones(dim, np.float32), Q.F32.value),
            p + "ffn_gate.weight": ((2 * dim, dim), Q.Q4_K.value),
            p + "ffn_up.weight": ((2 * dim, dim), Q.Q4_K.value),
            p + "ffn_down.weight": ((dim, 2 * dim), Q.Q6_K.value),
        }
    kv: dict[str, object] = {
        "general.name": "tiny-llama",
        "llama.context_length": 128,
        "llama.block_count": n_layers,
        "llama.embedding_length": dim,
        "llama.attention.head_count": 8,
        "llama.attention.head_count_kv": 2,
        "general.file_type": 15,
        "general.quantization_version": 2,
        "tokenizer.ggml.tokens": [f"tok{i}" for i in range(vocab)],
        "tokenizer.ggml.scores": [0.5] * vocab,
        "test.nested": [[1, 2], [3]],
        "test.flag": True,
        "test.ratio": 0.25,
        "tokenizer.chat_template": "x" * 1000,
    }
    return _write(path, tensors, kv)


def test_tiny_llama_tree_metadata_and_tie(tmp_path: Path) -> None:
    path = _llama(tmp_path / "tiny.gguf", tied=True)
    _compare(path)
    assert reader_for(path) is g
    a = read(path)
    assert a.framework == "gguf" and a.name == "tiny-llama"
    m = a.metadata
    assert m["general.architecture"] == "llama"
    assert m["llama.block_count"] == "2"
    assert m["llama.attention.head_count_kv"] == "2"
    assert m["general.file_type"] == "15 (MOSTLY_Q4_K_M)"
    assert m["tokenizer.ggml.tokens"] == "array[64] of string"
    assert m["tokenizer.ggml.scores"] == "array[64] of float32"
    assert m["test.nested"] == "[[1, 2], [3]]"
    assert m["test.flag"] == "true"
    assert len(m["tokenizer.chat_template"]) < 300
    assert m["gguf.version"] == "3"
    assert any("output.weight is not stored" in n for n in a.notes)
    q = a.find("blk.0.attn_q")
    assert q is not None and q.type == "Linear"
    w = q.tensors[0]
    assert w.shape == (256, 256) and w.dtype == "q4_k" and w.role is Role.TRAINABLE
    assert w.n_bytes == 256 * 256 // 256 * 144
    assert w.why.startswith("query projection")
    assert "blocks of 256 weights in 144 bytes (4.5 bits per weight)" in w.why
    k = a.find("blk.0.attn_k")
    assert k is not None and k.tensors[0].shape == (64, 256)  # (out, in), PyTorch order
    emb = a.find("token_embd")
    assert emb is not None and emb.type == "Embedding"
    norm = a.find("blk.1.ffn_norm")
    assert norm is not None and norm.type == "RMSNorm"


def test_untied_has_output_and_no_tie_note(tmp_path: Path) -> None:
    path = _llama(tmp_path / "untied.gguf", tied=False)
    _compare(path)
    a = read(path)
    assert not any("tied" in n for n in a.notes)
    out = a.find("output")
    assert out is not None and out.tensors[0].shape == (64, 256)


def test_scalar_metadata_equals_gguf_fields(tmp_path: Path) -> None:
    path = _llama(tmp_path / "m.gguf", tied=True)
    fields = gguf.GGUFReader(str(path)).fields
    h = g.read_header(path)
    for key in ("llama.context_length", "llama.embedding_length", "general.quantization_version"):
        assert h.metadata[key] == str(fields[key].contents())
    assert h.metadata["general.name"] == fields["general.name"].contents()


def test_version_2_is_read(tmp_path: Path) -> None:
    path = _llama(tmp_path / "v2.gguf", tied=True)
    raw = bytearray(path.read_bytes())
    raw[4:8] = (2).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    assert read(path).metadata["gguf.version"] == "2"


def test_custom_alignment(tmp_path: Path) -> None:
    w = gguf.GGUFWriter(str(tmp_path / "al.gguf"), "llama")
    w.add_custom_alignment(64)
    w.add_tensor("a.weight", np.zeros((3, 5), np.float32))
    w.add_tensor("b.weight", np.zeros((7,), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _compare(tmp_path / "al.gguf")
    assert g.read_header(tmp_path / "al.gguf").alignment == 64


def test_reading_imports_no_framework(tmp_path: Path) -> None:
    path = _llama(tmp_path / "x.gguf", tied=True)
    code = (
        "import sys; from paramscope.readers import read; from paramscope.analysis import totals;"
        f"totals(read({str(path)!r}));"
        "bad = [m for m in ('torch', 'keras', 'tensorflow', 'numpy', 'gguf', 'jax') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _split_model(folder: Path) -> list[Path]:
    w = gguf.GGUFWriter(str(folder / "m.gguf"), "llama", split_max_tensors=3)
    w.add_block_count(4)
    w.add_tensor("token_embd.weight", np.zeros((10, 8), np.float32))
    for i in range(4):
        w.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((8, 8), np.float16))
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.zeros((8,), np.float32))
    w.add_tensor("output_norm.weight", np.zeros((8,), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sorted(folder.glob("m-*-of-*.gguf"))


def test_split_gguf_reads_every_split(tmp_path: Path) -> None:
    files = _split_model(tmp_path)
    assert len(files) == 4
    oracle = [t for f in files for t in gguf.GGUFReader(str(f)).tensors]
    for f in files:  # any split names the whole model
        a = read(f)
        t = totals(a)
        assert t.params == sum(int(o.n_elements) for o in oracle)
        assert t.n_bytes == sum(int(o.n_bytes) for o in oracle)
        assert t.complete and a.name == "m"
        assert a.metadata["general.architecture"] == "llama"
        assert any("Read 4 of 4 splits" in n for n in a.notes)
        assert any("output.weight is not stored" in n for n in a.notes)


def test_split_gguf_missing_split_is_incomplete(tmp_path: Path) -> None:
    files = _split_model(tmp_path)
    files[2].unlink()
    a = read(files[0])
    assert not totals(a).complete
    assert any(files[2].name in n for n in a.notes)
    assert not any("output.weight is not stored" in n for n in a.notes)


def test_split_gguf_mismatched_split_number_refused(tmp_path: Path) -> None:
    files = _split_model(tmp_path)
    files[1].rename(tmp_path / "tmp.gguf")
    files[2].rename(files[1])
    (tmp_path / "tmp.gguf").rename(files[2])
    with pytest.raises(g.CorruptFileError, match="split metadata"):
        read(files[0])
