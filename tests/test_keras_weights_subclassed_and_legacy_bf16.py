"""Keras weight files of subclassed models, and legacy ``.h5`` files holding bfloat16 weights.

Oracle: the Keras model that wrote the file (``count_params()``, ``trainable_weights``, each
variable's dtype), run in the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paramscope.analysis import totals
from paramscope.readers import read

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
np = pytest.importorskip("numpy")

_BUILT_IN = ("Dense", "BatchNormalization", "Conv1D", "LayerNormalization", "Embedding")


def _subclassed() -> Any:
    @keras.saving.register_keras_serializable(package="paramscope_test")
    class Block(keras.layers.Layer):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.proj = keras.layers.Dense(4)
            self.norm = keras.layers.LayerNormalization()
            self.gain = self.add_weight(shape=(4,), name="gain")

        def call(self, x: Any) -> Any:
            return self.norm(self.proj(x)) * self.gain

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.embed = keras.layers.Embedding(10, 4)
            self.block = Block()
            self.blocks = [keras.layers.Dense(4), [keras.layers.Dense(4)]]
            self.bn = keras.layers.BatchNormalization()
            self.head = keras.layers.Dense(3)
            self.w = self.add_weight(shape=(4, 4), name="w")
            self.frozen = self.add_weight(shape=(3,), name="frozen", trainable=False)

        def call(self, ids: Any) -> Any:
            x = self.embed(ids) @ self.w
            x = self.block(x)
            x = self.blocks[1][0](self.blocks[0](x))
            return self.head(self.bn(x)) + self.frozen

    model = Net()
    model(np.zeros((2, 5), "int32"))
    return model


def _split_by_keras(model: Any) -> tuple[int, int, int]:
    """(trainable, non-trainable, unnamed) elements as Keras has them; a variable of a built-in
    layer class is named and its role known, others (the model's own, a custom layer's) not."""
    owner = {id(v): type(layer).__name__ for layer in model._flatten_layers(include_self=False)
             for v in layer._trainable_variables + layer._non_trainable_variables}
    trainable = non_trainable = unnamed = 0
    trainable_ids = {id(v) for v in model.trainable_weights}
    for v in model.weights:
        n = int(np.prod(v.shape))
        if owner.get(id(v)) not in _BUILT_IN:
            unnamed += n
        elif id(v) in trainable_ids:
            trainable += n
        else:
            non_trainable += n
    return trainable, non_trainable, unnamed


def test_subclassed_model_weights_are_all_counted(tmp_path: Path) -> None:
    model = _subclassed()
    path = tmp_path / "net.weights.h5"
    model.save_weights(path)
    a = read(path)
    t = totals(a)
    assert t.params == model.count_params() and t.complete
    assert (t.trainable, t.non_trainable, t.unknown_role) == _split_by_keras(model)
    assert t.n_bytes == sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)


def test_subclassed_model_after_training_keeps_optimizer_apart(tmp_path: Path) -> None:
    model = _subclassed()
    model.compile("adam", "mse")
    model.fit(np.zeros((4, 5), "int32"), np.zeros((4, 5, 3), "float32"), verbose=0)
    path = tmp_path / "net.weights.h5"
    model.save_weights(path)
    a = read(path)
    assert totals(a).params == model.count_params()
    (opt,) = [g for g in a.extras if g.name == "optimizer"]
    counts = [x.count for x in opt.tensors]
    assert None not in counts
    assert sum(c for c in counts if c is not None) == sum(int(np.prod(v.shape)) for v in model.optimizer.variables)


def _bf16_model() -> Any:
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, dtype="bfloat16"),
        keras.layers.BatchNormalization(dtype="bfloat16"),
        keras.layers.Dense(2),
    ])  # fmt: skip


def _bytes(model: Any) -> int:
    itemsize = {"bfloat16": 2, "float16": 2, "float32": 4}
    return sum(int(np.prod(v.shape)) * itemsize[v.dtype] for v in model.weights)


def test_legacy_weights_h5_with_bfloat16(tmp_path: Path) -> None:
    from keras.src.legacy.saving import legacy_h5_format

    model = _bf16_model()
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
        stored = f[f"{model.layers[0].name}"]
        assert any(stored[n].dtype.kind == "V" for n in stored.attrs["weight_names"])  # opaque, unnamed
    t = totals(read(path))
    assert t.complete and t.params == model.count_params()
    assert t.n_bytes == _bytes(model)
    assert {d.dtype: d.count for d in t.by_dtype} == {"bfloat16": 15 + 12, "float32": 8}


def test_legacy_full_model_h5_with_bfloat16(tmp_path: Path) -> None:
    model = _bf16_model()
    path = tmp_path / "model.h5"
    model.save(path)
    t = totals(read(path))
    assert t.complete and t.params == model.count_params()
    assert t.n_bytes == _bytes(model)
