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

from paramscope.core.anatomy import Anatomy, Compute, Formula, Layer, Role, Shape, Tensor, TensorGroup
from paramscope.core.dtypes import canonical_dtype
from paramscope.core.errors import ModelError, TargetError
from paramscope.readers.keras.live_graph import call_info, graph_nodes, inbound_refs, public_name, shape_of
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


def _type_name(layer: Any) -> str:
    return public_name(layer)[1]


def _origin(layer: Any) -> str:
    return public_name(layer)[0]


def _serialized(layer: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The layer's config and build config as Keras saves them; ``None`` if it cannot say."""
    keras = _keras()
    try:
        ser = keras.saving.serialize_keras_object(layer) if keras is not None else {}
        config = ser.get("config") or layer.get_config()
        build = ser.get("build_config") or {}
    except Exception:  # a layer whose get_config fails is explained by nothing
        return None
    return config, (build if isinstance(build, Mapping) else {})


def _rule_output(
    layer: Any, in_shapes: tuple[Shape, ...], saved: tuple[Mapping[str, Any], Mapping[str, Any]] | None
) -> RuleOutput | None:
    rule = keras_rule(_type_name(layer))
    if rule is None or not in_shapes or saved is None:
        return None
    policy = getattr(layer, "dtype_policy", None)
    inp = RuleInput(
        class_name=_type_name(layer),
        config=saved[0],
        input_shapes=in_shapes,
        variable_dtype=str(getattr(policy, "variable_dtype", None) or "float32"),
        quantization=getattr(layer, "quantization_mode", None),
        build_config=saved[1],
    )
    try:
        return rule(inp)
    except Exception:  # a rule that cannot handle this config explains nothing
        return None


def _compute(
    type_name: str,
    config: Mapping[str, Any] | None,
    calls: list[Any],
    in_shapes: tuple[Shape, ...] | None,
    out_shapes: tuple[Shape, ...] | None,
) -> Compute:
    """FLOPs of all the layer's calls, by the same formulas as for a saved config."""
    from paramscope.rules.keras.flops import layer_compute, sum_compute

    if config is None:
        return Compute(None, None, None, (type_name,))
    if not calls:
        return layer_compute(type_name, config, in_shapes or (), out_shapes or ())
    parts = [
        layer_compute(type_name, config, [shape_of(t) for t in node.input_tensors],
                      [shape_of(t) for t in node.output_tensors])
        for node in calls
    ]
    return sum_compute(parts) or Compute(None, None, None, (type_name,))


def _tensor(var: Any, name: str, rule_w: Weight | None, keys: _Keys) -> Tensor:
    shape = shape_of(var) or ()
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
        # Keras does not train it, and no rule says what it holds: state, as far as we know.
        role = Role.BUFFER
        why = why or "a non-trainable variable of a layer no rule explains; Keras does not train it"
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


def _leaf(layer: Any, path: str, nodes: set[Any] | None, keys: _Keys) -> Layer:
    calls, in_shapes, out_shapes = call_info(layer, nodes)
    saved = _serialized(layer)
    out = _rule_output(layer, in_shapes or (), saved)
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
    inbound = inbound_refs(calls)
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
        compute=_compute(_type_name(layer), saved[0] if saved else None, calls, in_shapes, out_shapes),
        origin=_origin(layer),
    )


def _is_model(obj: Any) -> bool:
    keras = _keras()
    return keras is not None and isinstance(obj, keras.Model)


def _own_variables(model: Any) -> list[Any]:
    """Variables a model creates itself, outside its layers."""
    owned = {id(v) for sub in model.layers for v in sub.weights}
    return [v for v in model.weights if id(v) not in owned]


def _children(model: Any, prefix: str, keys: _Keys) -> tuple[Layer, ...]:
    nodes = graph_nodes(model)
    return tuple(_layer(sub, f"{prefix}{sub.name}", nodes, keys) for sub in model.layers)


def _layer(layer: Any, path: str, nodes: set[Any] | None, keys: _Keys) -> Layer:
    if not _is_model(layer):
        return _leaf(layer, path, nodes, keys)
    from paramscope.rules.keras.flops import sum_compute

    calls, in_shapes, out_shapes = call_info(layer, nodes)
    children = _children(layer, f"{path}/", keys)
    return Layer(
        name=layer.name,
        type=_type_name(layer),
        path=path,
        tensors=tuple(_tensor(v, _relative(layer, v), None, keys) for v in _own_variables(layer)),
        children=children,
        compute=sum_compute([c.compute for c in children]),
        input_shapes=in_shapes,
        output_shapes=out_shapes,
        inbound=inbound_refs(calls),
        calls=max(1, len(calls)),
        origin=_origin(layer),
    )


def _optimizer(model: Any) -> tuple[TensorGroup, ...]:
    opt = getattr(model, "optimizer", None)
    variables = list(getattr(opt, "variables", None) or []) if opt is not None else []
    if not variables:
        return ()
    tensors = tuple(
        Tensor(
            name=str(getattr(v, "path", "") or v.name),
            shape=shape_of(v) or (),
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
    return tuple(s for s in (shape_of(x) for x in items) if s is not None)


def read(source: Any, **options: Any) -> Anatomy:
    """Read a live Keras model or layer.

    Args:
        source: a built ``keras.Model`` or ``keras.layers.Layer``.
        **options: ignored (a live model needs none).

    Raises:
        TargetError: ``source`` is not a Keras layer.
        ModelError: the model is not built, so it has no weights yet.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> read(m).layers[0].tensors[0].shape
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
        layers = _children(source, "", keys)
        own = _own_variables(source)
        if own:
            top = tuple(_tensor(v, _relative(source, v), None, keys) for v in own)
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
