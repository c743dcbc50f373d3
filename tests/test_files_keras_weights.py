"""Keras weight files read from HDF5 metadata agree with the Keras model that wrote them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from paramscope.analysis import totals
from paramscope.core import Anatomy
from paramscope.core.errors import MissingDependencyError
from paramscope.readers import read, reader_for
from paramscope.readers.keras import weights as keras_weights

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
np = pytest.importorskip("numpy")


def _paths(a: Anatomy) -> dict[str, tuple[int | None, ...] | None]:
    return {f"{la.path}/{t.name}": t.shape for la in a.walk() for t in la.tensors}


def _check(a: Anatomy, model: Any) -> None:
    t = totals(a)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert t.params == model.count_params()
    assert t.non_trainable == model.count_params() - trainable
    assert t.n_bytes == sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)


def _small_model() -> Any:
    inp = keras.Input((4,))
    x = keras.layers.Dense(8)(inp)
    x = keras.layers.BatchNormalization()(x)
    block = keras.Sequential([keras.layers.Dense(3, use_bias=False), keras.layers.LayerNormalization()], name="block")
    model = keras.Model(inp, block(x))
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 4)), np.zeros((4, 3)), verbose=0)
    return model


def test_keras3_weights_match_model(tmp_path: Path) -> None:
    model = _small_model()
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    assert reader_for(path) is keras_weights
    a = read(path)
    _check(a, model)
    # Inferred names give back Keras's own variable paths.
    assert _paths(a) == {w.path: tuple(w.shape) for w in model.weights}
    (opt,) = a.extras
    assert opt.name == "optimizer"
    assert len(opt.tensors) == len(model.optimizer.variables)
    assert sum(x.count or 0 for x in opt.tensors) == sum(int(np.prod(v.shape)) for v in model.optimizer.variables)
    assert any("by position only" in n for n in a.notes)


def test_mobilenet_weights_names_and_counts(tmp_path: Path) -> None:
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=5)
    path = tmp_path / "mobilenet.weights.h5"
    model.save_weights(path)
    a = read(path)
    _check(a, model)
    assert _paths(a) == {w.path: tuple(w.shape) for w in model.weights}
    types = {la.type for la in a.walk()}
    assert {"Conv2D", "DepthwiseConv2D", "BatchNormalization", "Dense"} <= types


def test_unknown_layer_class_keeps_positions(tmp_path: Path) -> None:
    class Scale(keras.layers.Layer):
        def build(self, shape: Any) -> None:
            self.s = self.add_weight(shape=(shape[-1],), name="s")

        def call(self, x: Any) -> Any:
            return x * self.s

    inp = keras.Input((3,))
    model = keras.Model(inp, Scale()(keras.layers.Dense(3)(inp)))
    path = tmp_path / "custom.weights.h5"
    model.save_weights(path)
    a = read(path)
    assert totals(a).params == model.count_params()
    scale = [la for la in a.walk() if any(t.name == "vars/0" for t in la.tensors)]
    assert len(scale) == 1 and scale[0].tensors[0].role.value == "unknown"


def test_legacy_h5_layout(tmp_path: Path) -> None:
    from keras.src.legacy.saving import legacy_h5_format

    model = _small_model()
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    assert reader_for(path) is keras_weights
    a = read(path)
    _check(a, model)
    assert a.metadata["format"].startswith("keras legacy")
    (bn,) = [la for la in a.layers if la.type == "BatchNormalization"]
    assert [t.name for t in bn.tensors] == ["gamma", "beta", "moving_mean", "moving_variance"]


def test_full_model_h5_is_not_claimed(tmp_path: Path) -> None:
    model = _small_model()
    path = tmp_path / "full.h5"
    model.save(path)
    assert not keras_weights.can_read(path)


def test_missing_h5py_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.weights.h5"
    _small_model().save_weights(path)
    monkeypatch.setitem(sys.modules, "h5py", None)
    assert keras_weights.can_read(path)
    with pytest.raises(MissingDependencyError, match=r"paramscope\[files\]"):
        read(path)


def test_reading_weights_imports_no_framework(tmp_path: Path) -> None:
    path = tmp_path / "m.weights.h5"
    _small_model().save_weights(path)
    code = (
        "import sys; from paramscope.readers import read; from paramscope.analysis import totals;"
        "print(totals(read(sys.argv[1])).params, [m for m in ('torch', 'keras', 'tensorflow') if m in sys.modules])"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env={"PYTHONPATH": src}, check=True)
    assert out.stdout.split() == ["102", "[]"]


def test_attention_and_recurrent_sublayers_named(tmp_path: Path) -> None:
    inp = keras.Input((5, 8))
    x = keras.layers.MultiHeadAttention(2, 4)(inp, inp)
    x = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True))(x)
    x = keras.layers.LSTM(3)(x)
    model = keras.Model(inp, keras.layers.Dense(2)(x))
    path = tmp_path / "rnn.weights.h5"
    model.save_weights(path)
    a = read(path)
    _check(a, model)
    assert _paths(a) == {w.path: tuple(w.shape) for w in model.weights}
    types = {la.path.rsplit("/", 1)[-1]: la.type for la in a.walk()}
    assert types["query"] == "EinsumDense" and types["lstm_cell"] == "LSTMCell"


def test_bfloat16_and_float16_weights(tmp_path: Path) -> None:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, dtype="bfloat16"), keras.layers.Dense(2, dtype="float16")]
    )
    path = tmp_path / "mixed.weights.h5"
    model.save_weights(path)
    t = totals(read(path))
    itemsize = {"bfloat16": 2, "float16": 2, "float32": 4}
    assert t.complete and t.params == model.count_params()
    assert t.n_bytes == sum(int(np.prod(w.shape)) * itemsize[w.dtype] for w in model.weights)
    assert {d.dtype for d in t.by_dtype} == {"bfloat16", "float16"}
