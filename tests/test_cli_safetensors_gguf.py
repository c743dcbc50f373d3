"""The command line on safetensors and GGUF files: JSON output, one-line errors, escaped names."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _st(path: Path, header: dict[str, object], data_bytes: int, length: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + b"\0" * data_bytes)
    return path


def _good(tmp_path: Path) -> Path:
    return _st(
        tmp_path / "m.safetensors",
        {
            "__metadata__": {"format": "pt"},
            "fc.weight": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0, 24]},
            "fc.bias": {"dtype": "F32", "shape": [3], "data_offsets": [24, 36]},
            "bn.running_mean": {"dtype": "F32", "shape": [3], "data_offsets": [36, 48]},
        },
        48,
    )


def _gguf(path: Path) -> Path:
    def s(x: str) -> bytes:
        return struct.pack("<Q", len(x.encode())) + x.encode()

    kv = s("general.architecture") + struct.pack("<I", 8) + s("llama")
    info = s("token_embd.weight") + struct.pack("<IQQIQ", 2, 8, 4, 0, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + kv + info
    path.write_bytes(head + b"\0" * (-len(head) % 32) + b"\0" * 128)
    return path


def test_summary_json_of_safetensors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(_good(tmp_path)), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["framework"] == "safetensors"
    assert doc["totals"]["params"] == 15 and doc["totals"]["buffers"] == 3
    assert doc["totals"]["bytes"] == 48
    assert doc["metadata"]["format"] == "pt"
    assert doc["complete"] is True


def test_summary_json_of_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(_gguf(tmp_path / "t.gguf")), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["framework"] == "gguf"
    assert doc["totals"]["params"] == 32 and doc["totals"]["bytes"] == 128
    assert doc["metadata"]["general.architecture"] == "llama"
    layer = next(la for la in doc["layers"] if la["path"] == "token_embd")
    assert layer["type"] == "Embedding"


@pytest.mark.parametrize("kind", ["st_length", "st_offsets", "gguf_version", "gguf_count"])
def test_hostile_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    if kind == "st_length":
        f = _st(tmp_path / "x.safetensors", {}, 0, length=2**60)
        needle = "header length"
    elif kind == "st_offsets":
        f = _st(tmp_path / "x.safetensors", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, 8)
        needle = "needs 16"
    elif kind == "gguf_version":
        f = tmp_path / "x.gguf"
        f.write_bytes(b"GGUF" + struct.pack("<IQQ", 1, 0, 0))
        needle = "version 1"
    else:
        f = tmp_path / "x.gguf"
        f.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 10**12, 0))
        needle = "tensor count"
    code = main(["summary", str(f)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("paramscope: error: "), err
    assert needle in err and str(f) in err


def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    f = _st(tmp_path / "evil.safetensors", {"evil\x1b[31m.w\x00\x07": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 8)
    env = {**os.environ, "PYTHONPATH": SRC}
    for command in (["summary", str(f)], ["explain", str(f)], ["summary", str(f), "--format", "markdown"]):
        r = subprocess.run([sys.executable, "-m", "paramscope", *command], env=env, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert b"\x1b" not in r.stdout and b"\x00" not in r.stdout and b"\x07" not in r.stdout
        assert b"evil" in r.stdout
    r = subprocess.run([sys.executable, "-m", "paramscope", "summary", str(f), "--format", "json"],
                       env=env, capture_output=True, timeout=60)
    doc = json.loads(r.stdout)
    assert any(la["name"] == "evil\x1b[31m" for la in doc["layers"])  # JSON keeps the data, escaped
