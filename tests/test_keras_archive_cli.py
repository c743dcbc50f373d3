"""The command line on Keras files and live Keras scripts: JSON output, one-line errors, exit 2."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
np = pytest.importorskip("numpy")
layers = keras.layers

from paramscope.cli import main  # noqa: E402
from paramscope.core.errors import CorruptFileError  # noqa: E402
from paramscope.readers.keras import archive as keras_archive

SEED = (2_140_752, 2_139_728, 1_024)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, out, err = result
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("paramscope: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)


def _seed() -> Any:
    return keras.Sequential(
        [
            keras.Input((4096,)),
            layers.Dense(512, activation="relu"),
            layers.BatchNormalization(),
            layers.Dropout(0.5),
            layers.Dense(80, activation="sigmoid"),
        ]
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    keras.backend.clear_session()  # layer names as in a fresh process: dense, batch_normalization...
    model = _seed()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fmt in ("keras", "h5"):
            out[fmt] = d / f"seed.{fmt}"
            model.save(out[fmt])
        fitted = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
        fitted.compile("sgd", "mse")
        fitted.fit(np.zeros((2, 3)), np.zeros((2, 2)), verbose=0)
        out["fitted"] = d / "fitted.keras"
        fitted.save(out["fitted"])
    return out


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_summary_json(capsys: pytest.CaptureFixture[str], files: dict[str, Path], fmt: str) -> None:
    code, out, err = run(capsys, "summary", str(files[fmt]), "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    t = doc["totals"]
    assert doc["framework"] == "keras" and doc["complete"] is True
    assert (t["params"], t["trainable"], t["non_trainable"]) == SEED
    assert [x["params"] for x in doc["layers"]] == [2_097_664, 2_048, 0, 41_040]


def test_explain_json_batch_normalization(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    code, out, err = run(capsys, "explain", str(files["keras"]), "--layer", "batch_normalization", "--format", "json")
    assert code == 0, err
    (bn,) = json.loads(out)["layers"]
    assert (bn["params"], bn["trainable"], bn["non_trainable"]) == (2_048, 1_024, 1_024)


def test_text_summary_keeps_optimizer_apart(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    code, out, err = run(capsys, "summary", str(files["fitted"]), "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["totals"]["params"] == 3 * 2 + 2
    (extra,) = doc["extras"]
    assert extra["name"] == "optimizer"


def test_live_keras_script(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script = tmp_path / "model.py"
    script.write_text(
        "import keras\n"
        "from keras import layers\n"
        "x = keras.Input((10, 4))\n"
        "h = layers.Bidirectional(layers.LSTM(3, return_sequences=True))(x)\n"
        "model = keras.Model(x, layers.MultiHeadAttention(2, 5, value_dim=3)(h, h))\n"
    )
    code, out, err = run(capsys, "summary", f"{script}:model", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["framework"] == "keras"
    types = {x["type"]: x["params"] for x in doc["layers"]}
    # Worked by hand: two LSTMs of 4 gates over (4 inputs + 3 units) plus bias; attention on
    # 6 features, 2 heads: query and key (6 + 1) x 2 x 5, value (6 + 1) x 2 x 3, output (2 x 3 + 1) x 6.
    lstm = 2 * 4 * ((4 + 3) * 3 + 3)
    mha = 2 * (6 + 1) * 2 * 5 + (6 + 1) * 2 * 3 + (2 * 3 + 1) * 6
    assert types["Bidirectional"] == lstm and types["MultiHeadAttention"] == mha
    assert doc["totals"]["params"] == lstm + mha


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_bad_files_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip at all")
    assert_one_line_error(run(capsys, "summary", str(junk)), "junk.keras", "not a readable zip")

    noconf = _zip(tmp_path / "noconf.keras", {"metadata.json": b"{}"})
    assert_one_line_error(run(capsys, "summary", str(noconf)), "noconf.keras", "no config.json")

    badjson = _zip(tmp_path / "badjson.keras", {"config.json": b"{nope"})
    assert_one_line_error(run(capsys, "summary", str(badjson)), "badjson.keras: config.json", "invalid JSON")

    monkeypatch.setattr(keras_archive, "MAX_CONFIG_BYTES", 1 << 16)
    bomb = _zip(tmp_path / "bomb.keras", {"config.json": b" " * (1 << 20)}, zipfile.ZIP_DEFLATED)
    assert_one_line_error(run(capsys, "summary", str(bomb)), "bomb.keras", "refused")

    with zipfile.ZipFile(files["keras"]) as z:
        config = json.loads(z.read("config.json"))
        weights = z.read("model.weights.h5")
    config["config"]["layers"][1]["config"]["units"] = 511
    wrong = _zip(tmp_path / "wrong.keras", {"config.json": json.dumps(config).encode(), "model.weights.h5": weights})
    assert_one_line_error(run(capsys, "summary", str(wrong)), "wrong.keras", "dense", "kernel")


def test_debug_lets_the_error_through(tmp_path: Path) -> None:
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CorruptFileError, match="junk.keras"):
        main(["summary", str(junk), "--debug"])
