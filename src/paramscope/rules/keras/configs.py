"""Small readers of Keras config fragments: names, modules, shapes and tensor references."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from paramscope.core.anatomy import Shape
from paramscope.core.errors import CorruptFileError

__all__ = [
    "entry_name",
    "is_keras_module",
    "is_model_entry",
    "parse_shape",
    "parse_shapes",
    "Ref",
    "tensor_refs",
    "ref_list",
]

#: A reference to an output tensor: (layer name, node index, tensor index).
Ref = tuple[str, int, int]

_MODEL_CLASSES = ("Functional", "Model", "Sequential")


def entry_name(entry: Mapping[str, Any]) -> str:
    """The layer's name: the entry's ``name``, else its config's ``name``, else its class."""
    name = entry.get("name")
    if not isinstance(name, str):
        cfg = entry.get("config")
        name = cfg.get("name") if isinstance(cfg, Mapping) else None
    return name if isinstance(name, str) else str(entry.get("class_name", "?"))


def is_keras_module(module: object) -> bool:
    """Whether a config ``module`` is Keras itself (absent, as in Keras 2 configs, counts as Keras)."""
    if module is None:
        return True
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def is_model_entry(entry: Mapping[str, Any]) -> bool:
    """Whether an entry is a Keras model (Functional or Sequential).

    Raises:
        CorruptFileError: it claims to be one but has no list of layers.
    """
    if entry.get("class_name") not in _MODEL_CLASSES or not is_keras_module(entry.get("module")):
        return False
    cfg = entry.get("config")
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("layers"), list):
        raise CorruptFileError(
            f"{entry.get('class_name')} model {entry_name(entry)!r} has no 'layers' list in its config"
        )
    return True


def _is_dim(d: object) -> bool:
    return d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0)


def parse_shape(value: Any, *, where: str = "") -> Shape | None:
    """A shape from JSON (a list of ints and nulls); ``None`` when absent.

    Raises:
        CorruptFileError: a dimension is not a non-negative int or null.

    Example:
        >>> parse_shape([None, 224, 224, 3])
        (None, 224, 224, 3)
    """
    if value is None:
        return None
    if isinstance(value, Mapping) and value.get("class_name") == "__tuple__":
        value = value.get("config", {}).get("value")
    if not isinstance(value, list) or not all(_is_dim(d) for d in value):
        raise CorruptFileError(f"not a shape: {value!r}", where=where or None)
    return tuple(value)


def parse_shapes(value: Any, *, where: str = "") -> tuple[Shape | None, ...] | None:
    """One or several shapes (``build_config.input_shape`` holds a list of shapes for
    multi-input layers, or a dict of them); ``None`` when absent.

    Example:
        >>> parse_shapes([[None, 4], [None, 4]])
        ((None, 4), (None, 4))
    """
    if value is None:
        return None
    if isinstance(value, Mapping) and value.get("class_name") != "__tuple__":
        return tuple(parse_shape(v, where=where) for v in value.values())
    if isinstance(value, list) and value and all(
        isinstance(v, (list, Mapping)) or v is None for v in value
    ) and not all(v is None for v in value):
        return tuple(parse_shape(v, where=where) for v in value)
    return (parse_shape(value, where=where),)


def _is_ref(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) >= 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )


def tensor_refs(value: Any) -> Iterator[tuple[Ref, Shape | None]]:
    """Every ``__keras_tensor__`` inside a node's args or kwargs, in order, with its shape.

    Example:
        >>> t = {"class_name": "__keras_tensor__",
        ...      "config": {"shape": [None, 8], "keras_history": ["x", 0, 0]}}
        >>> list(tensor_refs({"args": [[t, t]], "kwargs": {}}))
        [(('x', 0, 0), (None, 8)), (('x', 0, 0), (None, 8))]
    """
    if isinstance(value, Mapping):
        if value.get("class_name") == "__keras_tensor__":
            cfg = value.get("config")
            if isinstance(cfg, Mapping) and _is_ref(cfg.get("keras_history")):
                h = cfg["keras_history"]
                try:
                    shape = parse_shape(cfg.get("shape"))
                except CorruptFileError:
                    shape = None
                yield (h[0], h[1], h[2]), shape
            return
        for key in ("args", "kwargs"):
            if key in value:
                yield from tensor_refs(value[key])
        if "args" not in value and "kwargs" not in value:
            for v in value.values():
                yield from tensor_refs(v)
    elif isinstance(value, list):
        if _is_ref(value) and (len(value) == 3 or isinstance(value[3], Mapping)):
            # Keras 2 style node entry: [layer_name, node_index, tensor_index, kwargs]
            yield (value[0], value[1], value[2]), None
            return
        for v in value:
            yield from tensor_refs(v)


def ref_list(value: Any) -> list[Ref]:
    """References in ``input_layers`` / ``output_layers`` (one ref, a list, or a dict of refs).

    Example:
        >>> ref_list([["a", 0, 0], ["b", 0, 0]])
        [('a', 0, 0), ('b', 0, 0)]
    """
    if _is_ref(value):
        return [(value[0], value[1], value[2])]
    if isinstance(value, Mapping):
        return [r for v in value.values() for r in ref_list(v)]
    if isinstance(value, list):
        return [r for v in value for r in ref_list(v)]
    return []
