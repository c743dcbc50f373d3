"""Fuzzing the safetensors and GGUF readers: mutated real files either parse or raise a paramscope error.

The base files are written by the formats' own libraries; hypothesis flips bytes, truncates,
splices and rewrites header values. Any other exception, or a slow parse, fails the test.
"""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
np = pytest.importorskip("numpy")
gguf = pytest.importorskip("gguf")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

from paramscope.analysis import totals  # noqa: E402
from paramscope.core.errors import ParamscopeError  # noqa: E402
from paramscope.readers import gguf as gguf_file
from paramscope.readers import safetensors as safetensors_file

FUZZ = settings(
    max_examples=250,
    deadline=None,  # no wall-clock limits in tests: budgets are in bench/
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _safetensors_base(folder: Path) -> bytes:
    p = folder / "base.safetensors"
    safetensors_numpy.save_file(
        {
            "model.embed_tokens.weight": np.zeros((6, 4), np.float16),
            "model.layers.0.mlp.up_proj.weight": np.zeros((8, 4), np.float32),
            "model.layers.0.mlp.up_proj.bias": np.zeros((8,), np.int8),
            "model.norm.weight": np.zeros((4,), np.float64),
        },
        str(p),
        metadata={"format": "np", "k": "v"},
    )
    return p.read_bytes()


def _gguf_base(folder: Path) -> bytes:
    p = folder / "base.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_token_list(["a", "bb", "ccc", "d"])
    w.add_array("test.nested", [[1, 2], [3]])
    w.add_float32("test.f", 0.5)
    w.add_bool("test.b", True)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    x = np.zeros((2, 32), np.float32)
    w.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.zeros((32,), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p.read_bytes()


def _parse(reader: Any, path: Path, raw: bytes) -> None:
    path.write_bytes(raw)
    try:
        a = reader.read(path)
    except ParamscopeError as e:
        assert str(e)
        return
    totals(a)  # a file that parses must give consistent totals


@hs.composite
def mutations(draw: hs.DrawFn, base: bytes) -> bytes:
    raw = bytearray(base)
    for _ in range(draw(hs.integers(1, 4))):
        kind = draw(hs.sampled_from(["flip", "set", "truncate", "splice", "dup"]))
        if not raw:
            break
        pos = draw(hs.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[pos] ^= 1 << draw(hs.integers(0, 7))
        elif kind == "set":
            raw[pos] = draw(hs.sampled_from([0, 0x7F, 0x80, 0xFF, ord("{"), ord('"'), ord("9")]))
        elif kind == "truncate":
            del raw[pos:]
        elif kind == "splice":
            raw[pos:pos] = draw(hs.binary(min_size=1, max_size=16))
        else:
            end = min(len(raw), pos + draw(hs.integers(1, 64)))
            raw[pos:pos] = raw[pos:end]
    return bytes(raw)


@hs.composite
def header_mutations(draw: hs.DrawFn, base: bytes) -> bytes:
    # Mutate inside the header (where parsing decisions are made) far more often.
    n = struct.unpack("<Q", base[:8])[0]
    raw = bytearray(base)
    for _ in range(draw(hs.integers(1, 3))):
        pos = draw(hs.integers(0, 8 + n - 1))
        raw[pos] = draw(hs.integers(0, 255))
    return bytes(raw)


def test_fuzz_safetensors_bytes(workdir: Path) -> None:
    base = _safetensors_base(workdir)

    @FUZZ
    @given(mutations(base) | header_mutations(base))
    def run(raw: bytes) -> None:
        _parse(safetensors_file, workdir / "fuzz.safetensors", raw)

    run()


_json = hs.recursive(
    hs.none() | hs.booleans() | hs.integers(-(2**70), 2**70) | hs.floats(allow_nan=False) | hs.text(max_size=8),
    lambda inner: hs.lists(inner, max_size=4) | hs.dictionaries(hs.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def test_fuzz_safetensors_header_values(workdir: Path) -> None:
    @FUZZ
    @given(
        hs.sampled_from(["dtype", "shape", "data_offsets", "__entry__", "__metadata__"]),
        _json,
    )
    def run(field: str, value: Any) -> None:
        header: dict[str, Any] = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
        if field == "__metadata__":
            header["__metadata__"] = value
        elif field == "__entry__":
            header["a"] = value
        else:
            header["a"][field] = value
        raw = json.dumps(header).encode()
        _parse(safetensors_file, workdir / "json.safetensors", struct.pack("<Q", len(raw)) + raw + b"\0" * 8)

    run()


def test_fuzz_gguf_bytes(workdir: Path) -> None:
    base = _gguf_base(workdir)

    @FUZZ
    @given(mutations(base))
    def run(raw: bytes) -> None:
        _parse(gguf_file, workdir / "fuzz.gguf", raw)

    run()


def test_fuzz_gguf_integer_fields(workdir: Path) -> None:
    # Overwrite one aligned 4- or 8-byte field of the header with an extreme value.
    base = _gguf_base(workdir)
    header_end = gguf_file.read_header(workdir / "base.gguf").data_start

    @FUZZ
    @given(hs.integers(4, header_end - 8), hs.sampled_from([4, 8]),
           hs.sampled_from([0, 1, 4, 5, 31, 2**31, 2**32 - 1, 2**40, 2**63, 2**64 - 1]))
    def run(pos: int, width: int, value: int) -> None:
        raw = bytearray(base)
        raw[pos : pos + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
        _parse(gguf_file, workdir / "int.gguf", bytes(raw))

    run()


def test_fuzz_index_paths_never_leave_the_folder(workdir: Path) -> None:
    # Shard names built from path syntax: any that parses must name a file inside the folder.
    folder = workdir / "idx"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    base = _safetensors_base(workdir)
    for name in ("a.safetensors", "sub/b.safetensors"):
        (folder / name).write_bytes(base)
    (workdir / "outside.safetensors").write_bytes(base)
    tensor = "model.norm.weight"
    parts = hs.sampled_from(["..", ".", "", "sub", "a.safetensors", "b.safetensors", "outside.safetensors",
                             "idx", "/", "\\", "\x00", "C:", "~", "%2e%2e"])

    @FUZZ
    @given(hs.lists(parts, min_size=1, max_size=6))
    def run(pieces: list[str]) -> None:
        rel = "/".join(pieces)
        index = folder / "model.safetensors.index.json"
        index.write_text(json.dumps({"weight_map": {tensor: rel}}))
        try:
            a = safetensors_file.read(index)
        except ParamscopeError:
            return
        resolved = (folder / rel).resolve()
        assert str(resolved).startswith(str(folder.resolve()) + "/"), rel
        assert totals(a).n_tensors == 1

    run()
