"""The Keras config reader and engine on hand-written configs: no Keras needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.analysis.totals import totals
from paramscope.core.errors import CorruptFileError, ModelError, UnsupportedFormatError
from paramscope.readers import keras_config, read
from paramscope.rules.keras.graph import StoredWeight, anatomy_from_config

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _tensor(name: str, shape: list[int | None], node: int = 0) -> dict:
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": shape, "dtype": "float32", "keras_history": [name, node, 0]},
    }


def _layer(cls: str, name: str, config: dict, inbound: list[list[dict]], build: list | None = None) -> dict:
    entry = {
        "module": "keras.layers",
        "class_name": cls,
        "config": {"name": name, **config},
        "name": name,
        "inbound_nodes": [{"args": args, "kwargs": {}} for args in inbound],
    }
    if build is not None:
        entry["build_config"] = {"input_shape": build}
    return entry


def _functional(layers: list[dict], inputs: list, outputs: list) -> dict:
    return {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {"name": "m", "trainable": True, "layers": layers,
                   "input_layers": inputs, "output_layers": outputs},
    }


def _seed_model() -> dict:
    """The motivating example: Input(4096) -> Dense(512) -> BatchNormalization -> Dense(80)."""
    return _functional(
        [
            _layer("InputLayer", "x", {"batch_shape": [None, 4096]}, []),
            _layer("Dense", "d1", {"units": 512}, [[_tensor("x", [None, 4096])]], [None, 4096]),
            _layer("BatchNormalization", "bn", {"axis": -1}, [[_tensor("d1", [None, 512])]], [None, 512]),
            _layer("Dense", "d2", {"units": 80}, [[_tensor("bn", [None, 512])]], [None, 512]),
        ],
        [["x", 0, 0]],
        [["d2", 0, 0]],
    )


def test_seed_example_counts_worked_by_hand() -> None:
    a = anatomy_from_config(_seed_model())
    by_name = {layer.name: layer for layer in a.layers}
    # Dense(4096 -> 512): kernel 4096 * 512 = 2,097,152 plus bias 512 = 2,097,664
    assert sum(t.count or 0 for t in by_name["d1"].tensors) == 2_097_664
    # BatchNormalization(512): gamma, beta, moving_mean, moving_variance: 4 * 512 = 2,048
    bn = by_name["bn"]
    assert sum(t.count or 0 for t in bn.tensors) == 2_048
    assert sum(t.count or 0 for t in bn.tensors if t.counted_as == "non_trainable") == 1_024
    assert bn.formula is not None and bn.formula.numeric == "4 x 512"
    # Dense(512 -> 80): 512 * 80 + 80 = 41,040
    assert sum(t.count or 0 for t in by_name["d2"].tensors) == 41_040
    t = totals(a)
    assert t.params == 2_097_664 + 2_048 + 41_040
    assert t.non_trainable == 1_024
    assert a.outputs == ((None, 80),)


def test_read_json_file_and_dict(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(_seed_model()))
    assert keras_config.can_read(str(path))
    assert keras_config.can_read(_seed_model())
    from_file = read(str(path))
    assert from_file.source == str(path)
    assert totals(from_file).params == totals(read(_seed_model())).params


def test_invalid_json_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"class_name": "Functional", "config": {')
    with pytest.raises(CorruptFileError, match="bad.json"):
        keras_config.read(str(path))


def test_json_that_is_not_a_keras_config(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    assert not keras_config.can_read(str(path))
    with pytest.raises(UnsupportedFormatError, match="other.json"):
        keras_config.read(str(path))
    with pytest.raises(UnsupportedFormatError):
        keras_config.read({"layers": []})


def test_missing_layers_list() -> None:
    cfg = {"class_name": "Functional", "config": {"name": "m", "layers": None}}
    with pytest.raises(CorruptFileError):
        anatomy_from_config(cfg)
    seq = {"class_name": "Sequential", "config": {"name": "s"}}
    with pytest.raises(CorruptFileError, match="layers"):
        anatomy_from_config({**seq, "config": {"name": "s", "layers": 3}})


def test_inbound_from_unknown_layer_names_it() -> None:
    cfg = _functional(
        [
            _layer("InputLayer", "x", {"batch_shape": [None, 4]}, []),
            _layer("Dense", "d", {"units": 2}, [[_tensor("ghost", [None, 4])]], [None, 4]),
        ],
        [["x", 0, 0]],
        [["d", 0, 0]],
    )
    with pytest.raises(CorruptFileError, match="'ghost'"):
        anatomy_from_config(cfg, source="m.json")


def test_cycle_is_a_model_error() -> None:
    cfg = _functional(
        [
            _layer("Dense", "a", {"units": 4}, [[_tensor("b", [None, 4])]], [None, 4]),
            _layer("Dense", "b", {"units": 4}, [[_tensor("a", [None, 4])]], [None, 4]),
        ],
        [],
        [["b", 0, 0]],
    )
    with pytest.raises(ModelError, match="cycle: .*a.*b"):
        anatomy_from_config(cfg)


def test_stored_weights_checked_and_used() -> None:
    cfg = _seed_model()
    good = {"d2": [StoredWeight("0", (512, 80), "float16"), StoredWeight("1", (80,), "float16")]}
    a = anatomy_from_config(cfg, stored_weights=good)
    d2 = a.find("d2")
    assert d2 is not None and [t.dtype for t in d2.tensors] == ["float16", "float16"]
    bad = {"d2": [StoredWeight("0", (512, 81), "float32"), StoredWeight("1", (81,), "float32")]}
    with pytest.raises(CorruptFileError, match="d2.*kernel|kernel.*d2"):
        anatomy_from_config(cfg, stored_weights=bad, source="m.keras")


def test_reading_a_config_file_imports_no_framework(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(_seed_model()))
    code = (
        "import sys, paramscope\n"
        f"a = paramscope.read({str(path)!r})\n"
        "bad = [m for m in ('keras', 'torch', 'tensorflow') if m in sys.modules]\n"
        "print(len(a.layers), bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": SRC}, check=True)
    assert out.stdout.strip() == "4 []"
