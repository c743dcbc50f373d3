"""The Keras config reader and engine on hand-written configs: no Keras needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.analysis.totals import totals
from paramscope.core.errors import CorruptFileError, ModelError, UnsupportedFormatError
from paramscope.readers import read
from paramscope.readers.keras import config as keras_config
from paramscope.readers.keras.engine.graph import StoredWeight, anatomy_from_config

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


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from paramscope.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_summary_of_a_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(_seed_model()))
    code, out, _ = _cli(capsys, "summary", str(path), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["framework"] == "keras" and doc["complete"] is True
    assert doc["totals"]["params"] == 2_097_664 + 2_048 + 41_040
    assert doc["totals"]["non_trainable"] == 1_024
    bn = next(layer for layer in doc["layers"] if layer["name"] == "bn")
    assert bn["formula"] == {"symbolic": "4 x features", "numeric": "4 x 512"}
    assert bn["inbound"] == ["d1[0][0]"]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('{"class_name": "Functional", "config": {', ["invalid JSON", "bad.json"]),
        ('{"class_name": "Functional", "config": {"name": "m", "layers": 3}}', ["no 'layers' list", "bad.json"]),
        (json.dumps(_functional([_layer("Dense", "a", {"units": 4}, [[_tensor("b", [None, 4])]], [None, 4]),
                                 _layer("Dense", "b", {"units": 4}, [[_tensor("a", [None, 4])]], [None, 4])],
                                [], [["b", 0, 0]])), ["cycle", "bad.json"]),
        (json.dumps(_functional([_layer("Dense", "a", {"units": 4}, [[_tensor("zz", [None, 4])]], [None, 4])],
                                [], [["a", 0, 0]])), ["'zz'", "bad.json"]),
        (json.dumps({"class_name": "Dense", "config": {"name": "d", "units": "many"},
                     "build_config": {"input_shape": [None, 3]}}), ["cannot size Dense", "layer d"]),
    ],
    ids=["invalid-json", "layers-not-a-list", "cycle", "unknown-inbound", "bad-units"],
)
def test_cli_bad_configs_fail_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    code, out, err = _cli(capsys, "summary", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("paramscope: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_keras2_config_with_list_nodes_and_no_shapes() -> None:
    """A tf.keras 2 config: nodes as [[name, node, tensor, kwargs]], batch_input_shape, dtype
    strings, BatchNormalization axis as a list, no recorded shapes (rules propagate them)."""

    def node(name: str) -> list:
        return [[[name, 0, 0, {}]]]

    def layer(cls: str, name: str, **cfg: object) -> dict:
        return {"class_name": cls, "name": name,
                "config": {"name": name, "trainable": True, "dtype": "float32", **cfg}}

    layers = [
        {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, 28, 28, 1], "dtype": "float32", "name": "input_1"}},
        {**layer("Conv2D", "conv2d", filters=8, kernel_size=[3, 3], strides=[1, 1], padding="valid",
                 data_format="channels_last", dilation_rate=[1, 1], groups=1, use_bias=True),
         "inbound_nodes": node("input_1")},
        {**layer("BatchNormalization", "bn", axis=[3]), "inbound_nodes": node("conv2d")},
        {**layer("Flatten", "flatten", data_format="channels_last"), "inbound_nodes": node("bn")},
        {**layer("Dense", "dense", units=10), "inbound_nodes": node("flatten")},
    ]
    cfg = {"class_name": "Functional", "keras_version": "2.13.1", "backend": "tensorflow",
           "config": {"name": "model", "layers": layers, "input_layers": [["input_1", 0, 0]],
                      "output_layers": [["dense", 0, 0]]}}
    a = anatomy_from_config(cfg)
    counts = {layer.name: sum(t.count or 0 for t in layer.tensors) for layer in a.layers}
    # conv 3*3*1*8 + 8 = 80; bn 4*8 = 32; flatten 26*26*8 = 5,408 wide; dense 5,408*10 + 10
    assert counts == {"input_1": 0, "conv2d": 80, "bn": 32, "flatten": 0, "dense": 54_090}
    flatten = a.find("flatten")
    assert flatten is not None and flatten.output_shapes == ((None, 5_408),)
    assert a.metadata["keras_version"] == "2.13.1"
    assert a.find("dense").inbound == ("flatten[0][0]",)  # type: ignore[union-attr]


def test_legacy_ops_node_without_module_is_not_taken_for_a_layer() -> None:
    cfg = _functional(
        [
            _layer("InputLayer", "x", {"batch_shape": [None, 4]}, []),
            {"class_name": "Dot", "config": {"name": "dot"}, "name": "dot",
             "inbound_nodes": [{"args": [_tensor("x", [None, 4]), _tensor("x", [None, 4])], "kwargs": {}}]},
        ],
        [["x", 0, 0]],
        [["dot", 0, 0]],
    )
    row = anatomy_from_config(cfg).find("dot")
    assert row is not None and row.known and "keras.ops" in row.note


@pytest.mark.parametrize(
    ("cls", "config", "shape", "fragment"),
    [
        ("Dense", {"units": -5}, [None, 4], "units must be a positive integer"),
        ("Dense", {"units": 2.5}, [None, 4], "units must be a positive integer"),
        ("Conv2D", {"filters": 4, "kernel_size": 0}, [None, 8, 8, 3], "kernel_size"),
        ("Conv2D", {"filters": 4, "kernel_size": 9}, [None, 8, 8, 3], "does not fit"),
        ("Reshape", {"target_shape": [5, -1]}, [None, 8], "cannot be reshaped"),
        ("Reshape", {"target_shape": [-1, -1]}, [None, 8], "at most one -1"),
        ("Embedding", {"input_dim": 10, "output_dim": True}, [None, 3], "output_dim"),
    ],
)
def test_values_keras_would_refuse_are_model_errors(cls: str, config: dict, shape: list, fragment: str) -> None:
    entry = {"class_name": cls, "config": {"name": "x", **config}, "build_config": {"input_shape": shape}}
    with pytest.raises(ModelError, match=fragment):
        anatomy_from_config(entry, source="m.json")


def test_deeply_nested_models_fail_cleanly() -> None:
    cfg: dict = {"class_name": "Dense", "config": {"name": "d", "units": 2}, "build_config": {"input_shape": [None, 2]}}
    for i in range(2_000):
        cfg = {"class_name": "Sequential", "config": {"name": f"s{i}", "layers": [cfg]},
               "build_config": {"input_shape": [None, 2]}}
    with pytest.raises(ModelError, match="nested too deeply"):
        anatomy_from_config(cfg)
