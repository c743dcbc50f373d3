"""Bytes of packed and variable-size dtypes, against torch's and safetensors' own sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from paramscope.analysis import totals
from paramscope.core.dtypes import canonical_dtype, n_bytes
from paramscope.readers import read

torch = pytest.importorskip("torch")

# torch's sub-byte "shell" dtypes (torch.uint4, torch.int2...) take one byte per element in
# torch, while the same names are packed in ONNX, whose layout the dtype table follows.
_SHELL = {f"{kind}{bits}" for kind in ("int", "uint") for bits in range(1, 8)}


def _torch_dtypes() -> list[object]:
    found = {v for v in vars(torch).values() if isinstance(v, torch.dtype)}
    return sorted(found, key=str)


def test_every_torch_dtype_paramscope_knows_has_torchs_size() -> None:
    checked = 0
    for dtype in _torch_dtypes():
        name = canonical_dtype(str(dtype))
        if name in _SHELL or n_bytes(name, 1) is None:
            continue
        try:
            t = torch.empty(7, dtype=dtype)
        except (RuntimeError, TypeError):  # quantised dtypes need a quantiser to allocate
            continue
        assert n_bytes(name, t.numel()) == t.untyped_storage().nbytes(), dtype
        checked += 1
    assert checked >= 20


def test_float4_e2m1fn_x2_is_one_byte_per_torch_element(tmp_path: Path) -> None:
    w = torch.empty(3, 4, dtype=torch.float4_e2m1fn_x2)
    assert n_bytes(canonical_dtype(str(w.dtype)), w.numel()) == w.untyped_storage().nbytes() == 12
    torch.save({"packed.w": w}, tmp_path / "m.pt")
    t = totals(read(str(tmp_path / "m.pt")))
    assert (t.n_bytes, t.params + t.buffers) == (w.untyped_storage().nbytes(), w.numel())


def test_float4_in_safetensors_counts_values_and_bytes(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    w = torch.empty(3, 4, dtype=torch.float4_e2m1fn_x2)
    path = tmp_path / "m.safetensors"
    safetensors_torch.save_file({"packed.w": w}, str(path))
    t = totals(read(str(path)))
    # safetensors stores F4 with the shape in 4-bit values (3 x 8): the file's own count.
    assert t.n_bytes == w.untyped_storage().nbytes()
    assert t.params + t.buffers == 2 * w.numel()
    assert safetensors_torch.load_file(str(path))["packed.w"].shape == w.shape


def test_string_bytes_are_unknown_not_zero() -> None:
    assert n_bytes("string", 5) is None
    assert n_bytes("string", None) is None
