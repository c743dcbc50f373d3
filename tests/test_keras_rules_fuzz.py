"""Hostile and mangled configs: the engine returns an anatomy or raises a paramscope error,
never anything else, and never runs long."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from paramscope.core.anatomy import Anatomy  # noqa: E402
from paramscope.core.errors import CorruptFileError, ParamscopeError  # noqa: E402
from paramscope.readers.keras import config as keras_config
from paramscope.readers.keras.engine.graph import anatomy_from_config  # noqa: E402


def _t(name: str, shape: list[Any], node: int = 0) -> dict[str, Any]:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": shape, "dtype": "float32", "keras_history": [name, node, 0]}}


def _entry(cls: str, name: str, cfg: dict[str, Any], args: list[Any], shape: list[Any] | None) -> dict[str, Any]:
    e: dict[str, Any] = {"module": "keras.layers", "class_name": cls, "name": name,
                         "config": {"name": name, "trainable": True, "dtype": "float32", **cfg},
                         "inbound_nodes": [{"args": args, "kwargs": {}}] if args else []}
    if shape is not None:
        e["build_config"] = {"input_shape": shape}
    return e


BASE: dict[str, Any] = {
    "module": "keras.src.models.functional",
    "class_name": "Functional",
    "config": {
        "name": "m",
        "layers": [
            _entry("InputLayer", "x", {"batch_shape": [None, 8, 8, 3]}, [], None),
            _entry("Conv2D", "c", {"filters": 4, "kernel_size": 3, "padding": "same"}, [_t("x", [None, 8, 8, 3])],
                   [None, 8, 8, 3]),
            _entry("BatchNormalization", "bn", {"axis": -1}, [_t("c", [None, 8, 8, 4])], [None, 8, 8, 4]),
            _entry("Add", "add", {}, [[_t("bn", [None, 8, 8, 4]), _t("c", [None, 8, 8, 4])]], None),
            _entry("GlobalAveragePooling2D", "gap", {}, [_t("add", [None, 8, 8, 4])], [None, 8, 8, 4]),
            _entry("Dense", "d", {"units": 3}, [_t("gap", [None, 4])], [None, 4]),
        ],
        "input_layers": [["x", 0, 0]],
        "output_layers": [["d", 0, 0]],
    },
}

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**12) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = _paths(BASE)[1:]


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    for key in path[:-1]:
        doc = doc[key]
    if delete and isinstance(doc, dict):
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), JSON, st.booleans()), min_size=1, max_size=3))
def test_mutated_configs_fail_only_with_paramscope_errors(edits: list[tuple[tuple[Any, ...], Any, bool]]) -> None:
    doc = copy.deepcopy(BASE)
    for path, value, delete in edits:
        try:
            _set(doc, path, value, delete)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed the place
    try:
        result = anatomy_from_config(doc, source="fuzz.json")
    except ParamscopeError:
        pass
    else:
        assert isinstance(result, Anatomy)


def test_unmutated_base_is_complete() -> None:
    a = anatomy_from_config(BASE)
    assert a.complete and a.outputs == ((None, 3),)


def test_a_huge_tensor_index_is_refused_not_enumerated() -> None:
    doc = copy.deepcopy(BASE)
    doc["config"]["layers"][5]["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["gap", 0, 10**12]
    # Refused from the number itself: enumerating 10**12 entries would never return.
    with pytest.raises(CorruptFileError, match="at most"):
        anatomy_from_config(doc)


def test_file_that_lies_about_being_json(tmp_path: Any) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(b'{"class_name": "Functional", "config": ' + b"[" * 100_000)
    with pytest.raises(CorruptFileError):
        keras_config.read(str(path))
    path.write_bytes(json.dumps(BASE).encode()[:-40])
    with pytest.raises(CorruptFileError, match="invalid JSON"):
        keras_config.read(str(path))
