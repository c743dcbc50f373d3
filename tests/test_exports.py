"""CSV and pandas exports of the summary: one row per layer, numbers as the framework counts them."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import paramscope
from paramscope.readers import read

torch = pytest.importorskip("torch")


def _model() -> object:
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32), torch.nn.Linear(32, 4))


def test_csv_rows_match_torch() -> None:
    model = _model()
    text = paramscope.summary(model, format="csv", input_size=(2, 16)).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["path"] for r in rows] == ["0", "1", "2"]
    for row, module in zip(rows, model):  # type: ignore[call-overload]
        # The oracle: the module's own parameters and buffers, as torch counts them.
        assert int(row["params"]) == sum(p.numel() for p in module.parameters())
        assert int(row["buffers"]) == sum(b.numel() for b in module.buffers())
        assert int(row["bytes"]) == sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model[0](torch.zeros(2, 16))  # type: ignore[index]
    assert int(rows[0]["flops"]) == counter.get_total_flops()
    assert rows[1]["dtypes"] == "float32,int64"  # running stats and num_batches_tracked


def test_unknown_counts_are_empty_not_zero(tmp_path: Path) -> None:
    lazy = torch.nn.Sequential(torch.nn.LazyLinear(4))
    rows = list(csv.DictReader(io.StringIO(paramscope.summary(lazy, format="csv").text)))
    assert rows[0]["params"] == "" and rows[0]["bytes"] == "" and rows[0]["complete"] == "False"


def test_to_pandas() -> None:
    pd = pytest.importorskip("pandas")
    model = _model()
    frame = read(model).to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["path"]) == ["0", "1", "2"]
    assert int(frame["params"].sum()) == sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
    lazy = read(torch.nn.Sequential(torch.nn.LazyLinear(4))).to_pandas()
    assert lazy["params"].isna().all()


def test_output_file_format_from_its_suffix(tmp_path: Path) -> None:
    script = tmp_path / "net.py"
    script.write_text("import torch\nmodel = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 4))\n")
    for suffix, check in (
        (".json", lambda t: json.loads(t)["totals"]["params"] == 16 * 32 + 32 + 32 * 4 + 4),
        (".csv", lambda t: t.splitlines()[0].startswith("path,name,type")),
        (".md", lambda t: "|" in t),
        (".html", lambda t: t.startswith("<!DOCTYPE html>") and 'class="treemap"' in t),
        (".txt", lambda t: "Total params: 676" in t),
    ):
        out = tmp_path / f"report{suffix}"
        proc = subprocess.run([sys.executable, "-m", "paramscope", "summary", f"{script}:model", "-o", str(out)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "" and check(out.read_text()), suffix
    bad = subprocess.run([sys.executable, "-m", "paramscope", "summary", f"{script}:model", "-o",
                          str(tmp_path / "r.xlsx")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "xlsx" in bad.stderr and bad.stderr.count("\n") == 1
