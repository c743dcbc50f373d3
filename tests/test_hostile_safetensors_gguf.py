"""Hostile safetensors and GGUF files: each is refused with the right error, fast, in little memory.

Every file is built here byte by byte. A refusal must be a paramscope error whose message names
the file and says what is wrong and where (byte offset or tensor), must not allocate what the
file claims, and must write nothing.
"""

from __future__ import annotations

import builtins
import json
import os
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paramscope.core.errors import (
    CorruptFileError,
    ParamscopeError,
    UnsafeFileError,
    UnsupportedFormatError,
)
from paramscope.readers import read
from paramscope.readers import gguf as gguf_file
from paramscope.readers import safetensors as safetensors_file

# --- helpers ---------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def refuses(
    path: Path,
    error: type[ParamscopeError],
    *needles: str,
    reader: Callable[[Path], Any] = read,
) -> ParamscopeError:
    """Read ``path`` and check the refusal: type, message, memory, nothing written."""
    before = _snapshot(path.parent)
    tracemalloc.start()
    try:
        with pytest.raises(error) as info:
            reader(path)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    message = str(info.value)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    assert "\n" not in message
    assert peak < 32 * 1024 * 1024, f"peak {peak:,} bytes"
    assert _snapshot(path.parent) == before
    return info.value


def st_file(path: Path, header: bytes | dict[str, Any] | str, data: bytes = b"", length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else (header if isinstance(header, str) else json.dumps(header)).encode()
    n = len(raw) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + raw + data)
    return path


def entry(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# --- safetensors -------------------------------------------------------------------------------


def test_st_header_length_2_pow_60(tmp_path: Path) -> None:
    refuses(st_file(tmp_path / "a.safetensors", b"{}", length=2**60), CorruptFileError, "header length", "bytes 0-7")


def test_st_header_longer_than_file(tmp_path: Path) -> None:
    refuses(st_file(tmp_path / "a.safetensors", b"{}", length=5000), CorruptFileError, "past the end")


def test_st_file_shorter_than_length_field(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"\x02\x00\x00")
    refuses(tmp_path / "a.safetensors", CorruptFileError, "too short")


def test_st_header_not_json(tmp_path: Path) -> None:
    refuses(st_file(tmp_path / "a.safetensors", b"{not json"), CorruptFileError, "invalid JSON")
    refuses(st_file(tmp_path / "b.safetensors", b"[1, 2]"), CorruptFileError, "not a JSON object")
    refuses(st_file(tmp_path / "c.safetensors", b"{\"a\": \xff}"), CorruptFileError, "UTF-8")


def test_st_duplicate_keys(tmp_path: Path) -> None:
    e = json.dumps(entry("F32", [1], 0, 4))
    refuses(st_file(tmp_path / "a.safetensors", f'{{"w": {e}, "w": {e}}}', b"\0" * 4), CorruptFileError, "duplicate")


def test_st_deep_nesting(tmp_path: Path) -> None:
    deep = '{"__metadata__": ' + "[" * 200_000 + "]" * 200_000 + "}"
    refuses(st_file(tmp_path / "a.safetensors", deep), CorruptFileError, "nested too deeply")


def test_st_metadata_value_not_string(tmp_path: Path) -> None:
    refuses(st_file(tmp_path / "a.safetensors", {"__metadata__": {"format": 1}}), CorruptFileError, "'format'", "only strings")


def test_st_offsets_overlap(tmp_path: Path) -> None:
    h = {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}
    refuses(st_file(tmp_path / "a.safetensors", h, b"\0" * 12), CorruptFileError, "overlap", "'b'")


def test_st_offsets_hole(tmp_path: Path) -> None:
    h = {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 16, 24)}
    refuses(st_file(tmp_path / "a.safetensors", h, b"\0" * 24), CorruptFileError, "belong to no tensor", "'b'")


def test_st_trailing_bytes(tmp_path: Path) -> None:
    refuses(st_file(tmp_path / "a.safetensors", {"a": entry("F32", [2], 0, 8)}, b"\0" * 9), CorruptFileError, "after the last tensor")


def test_st_past_eof_truncated(tmp_path: Path) -> None:
    h = {"a": entry("F32", [2], 0, 8), "b": entry("F32", [1000], 8, 4008)}
    refuses(st_file(tmp_path / "a.safetensors", h, b"\0" * 100), CorruptFileError, "truncated", "'b'")


def test_st_offsets_do_not_match_dtype_and_shape(tmp_path: Path) -> None:
    h = {"a": entry("BF16", [3, 4], 0, 48)}
    refuses(st_file(tmp_path / "a.safetensors", h, b"\0" * 48), CorruptFileError, "needs 24", "'a'")


def test_st_shape_product_overflow(tmp_path: Path) -> None:
    h = {"a": entry("F32", [2**40, 2**40, 2**40], 0, 8)}
    refuses(st_file(tmp_path / "a.safetensors", h, b"\0" * 8), CorruptFileError, "2**64", "'a'")


@pytest.mark.parametrize("shape", [[-1], [1.5], ["3"], [True], "4"])
def test_st_bad_shape(tmp_path: Path, shape: object) -> None:
    h = {"a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 4]}}
    refuses(st_file(tmp_path / "a.safetensors", h, b"\0" * 4), CorruptFileError, "shape")


def test_st_unknown_dtype(tmp_path: Path) -> None:
    refuses(st_file(tmp_path / "a.safetensors", {"a": entry("F128", [1], 0, 16)}, b"\0" * 16), CorruptFileError, "unknown dtype 'F128'")


def test_st_sub_byte_not_whole_bytes(tmp_path: Path) -> None:
    refuses(st_file(tmp_path / "a.safetensors", {"a": entry("F4", [3], 0, 2)}, b"\0" * 2), CorruptFileError, "whole bytes")


@pytest.fixture
def record_opens(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.path.realpath(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else str(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.path.realpath(os.fspath(path)))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    yield opened


def _outside_shard(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.safetensors"
    st_file(secret, {"a": entry("F32", [1], 0, 4)}, b"\0" * 4)
    return secret


@pytest.mark.parametrize("kind", ["dotdot", "etc_passwd", "absolute", "symlink"])
def test_st_index_leaving_folder_refused_without_opening(
    tmp_path: Path, kind: str, record_opens: list[str]
) -> None:
    secret = _outside_shard(tmp_path)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    st_file(folder / "ok.safetensors", {"b": entry("F32", [1], 0, 4)}, b"\0" * 4)
    target = {
        "dotdot": "../secret.safetensors",
        "etc_passwd": "../../etc/passwd",
        "absolute": str(secret),
        "symlink": "link.safetensors",
    }[kind]
    if kind == "symlink":
        (folder / "link.safetensors").symlink_to(secret)
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"b": "ok.safetensors", "a": target}}))
    record_opens.clear()
    err = refuses(index, UnsafeFileError, "leaves the checkpoint folder" if kind != "symlink" else "symlink out")
    assert "weight_map['a']" in str(err)
    assert str(secret) not in record_opens
    assert "/etc/passwd" not in record_opens
    assert not any(p.endswith("ok.safetensors") for p in record_opens)  # nothing opened before the check


def test_st_symlink_out_of_folder_scan_is_not_followed_for_index(tmp_path: Path) -> None:
    # A weight map naming a path with a NUL byte is refused as unsafe, not passed to the OS.
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "x\u0000.safetensors"}}))
    refuses(folder / "model.safetensors.index.json", UnsafeFileError, "leaves")


def test_st_index_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "m.safetensors.index.json").write_text("[]")
    refuses(tmp_path / "m.safetensors.index.json", CorruptFileError, "weight_map")


def test_st_index_missing_shard(tmp_path: Path) -> None:
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "nope.safetensors"}}))
    refuses(tmp_path / "m.safetensors.index.json", CorruptFileError, "does not exist")


# --- GGUF --------------------------------------------------------------------------------------


def gstr(s: str | bytes, length: int | None = None) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def gguf_bytes(
    *,
    version: int = 3,
    kvs: bytes = b"",
    n_kv: int = 0,
    infos: bytes = b"",
    n_tensors: int = 0,
    data: bytes = b"",
    magic: bytes = b"GGUF",
) -> bytes:
    head = magic + struct.pack("<IQQ", version, n_tensors, n_kv) + kvs + infos
    return head + b"\0" * (-len(head) % 32) + data


def info(name: str, dims: list[int], type_id: int = 0, offset: int = 0, n_dims: int | None = None) -> bytes:
    return gstr(name) + struct.pack("<I", len(dims) if n_dims is None else n_dims) + b"".join(
        struct.pack("<Q", d) for d in dims
    ) + struct.pack("<IQ", type_id, offset)


def gfile(tmp_path: Path, raw: bytes, name: str = "m.gguf") -> Path:
    p = tmp_path / name
    p.write_bytes(raw)
    return p


def test_gguf_valid_baseline(tmp_path: Path) -> None:
    p = gfile(tmp_path, gguf_bytes(kvs=gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama"),
                                   n_kv=1, infos=info("a.weight", [4, 2]), n_tensors=1, data=b"\0" * 32))
    assert read(p).metadata["general.architecture"] == "llama"


def test_gguf_tensor_count_10_pow_12(tmp_path: Path) -> None:
    refuses(gfile(tmp_path, gguf_bytes(n_tensors=10**12)), CorruptFileError, "tensor count 1,000,000,000,000", "byte 8")


def test_gguf_metadata_count_lies(tmp_path: Path) -> None:
    refuses(gfile(tmp_path, gguf_bytes(n_kv=2**63)), CorruptFileError, "metadata count")


def test_gguf_string_length_lies(tmp_path: Path) -> None:
    kvs = gstr("general.name", length=2**62)
    refuses(gfile(tmp_path, gguf_bytes(kvs=kvs, n_kv=1)), CorruptFileError, "claims", "byte 24")


def test_gguf_string_value_length_lies(tmp_path: Path) -> None:
    kvs = gstr("general.name") + struct.pack("<I", 8) + struct.pack("<Q", 10**15)
    refuses(gfile(tmp_path, gguf_bytes(kvs=kvs, n_kv=1)), CorruptFileError, "'general.name'", "claims")


def test_gguf_array_length_lies(tmp_path: Path) -> None:
    kvs = gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 10**12)
    refuses(gfile(tmp_path, gguf_bytes(kvs=kvs, n_kv=1)), CorruptFileError, "array elements", "tokenizer.ggml.tokens")


def test_gguf_nested_array_depth(tmp_path: Path) -> None:
    kvs = gstr("deep") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 50 + struct.pack("<IQ", 4, 0)
    refuses(gfile(tmp_path, gguf_bytes(kvs=kvs, n_kv=1)), CorruptFileError, "nests arrays")


def test_gguf_unknown_value_type(tmp_path: Path) -> None:
    kvs = gstr("x") + struct.pack("<I", 77)
    refuses(gfile(tmp_path, gguf_bytes(kvs=kvs, n_kv=1)), CorruptFileError, "unknown value type 77")


def test_gguf_n_dims_100(tmp_path: Path) -> None:
    infos = info("a.weight", [1] * 100)
    refuses(gfile(tmp_path, gguf_bytes(infos=infos, n_tensors=1)), CorruptFileError, "100 dims", "at most 4")


def test_gguf_dims_overflow(tmp_path: Path) -> None:
    infos = info("a.weight", [2**40, 2**40])
    refuses(gfile(tmp_path, gguf_bytes(infos=infos, n_tensors=1)), CorruptFileError, "overflow")


def test_gguf_tensor_offset_past_eof(tmp_path: Path) -> None:
    infos = info("a.weight", [4, 2], offset=2**40)
    refuses(gfile(tmp_path, gguf_bytes(infos=infos, n_tensors=1, data=b"\0" * 32)), CorruptFileError, "'a.weight'", "past the end")


def test_gguf_tensor_data_truncated(tmp_path: Path) -> None:
    infos = info("a.weight", [256, 4], type_id=12)  # q4_k: 4 blocks of 144 bytes
    refuses(gfile(tmp_path, gguf_bytes(infos=infos, n_tensors=1, data=b"\0" * 100)), CorruptFileError, "truncated")


def test_gguf_overlapping_tensors(tmp_path: Path) -> None:
    infos = info("a.weight", [16]) + info("b.weight", [16], offset=32)
    refuses(gfile(tmp_path, gguf_bytes(infos=infos, n_tensors=2, data=b"\0" * 128)), CorruptFileError, "overlaps")


def test_gguf_unknown_ggml_type(tmp_path: Path) -> None:
    refuses(gfile(tmp_path, gguf_bytes(infos=info("a", [4], type_id=99), n_tensors=1)), CorruptFileError, "unknown ggml type 99")


def test_gguf_row_not_multiple_of_block(tmp_path: Path) -> None:
    refuses(gfile(tmp_path, gguf_bytes(infos=info("a", [100], type_id=2), n_tensors=1)), CorruptFileError, "multiple of the 32-element")


def test_gguf_duplicate_names(tmp_path: Path) -> None:
    infos = info("a", [8]) + info("a", [8], offset=32)
    refuses(gfile(tmp_path, gguf_bytes(infos=infos, n_tensors=2, data=b"\0" * 64)), CorruptFileError, "duplicate tensor name")


def test_gguf_bad_alignment(tmp_path: Path) -> None:
    kvs = gstr("general.alignment") + struct.pack("<II", 4, 24)
    refuses(gfile(tmp_path, gguf_bytes(kvs=kvs, n_kv=1)), CorruptFileError, "power-of-two")


def test_gguf_bad_magic(tmp_path: Path) -> None:
    refuses(gfile(tmp_path, gguf_bytes(magic=b"GGUX")), CorruptFileError, "not a GGUF file")


@pytest.mark.parametrize(("version", "needle"), [(1, "version 1"), (99, "version 99"), (0, "version 0")])
def test_gguf_versions_refused(tmp_path: Path, version: int, needle: str) -> None:
    refuses(gfile(tmp_path, gguf_bytes(version=version)), UnsupportedFormatError, needle)


def test_gguf_big_endian_refused(tmp_path: Path) -> None:
    raw = b"GGUF" + struct.pack(">IQQ", 3, 0, 0)
    refuses(gfile(tmp_path, raw), UnsupportedFormatError, "big-endian")


def test_gguf_truncated_everywhere(tmp_path: Path) -> None:
    kvs = gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama")
    full = gguf_bytes(kvs=kvs, n_kv=1, infos=info("a.weight", [4, 2]), n_tensors=1, data=b"\0" * 32)
    for cut in range(0, len(full) - 1, 7):
        p = gfile(tmp_path, full[:cut], name=f"t{cut}.gguf")
        with pytest.raises(ParamscopeError):
            gguf_file.read(p)


def test_gguf_names_with_control_characters_survive(tmp_path: Path) -> None:
    p = gfile(tmp_path, gguf_bytes(infos=info("blk\x1b[31m.w\x00", [4]), n_tensors=1, data=b"\0" * 32))
    a = read(p)
    assert a.layers[0].name == "blk\x1b[31m" and a.layers[0].tensors[0].name == "w\x00"


def test_safetensors_reader_direct_on_gguf_is_refused(tmp_path: Path) -> None:
    p = gfile(tmp_path, gguf_bytes(), name="m.safetensors")
    refuses(p, CorruptFileError, reader=safetensors_file.read)


def test_st_hub_cache_blob_symlinks_are_allowed(tmp_path: Path) -> None:
    # The Hugging Face cache links snapshot files to the repository's own blob store.
    repo = tmp_path / "hub" / "models--org--tiny"
    blobs, snap = repo / "blobs", repo / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    st_file(blobs / "1111", {"a": entry("F32", [2], 0, 8)}, b"\0" * 8)
    st_file(blobs / "2222", {"b": entry("F32", [3], 0, 12)}, b"\0" * 12)
    (snap / "model-00001-of-00002.safetensors").symlink_to(blobs / "1111")
    (snap / "model-00002-of-00002.safetensors").symlink_to(blobs / "2222")
    wm = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (snap / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    from paramscope.analysis import totals

    assert totals(read(snap)).params == 5
    # ... but a link from the snapshot to another repository's blobs is refused.
    other = tmp_path / "hub" / "models--org--other" / "blobs"
    other.mkdir(parents=True)
    st_file(other / "3333", {"b": entry("F32", [3], 0, 12)}, b"\0" * 12)
    (snap / "model-00002-of-00002.safetensors").unlink()
    (snap / "model-00002-of-00002.safetensors").symlink_to(other / "3333")
    refuses(snap / "model.safetensors.index.json", UnsafeFileError, "symlink out")


def test_gguf_string_inside_long_array_lies(tmp_path: Path) -> None:
    # Element 40 of a 100-string array claims more bytes than the file has left.
    items = [gstr(f"t{i}") for i in range(40)] + [struct.pack("<Q", 2**50)] + [gstr("x")] * 59
    kvs = gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 100) + b"".join(items)
    refuses(gfile(tmp_path, gguf_bytes(kvs=kvs, n_kv=1)), CorruptFileError, "tokenizer.ggml.tokens", "claims")
