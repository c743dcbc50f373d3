"""The .keras / .h5 reader: the seed model from both file formats, optimizer state, detection by
content, Keras 2 files, and no framework imported while reading."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
np = pytest.importorskip("numpy")
layers = keras.layers

from paramscope.analysis.totals import layer_totals, totals  # noqa: E402
from paramscope.core.anatomy import Role  # noqa: E402
from paramscope.readers import read  # noqa: E402
from paramscope.readers.keras import archive as keras_archive


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


def _save(model: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    return path


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("seed")
    model = _seed()
    return {"keras": _save(model, d / "seed.keras"), "h5": _save(model, d / "seed.h5")}


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_seed_model_from_file(seed_files: dict[str, Path], fmt: str) -> None:
    # The seed's own numbers, as Keras prints them.
    anatomy = keras_archive.read(seed_files[fmt])
    assert [layer_totals(x).params for x in anatomy.layers] == [2_097_664, 2_048, 0, 41_040]
    t = totals(anatomy)
    assert (t.params, t.trainable, t.non_trainable) == (2_140_752, 2_139_728, 1_024)
    bn = anatomy.layers[1]
    assert [x.role for x in bn.tensors] == [Role.TRAINABLE, Role.TRAINABLE, Role.STATISTIC, Role.STATISTIC]
    assert anatomy.source == str(seed_files[fmt])
    assert anatomy.metadata["keras_version"] == keras.__version__


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_optimizer_state_from_file_is_kept_apart(tmp_path: Path, fmt: str) -> None:
    model = keras.Sequential([keras.Input((6,)), layers.Dense(4), layers.BatchNormalization(), layers.Dense(2)])
    model.compile("adam", "mse")
    model.fit(np.zeros((4, 6)), np.zeros((4, 2)), verbose=0)
    anatomy = keras_archive.read(_save(model, tmp_path / f"m.{fmt}"))
    assert totals(anatomy).params == model.count_params()
    (group,) = anatomy.extras
    expected = sorted(math.prod(v.shape) for v in model.optimizer.variables)
    assert sorted(x.count or 0 for x in group.tensors) == expected
    assert all(not x.is_param for x in group.tensors)


def test_format_is_detected_by_content(seed_files: dict[str, Path], tmp_path: Path) -> None:
    zipped = shutil.copy(seed_files["keras"], tmp_path / "weights.bin")
    hdf = shutil.copy(seed_files["h5"], tmp_path / "model.dat")
    assert keras_archive.can_read(zipped) and keras_archive.can_read(hdf)
    assert totals(read(zipped)).params == totals(read(hdf)).params == 2_140_752
    other = tmp_path / "notes.txt"
    other.write_text("not a model")
    assert not keras_archive.can_read(other)


def test_weights_only_h5_is_not_claimed(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    path = tmp_path / "only.weights.h5"
    model.save_weights(path)
    assert not keras_archive.can_read(path)


@pytest.mark.parametrize("mode", ["int8", "int4", "float8", "bfloat16"])
def test_archive_dtypes_and_bytes(tmp_path: Path, mode: str) -> None:
    if mode == "bfloat16":
        # NumPy has no bfloat16; Keras stores it as opaque 2-byte values plus a dtype attribute.
        model = keras.Sequential([keras.Input((6,)), layers.Dense(4, dtype="bfloat16"), layers.Dense(3)])
    else:
        model = keras.Sequential([keras.Input((6,)), layers.Dense(4), layers.Dense(3)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.quantize(mode)
    anatomy = keras_archive.read(_save(model, tmp_path / "q.keras"))
    t = totals(anatomy)
    assert t.complete and (t.trainable, t.non_trainable) == (
        sum(math.prod(v.shape) for v in model.trainable_weights),
        sum(math.prod(v.shape) for v in model.non_trainable_weights),
    )
    assert totals(anatomy).params == model.count_params()
    for layer in model.layers:
        ours = anatomy.find(layer.name)
        assert ours is not None
        assert sorted((x.dtype, x.n_bytes) for x in ours.tensors) == sorted(
            (str(v.dtype), keras.ops.convert_to_numpy(v).nbytes) for v in layer.weights
        )


def test_keras2_legacy_h5(tmp_path: Path) -> None:
    # A file laid out the way Keras 2 (tf.keras) wrote model.save("x.h5"): no "module" keys,
    # batch_input_shape, weight names with ":0".
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8], "dtype": "float32",
                                                        "name": "input_1"}},
                {"class_name": "Dense", "config": {"name": "dense", "units": 4, "use_bias": True,
                                                   "dtype": "float32", "trainable": True}},
                {"class_name": "Dense", "config": {"name": "dense_1", "units": 2, "use_bias": False,
                                                   "dtype": "float32", "trainable": True}},
            ],
        },
    }
    path = tmp_path / "k2.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = [b"input_1", b"dense", b"dense_1"]
        mw.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
        g = mw.create_group("dense")
        g.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        g.create_dataset("dense/kernel:0", shape=(8, 4), dtype="float32")
        g.create_dataset("dense/bias:0", shape=(4,), dtype="float32")
        g = mw.create_group("dense_1")
        g.attrs["weight_names"] = [b"dense_1/kernel:0"]
        g.create_dataset("dense_1/kernel:0", shape=(4, 2), dtype="float16")
    anatomy = read(path)
    assert [layer_totals(x).params for x in anatomy.layers if x.tensors] == [36, 8]
    assert anatomy.find("dense_1") is not None
    assert anatomy.metadata["keras_version"] == "2.15.0"
    # The stored dtype wins over the config's: bytes follow the file.
    d1 = anatomy.find("dense_1")
    assert d1 is not None and d1.tensors[0].dtype == "float16" and d1.tensors[0].n_bytes == 16


def test_reading_files_imports_no_framework(seed_files: dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "from paramscope.readers import read\n"
        "from paramscope.analysis.totals import totals\n"
        f"for p in ({str(seed_files['keras'])!r}, {str(seed_files['h5'])!r}):\n"
        "    assert totals(read(p)).params == 2140752\n"
        "bad = [m for m in ('keras', 'torch', 'tensorflow', 'jax') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_application_model_parity(tmp_path: Path) -> None:
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10)
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    for fmt in ("keras", "h5"):
        anatomy = keras_archive.read(_save(model, tmp_path / f"mnv2.{fmt}"))
        t = totals(anatomy)
        assert (t.params, t.trainable, t.complete) == (model.count_params(), trainable, True), fmt
        for layer in model.layers:
            ours = anatomy.find(layer.name)
            assert ours is not None and layer_totals(ours).params == layer.count_params(), (fmt, layer.name)
