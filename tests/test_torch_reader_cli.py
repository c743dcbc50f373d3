"""The command line on a live torch model: JSON output, and one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from paramscope.cli import main  # noqa: E402

SCRIPT = '''
import torch.nn as nn


def seed():
    return nn.Sequential(
        nn.Linear(4096, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, 80), nn.Sigmoid()
    )


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) if x.sum().item() > 0 else x


def gate():
    return Gate()
'''


@pytest.fixture()
def script(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(SCRIPT)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_summary_of_seed_model(script: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "summary", f"{script}:seed", "--input-size", "2,4096", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    import importlib.util

    spec = importlib.util.spec_from_file_location("_cli_models", script)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.seed()
    assert doc["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert doc["totals"]["buffers"] == sum(b.numel() for b in model.buffers())
    assert doc["outputs"] == [[2, 80]]
    assert doc["totals"]["flops"] == 2 * 2 * (4096 * 512 + 512 * 80)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--input", "x=float32(2,4096)"], "cannot read input spec 'x=float32(2,4096)'"),
        (["--input", "float99[2,4096]"], "unknown dtype 'float99'"),
        (["--input-size", "2,40"], "'0' (Linear)"),
        (["--input-size", "2,4096", "--input", "mask=bool[2]"], "mask=bool[2]"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(script: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    code, out, err = _run(capsys, "summary", f"{script}:seed", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("paramscope: error: ") and needle in err


def test_forward_that_needs_data_still_summarises(script: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "summary", f"{script}:gate", "--input-size", "2,4", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["totals"]["params"] == 20
    assert any("stopped in the model (Gate)" in n for n in doc["notes"])
