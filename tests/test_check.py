"""``paramscope check``: budgets for CI, against the frameworks' own counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.analysis.budget import parse_quantity
from paramscope.core.errors import ParamscopeError

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paramscope", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    ("text", "is_bytes", "value"),
    [
        ("150M", False, 150_000_000), ("7B", False, 7_000_000_000), ("7.5G", False, 7_500_000_000),
        ("2k", False, 2_000), ("1_000", False, 1_000), ("3T", False, 3 * 10**12), ("12", False, 12),
        ("1KiB", True, 1024), ("1.5GiB", True, 1_610_612_736), ("600MiB", True, 600 * 2**20),
        ("2MB", True, 2_000_000), ("100", True, 100), ("64 B", True, 64),
    ],
)
def test_quantities(text: str, is_bytes: bool, value: int) -> None:
    assert parse_quantity(text, is_bytes=is_bytes) == value


@pytest.mark.parametrize(("text", "is_bytes"), [("1.5GiB", False), ("7Q", False), ("", False), ("-3", False),
                                                 ("M", False), ("5G", True)])
def test_bad_quantities(text: str, is_bytes: bool) -> None:
    with pytest.raises(ParamscopeError, match="budget"):
        parse_quantity(text, is_bytes=is_bytes)


@pytest.fixture()
def checkpoint(tmp_path: Path) -> tuple[Path, int, int]:
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.Linear(32, 8))
    safetensors_torch.save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    sd = model.state_dict()
    # The oracle: torch's own counts of what the checkpoint holds.
    params = sum(p.numel() for p in model.parameters())
    n_bytes = sum(v.numel() * v.element_size() for v in sd.values())
    return tmp_path / "m.safetensors", params, n_bytes


def test_within_and_over_budget(checkpoint: tuple[Path, int, int]) -> None:
    path, params, n_bytes = checkpoint
    ok = _cli("check", str(path), "--max-params", str(params), "--max-bytes", f"{n_bytes}")
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith(f"params: {params:,}") and lines[0].endswith("ok")
    assert lines[-1].endswith("within every budget")
    over = _cli("check", str(path), "--max-params", str(params - 1), "--max-bytes", "1GiB")
    assert over.returncode == 1
    assert over.stdout.splitlines()[0].endswith("over budget by 1")
    assert "1 of 2 budgets exceeded" in over.stdout


def test_unknown_flops_do_not_pass(checkpoint: tuple[Path, int, int]) -> None:
    path, _, _ = checkpoint
    proc = _cli("check", str(path), "--max-flops", "1G", "--format", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["budgets"] == [{"key": "flops", "limit": 10**9, "value": None, "ok": False}]


def test_flops_of_a_module_against_torch(tmp_path: Path) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    script = tmp_path / "net.py"
    script.write_text("import torch\nmodel = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), "
                      "torch.nn.Linear(32, 8))\n")
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(4, 64))
    flops = counter.get_total_flops()  # the oracle
    ok = _cli("check", f"{script}:model", "--input-size", "4,64", "--max-flops", str(flops))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    over = _cli("check", f"{script}:model", "--input-size", "4,64", "--max-flops", str(flops - 1))
    assert over.returncode == 1 and "flops" in over.stdout


def test_budgets_from_pyproject(checkpoint: tuple[Path, int, int], tmp_path: Path) -> None:
    path, params, _ = checkpoint
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text(f'[tool.paramscope]\nmax-params = "{params}"\nmax_bytes = "1MiB"\n')
    ok = _cli("check", str(path), cwd=project / "sub")  # the nearest pyproject.toml upwards
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].startswith("params:") and ok.stdout.splitlines()[1].startswith("bytes:")
    (project / "pyproject.toml").write_text(f'[tool.paramscope]\nmax-params = "{params - 1}"\n')
    assert _cli("check", str(path), cwd=project).returncode == 1
    (project / "pyproject.toml").write_text('[tool.paramscope]\nmax-params = "lots"\n')
    bad = _cli("check", str(path), cwd=project)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "max-params" in bad.stderr


def test_no_budget_and_bad_input(checkpoint: tuple[Path, int, int], tmp_path: Path) -> None:
    path, _, _ = checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    none = _cli("check", str(path), cwd=empty)
    assert none.returncode == 2 and "no budget given" in none.stderr
    missing = _cli("check", str(tmp_path / "nope.safetensors"), "--max-params", "1M")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    bad = _cli("check", str(path), "--max-bytes", "12 parsecs")
    assert bad.returncode == 2 and "budget" in bad.stderr
