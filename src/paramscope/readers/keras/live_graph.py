"""How a live Keras model is wired: calls, shapes and public names, read from the model itself.

Keras keeps a functional model's graph in ``_nodes_by_depth`` (``keras/src/ops/function.py``):
each :class:`Node` is one call of a layer, with its input and output ``KerasTensor`` s, whose
``_keras_history`` says which layer, call and output produced them. A layer's own
``_inbound_nodes`` also lists its calls in other graphs, so calls are counted against the graph
being read. These are Keras internals; every access degrades to "unknown", never to an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paramscope.core.anatomy import Shape

__all__ = ["shape_of", "public_name", "graph_nodes", "call_info", "inbound_refs"]


def shape_of(obj: Any) -> Shape | None:
    """The shape of a variable or tensor, ``None`` for unknown dimensions; ``None`` if it has none."""
    shape = getattr(obj, "shape", None)
    if shape is None:
        return None
    return tuple(None if d is None else int(d) for d in shape)


def public_name(layer: Any) -> tuple[str, str]:
    """Module and class name as Keras serializes them (``keras.layers``, ``GroupQueryAttention``).

    Keras saves a built-in class under its public export name, not its defining module
    (``keras.src.layers.core.dense``) nor always its class name (``GroupedQueryAttention``).
    Using the same names as saved configs keeps live and file readings alike.
    """
    cls = type(layer)
    try:
        from keras.src.api_export import get_name_from_symbol

        public = get_name_from_symbol(cls)
    except Exception:  # a Keras without this helper: fall back to the class itself
        public = None
    if isinstance(public, str) and "." in public:
        module, _, name = public.rpartition(".")
        return module, name
    return cls.__module__, cls.__name__


def graph_nodes(model: Any) -> set[Any] | None:
    """The call nodes of a functional model's graph (a built Sequential keeps one inside)."""
    for owner in (model, getattr(model, "_functional", None)):
        by_depth = getattr(owner, "_nodes_by_depth", None)
        if isinstance(by_depth, Mapping):
            return {node for nodes in by_depth.values() for node in nodes}
    return None


def _calls(layer: Any, nodes: set[Any] | None) -> list[Any]:
    inbound = list(getattr(layer, "_inbound_nodes", []) or [])
    return [n for n in inbound if n in nodes] if nodes is not None else inbound[:1]


def _ref(tensor: Any) -> str:
    hist = getattr(tensor, "_keras_history", None)
    if hist is None or hist.operation is None:
        return "?"
    return f"{hist.operation.name}[{hist.node_index}][{hist.tensor_index}]"


def _as_shape(value: Any) -> Shape | None:
    if isinstance(value, (list, tuple)) and all(d is None or isinstance(d, int) for d in value):
        return tuple(value)
    return None


def _built_shapes(layer: Any) -> tuple[Shape, ...] | None:
    """Input shapes a layer was built with, for layers called outside any graph (subclassed models).

    Keras records them in ``get_build_config()``: ``{"input_shape": ...}`` or, for attention,
    ``{"shapes_dict": {"query_shape": ..., "value_shape": ...}}``.
    """
    try:
        build = layer.get_build_config()
    except Exception:  # a layer that cannot say how it was built leaves its shapes unknown
        return None
    if not isinstance(build, Mapping):
        return None
    value = build.get("input_shape")
    if value is None and isinstance(build.get("shapes_dict"), Mapping):
        value = list(build["shapes_dict"].values())
    one = _as_shape(value)
    if one is not None:
        return (one,)
    if isinstance(value, (list, tuple)):
        many = [_as_shape(v) for v in value]
        if all(m is not None for m in many):
            return tuple(m for m in many if m is not None)
    return None


def call_info(
    layer: Any, nodes: set[Any] | None
) -> tuple[list[Any], tuple[Shape, ...] | None, tuple[Shape, ...] | None]:
    """The layer's calls in this graph, and the input and output shapes of the first."""
    calls = _calls(layer, nodes)
    if not calls:
        return calls, _built_shapes(layer), None
    first = calls[0]
    in_shapes = tuple(s for s in (shape_of(t) for t in first.input_tensors) if s is not None)
    out_shapes = tuple(s for s in (shape_of(t) for t in first.output_tensors) if s is not None)
    return calls, in_shapes, out_shapes


def inbound_refs(calls: list[Any]) -> tuple[str, ...]:
    """The tensors each call is made on, as ``layer[node][tensor]`` (what Keras's summary shows)."""
    return tuple(_ref(t) for node in calls for t in node.input_tensors)
