"""Read a live Keras 3 model or layer: counts from its variables, explanations from the rules.

Every tensor is one of the layer's own variables (``layer.weights``), with its real shape and
dtype, so counts equal Keras's ``count_params()`` by construction. The Keras rules add the
formula, role and reason of each variable; a layer no rule covers still lists its variables,
keeps ``known=True`` (its counts are exact) and says in ``note`` that nothing explains them.
Optimizer state goes into :attr:`Anatomy.extras`, never into the model's counts.

Keras is never imported here: a source is recognised only if ``keras`` is already loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from paramscope.core.anatomy import Anatomy, Formula, Layer, Role, Shape, Tensor, TensorGroup
from paramscope.core.dtypes import canonical_dtype
from paramscope.core.errors import ModelError, TargetError
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight, keras_rule

__all__ = ["can_read", "read"]

_OVERWRITE_WHY = (
    "Keras overwrites it with the value its gradient carries (overwrite_with_gradient, as for "
    "float8 scaling state) rather than descending it; Keras counts it as trainable"
)


def _keras() -> Any | None:
    return sys.modules.get("keras")


def can_read(source: object) -> bool:
    """Whether ``source`` is a Keras 3 layer or model (only if Keras is already imported)."""
    keras = _keras()
    if keras is None or isinstance(source, (str, bytes, Mapping)):
        return False
    try:
        return isinstance(source, keras.layers.Layer)
    except AttributeError:
        return False


def _shape(obj: Any) -> Shape | None:
    shape = getattr(obj, "shape", None)
    if shape is None:
        return None
    return tuple(None if d is None else int(d) for d in shape)


class _Keys:
    """Storage keys: a variable's path, made unique when two variables share one."""

    def __init__(self) -> None:
        self._by_id: dict[int, str] = {}
        self._used: set[str] = set()

    def __call__(self, var: Any) -> str:
        key = self._by_id.get(id(var))
        if key is None:
            base = str(getattr(var, "path", "") or getattr(var, "name", "variable"))
            key, n = base, 1
            while key in self._used:
                n += 1
                key = f"{base}#{n}"
            self._by_id[id(var)] = key
            self._used.add(key)
        return key


def _relative(layer: Any, var: Any) -> str:
    path = str(getattr(var, "path", "") or var.name)
    prefix = f"{getattr(layer, 'path', None) or layer.name}/"
    if path.startswith(prefix):
        return path[len(prefix) :]
    parts = path.split("/")
    if layer.name in parts[:-1]:
        return "/".join(parts[parts.index(layer.name) + 1 :])
    return str(var.name)


def _public_name(layer: Any) -> tuple[str, str]:
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


def _type_name(layer: Any) -> str:
    return _public_name(layer)[1]


def _origin(layer: Any) -> str:
    return _public_name(layer)[0]


def _graph_nodes(model: Any) -> set[Any] | None:
    # ``_nodes_by_depth`` (keras/src/ops/function.py) holds the Node objects of this graph;
    # a layer's ``_inbound_nodes`` also lists its calls in other graphs, which are not counted.
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


def _rule_output(layer: Any, in_shapes: tuple[Shape, ...]) -> RuleOutput | None:
    rule = keras_rule(_type_name(layer))
    if rule is None or not in_shapes:
        return None
    keras = _keras()
    try:
        ser = keras.saving.serialize_keras_object(layer) if keras is not None else {}
        config = ser.get("config") or layer.get_config()
        build = ser.get("build_config") or {}
    except Exception:  # a layer whose get_config fails is explained by nothing
        return None
    policy = getattr(layer, "dtype_policy", None)
    inp = RuleInput(
        class_name=_type_name(layer),
        config=config,
        input_shapes=in_shapes,
        variable_dtype=str(getattr(policy, "variable_dtype", None) or "float32"),
        quantization=getattr(layer, "quantization_mode", None),
        build_config=build if isinstance(build, Mapping) else {},
    )
    try:
        return rule(inp)
    except Exception:  # a rule that cannot handle this config explains nothing
        return None


def _tensor(var: Any, name: str, rule_w: Weight | None, keys: _Keys) -> Tensor:
    shape = _shape(var) or ()
    why = rule_w.why if rule_w else ""
    if var.trainable:
        role = Role.TRAINABLE
        if getattr(var, "overwrite_with_gradient", False):
            why = why or _OVERWRITE_WHY
    elif rule_w is not None and rule_w.role is not Role.TRAINABLE:
        role = rule_w.role
    elif rule_w is not None:
        role = Role.FROZEN
    else:
        role = Role.UNKNOWN
    formula = rule_w.formula if rule_w is not None and tuple(rule_w.shape) == shape else None
    return Tensor(
        name=name,
        shape=shape,
        dtype=canonical_dtype(str(var.dtype)),
        role=role,
        is_param=True,
        key=keys(var),
        formula=formula,
        why=why,
    )


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


def _leaf(layer: Any, path: str, nodes: set[Any] | None, keys: _Keys) -> Layer:
    calls = _calls(layer, nodes)
    first = calls[0] if calls else None
    in_shapes: tuple[Shape, ...] | None = None
    out_shapes: tuple[Shape, ...] | None = None
    if first is not None:
        in_shapes = tuple(s for s in (_shape(t) for t in first.input_tensors) if s is not None)
        out_shapes = tuple(s for s in (_shape(t) for t in first.output_tensors) if s is not None)
    else:
        in_shapes = _built_shapes(layer)
    out = _rule_output(layer, in_shapes or ())
    by_name = {w.name: w for w in out.weights} if out is not None else {}
    tensors = []
    for var in layer.weights:
        name = _relative(layer, var)
        tensors.append(_tensor(var, name, by_name.get(name), keys))
    notes: list[str] = []
    formula: Formula | None = None
    if not layer.built:
        notes.append("the layer is not built, so its weights do not exist yet")
    elif out is None:
        notes.append(f"no rule explains {_type_name(layer)}; its weights are read from the live layer")
    else:
        expected = [(w.name, tuple(w.shape)) for w in out.weights]
        actual = [(t.name, t.shape) for t in tensors]
        if sorted(expected, key=str) == sorted(actual, key=str):
            formula = out.formula
        else:
            notes.append(f"the rule for {_type_name(layer)} expected {expected}; the layer has {actual}")
        if out.note:
            notes.append(out.note)
    if out_shapes is None and out is not None and out.known:
        out_shapes = tuple(out.output_shapes)
    inbound = tuple(_ref(t) for node in calls for t in node.input_tensors)
    return Layer(
        name=layer.name,
        type=_type_name(layer),
        path=path,
        tensors=tuple(tensors),
        input_shapes=in_shapes,
        output_shapes=out_shapes,
        inbound=inbound,
        formula=formula,
        note="; ".join(notes),
        known=bool(layer.built),
        calls=max(1, len(calls)),
        origin=_origin(layer),
    )


def _is_model(obj: Any) -> bool:
    keras = _keras()
    return keras is not None and isinstance(obj, keras.Model)


def _layer(layer: Any, path: str, nodes: set[Any] | None, keys: _Keys) -> Layer:
    if not _is_model(layer):
        return _leaf(layer, path, nodes, keys)
    base = _leaf(layer, path, nodes, keys)
    inner_nodes = _graph_nodes(layer)
    children = tuple(_layer(sub, f"{path}/{sub.name}", inner_nodes, keys) for sub in layer.layers)
    owned = {id(v) for sub in layer.layers for v in sub.weights}
    own = tuple(t for t, v in zip(base.tensors, layer.weights) if id(v) not in owned)
    return base.with_(tensors=own, children=children, formula=None, note="", known=True)


def _optimizer(model: Any) -> tuple[TensorGroup, ...]:
    opt = getattr(model, "optimizer", None)
    variables = list(getattr(opt, "variables", None) or []) if opt is not None else []
    if not variables:
        return ()
    tensors = tuple(
        Tensor(
            name=str(getattr(v, "path", "") or v.name),
            shape=_shape(v) or (),
            dtype=canonical_dtype(str(v.dtype)),
            role=Role.BUFFER,
            is_param=False,
            key=f"optimizer:{getattr(v, 'path', '') or v.name}",
            why="optimizer state (step count, learning rate, moment estimates)",
        )
        for v in variables
    )
    note = (
        f"{type(opt).__name__} state, kept with the model but not part of it; "
        "Keras's own summary adds it to 'Total params' as 'Optimizer params'"
    )
    return (TensorGroup("optimizer", tensors, note),)


def _io_shapes(model: Any, attr: str) -> tuple[Shape, ...]:
    try:
        value = getattr(model, attr)
    except (AttributeError, ValueError):
        return ()
    items: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value]
    return tuple(s for s in (_shape(x) for x in items) if s is not None)


def read(source: Any, **options: Any) -> Anatomy:
    """Read a live Keras model or layer.

    Args:
        source: a built ``keras.Model`` or ``keras.layers.Layer``.
        **options: ignored (a live model needs none).

    Raises:
        TargetError: ``source`` is not a Keras layer.
        ModelError: the model is not built, so it has no weights yet.

    Example:
        >>> import keras  # doctest: +SKIP
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])  # doctest: +SKIP
        >>> read(m).layers[0].tensors[0].shape  # doctest: +SKIP
        (4, 2)
    """
    if not can_read(source):
        raise TargetError(f"not a Keras layer or model: {type(source).__module__}.{type(source).__qualname__}")
    if not source.built:
        raise ModelError(
            f"Keras {_type_name(source)} {source.name!r} is not built, so it has no weights yet; "
            "give it an Input, call model.build(input_shape) or call it on data first",
            where=source.name,
        )
    keras = _keras()
    keys = _Keys()
    if _is_model(source):
        nodes = _graph_nodes(source)
        layers = tuple(_layer(sub, sub.name, nodes, keys) for sub in source.layers)
        owned = {id(v) for sub in source.layers for v in sub.weights}
        loose = [v for v in source.weights if id(v) not in owned]
        if loose:
            top = tuple(_tensor(v, _relative(source, v), None, keys) for v in loose)
            layers += (Layer(source.name, _type_name(source), source.name, top, origin=_origin(source),
                             note="weights the model creates itself, outside its layers"),)
    else:
        layers = (_leaf(source, source.name, None, keys),)
    metadata = {
        "keras_version": str(getattr(keras, "__version__", "")),
        "backend": str(keras.backend.backend()) if keras is not None else "",
        "class": f"{type(source).__module__}.{type(source).__qualname__}",
    }
    return Anatomy(
        name=source.name,
        framework="keras",
        layers=layers,
        source="live keras model",
        inputs=_io_shapes(source, "inputs") if _is_model(source) else (),
        outputs=_io_shapes(source, "outputs") if _is_model(source) else (),
        extras=_optimizer(source) if _is_model(source) else (),
        metadata=metadata,
    )
