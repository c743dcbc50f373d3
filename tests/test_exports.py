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


def test_columns_bytes_and_dtype_per_layer() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 4).half())
    text = paramscope.summary(model, columns=["params", "bytes", "dtype"]).text
    header = next(line for line in text.splitlines() if line.lstrip().startswith("Layer (type)"))
    assert header.split() == ["Layer", "(type)", "Param", "#", "Bytes", "DType"]
    row1 = next(line for line in text.splitlines() if line.startswith("1 (Linear)"))
    # The oracle: torch's own sizes of the second layer's tensors.
    n_bytes = sum(p.numel() * p.element_size() for p in model[1].parameters())  # type: ignore[index]
    assert f"{n_bytes} B" in row1 and "float16" in row1
    with pytest.raises(paramscope.ParamscopeError, match="did you mean 'flops'"):
        paramscope.summary(model, columns=["flop"])


def test_ascii_tables_have_no_box_drawing() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 4))
    for style in ("paramscope", "keras3"):
        text = paramscope.summary(model, style=style, ascii=True).text
        assert text.isascii(), style
        assert not paramscope.summary(model, style=style).text.isascii()  # the default draws boxes


def test_layer_range_selects_as_keras_does() -> None:
    keras = pytest.importorskip("keras")
    from keras.src.utils.summary_utils import get_layer_index_bound_by_layer_name

    inputs = keras.Input((8,))
    x = inputs
    for i in range(4):
        x = keras.layers.Dense(8, name=f"dense_{i}")(x)
        x = keras.layers.Dropout(0.1, name=f"drop_{i}")(x)
    model = keras.Model(inputs, x)
    for start, end in (("dense_1", "drop_2"), ("drop_.*", "dense_1"), ("dense_3", "dense_3"), ("dense", "dense")):
        lo, hi = get_layer_index_bound_by_layer_name(model.layers, (start, end))  # the oracle
        want = [layer.name for layer in model.layers[lo:hi]]
        text = paramscope.summary(model, layer_range=(start, end), columns=["params"], width=100).text
        got = [line.split()[0] for line in text.splitlines() if line and line.split()[0] in {x.name for x in model.layers}]
        assert got == want, (start, end)
    with pytest.raises(paramscope.ParamscopeError, match="no top-level layer"):
        paramscope.summary(model, layer_range=("conv", "dense_1"))
