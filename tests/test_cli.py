"""The command line: targets, options, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED = str(ROOT / "examples" / "seed.py")


@pytest.fixture(autouse=True)
def _fresh_names() -> None:
    # Loading a script twice in one process would name its layers dense_2, dense_3... as Keras does.
    from paramscope.keras import clear_session

    clear_session()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("paramscope: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*run(capsys, "summary", "no/such/model.keras"), "no such file or folder: no/such/model.keras")


def test_unknown_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello, not a model\n")
    assert_one_line_error(*run(capsys, "summary", str(f)), "not a format paramscope reads", "notes.txt")


def test_script_name_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_one_line_error(*run(capsys, "summary", f"{SEED}:nope"), "has no name 'nope'", "mlp_model")
    script = tmp_path / "m.py"
    script.write_text("answer = 42\ndef needs_args(a):\n    return a\n")
    assert_one_line_error(*run(capsys, "summary", f"{script}:answer"), "cannot inspect an object of type builtins.int")
    assert_one_line_error(*run(capsys, "summary", f"{script}:needs_args"), "takes no arguments")
    assert_one_line_error(*run(capsys, "summary", "no_such_pkg_xyz.mod:model"), "cannot import module 'no_such_pkg_xyz.mod'")
    assert_one_line_error(*run(capsys, "summary", str(tmp_path / "missing.py") + ":m"), "no such script")


def test_bad_option_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*run(capsys, "summary", f"{SEED}:mlp_model", "--input-size", "1,x"), "--input-size")
    assert_one_line_error(*run(capsys, "explain", f"{SEED}:mlp_model", "--layer", "nope"), "no layer named 'nope'")


def test_debug_shows_the_traceback() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "paramscope", "summary", "no/such/file", "--debug"],
        capture_output=True, text=True,
    )
    assert r.returncode != 0 and "Traceback" in r.stderr and "TargetError" in r.stderr


def test_seed_summary_from_script(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "summary", f"{SEED}:mlp_model", "--style", "keras2")
    assert code == 0, err
    assert "Total params: 2,140,752" in out
    assert "Trainable params: 2,139,728" in out
    assert "Non-trainable params: 1,024" in out
    for n in ("2097664", "2048", "41040"):
        assert f" {n} " in out
    _fresh_names.__wrapped__()  # type: ignore[attr-defined]
    code, out, err = run(capsys, "explain", f"{SEED}:mlp_model", "--layer", "batch_normalization", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layers"][0]["params"] == 2048 and doc["layers"][0]["non_trainable"] == 1024


def test_help_lists_targets_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "script.py:NAME" in out and "paramscope explain" in out


def test_script_importing_keras_runs_without_keras_backend_set(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    script = tmp_path / "k.py"
    script.write_text("import keras\nx = keras.Input(shape=(4,))\nmodel = keras.Model(x, keras.layers.Dense(2)(x))\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "KERAS_BACKEND"}
    r = subprocess.run([sys.executable, "-m", "paramscope", "summary", f"{script}:model", "--format", "json"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["totals"]["params"] == 10  # 4 x 2 + 2


def test_torch_seed_example_reconciles_batchnorm(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    code, out, err = run(capsys, "explain", str(ROOT / "examples" / "torch_seed.py") + ":model", "--layer", "2",
                         "--width", "200")
    assert code == 0, err
    text = " ".join(out.split())
    assert "2 (BatchNorm1d): 1,024 params" in text and "buffers 1,025" in text
    assert "2,048 parameters, 1,024 of them non-trainable" in text
    from torch import nn  # the oracle: PyTorch's own counts of the same layer

    bn = nn.BatchNorm1d(512)
    assert sum(p.numel() for p in bn.parameters()) == 1024
    assert sum(b.numel() for b in bn.buffers()) == 1025
