"""One layer entry of a Keras config to a :class:`Layer`: rules, roles, dtypes, FLOPs.

A layer's weights come from its rule, built on the shapes Keras recorded
(``build_config.input_shape``, else the shapes of the tensors of its first call). Lambda
functions and custom classes are never run or imported; ``keras.ops`` nodes have no weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paramscope.core.anatomy import Compute, Layer, Role, Shape, Tensor
from paramscope.core.dtypes import canonical_dtype
from paramscope.core.errors import CorruptFileError, ModelError
from paramscope.rules.keras.configs import (
    entry_name,
    is_keras_module,
    is_model_entry,
    parse_shape,
    parse_shapes,
)
from paramscope.rules.keras.flops import layer_compute, op_compute, sum_compute
from paramscope.rules.keras.ops import LAYER_NAMED_OPS, is_ops_module, op_output_shape
from paramscope.rules.keras.policy import Policy, parse_policy
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight, keras_rule
from paramscope.readers.keras.engine.stored import StoredWeight, StoredWeights, check_stored, stored_tensors

__all__ = [
    "StoredWeight",
    "StoredWeights",
    "Built",
    "Context",
    "explain_layer",
    "explain_entry",
    "call_compute",
    "FROZEN_WHY",
    "FROZEN_PARENT_WHY",
]

FROZEN_WHY = "layer.trainable is False"
FROZEN_PARENT_WHY = "an enclosing model has trainable set to False"


@dataclass(frozen=True, slots=True)
class Built:
    """Layers of one (sub-)model with its input and output shapes."""

    layers: tuple[Layer, ...]
    inputs: tuple[Shape | None, ...] = ()
    outputs: tuple[Shape | None, ...] = ()


#: ``models.model_layers``: (entry, path prefix, frozen reason, policy, context, input shapes) -> Built.
SubmodelBuilder = Callable[[Mapping[str, Any], str, str, Policy, "Context", Sequence["Shape | None"]], Built]


@dataclass
class Context:
    """State shared while one config is walked.

    Attributes:
        submodel: builds the layers of a nested model entry (``models.model_layers``). A nested
            model is walked by the module that walks models, which itself builds every entry
            with this one: the walker is handed in rather than imported back.
    """

    stored: StoredWeights
    source: str
    submodel: SubmodelBuilder
    notes: list[str] = field(default_factory=list)


def _where(ctx: Context, path: str) -> str:
    if ctx.source and path:
        return f"{ctx.source}, layer {path}"
    return ctx.source or (f"layer {path}" if path else "")


def explain_layer(
    class_name: str,
    config: Mapping[str, Any],
    input_shapes: Sequence[Shape],
    *,
    build_config: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
) -> RuleOutput | None:
    """Run the rule for one Keras layer; ``None`` when no rule covers ``class_name``.

    Weight dtypes left open by the rule are filled in from the layer's dtype policy.

    Args:
        class_name: the Keras class name (``"Dense"``).
        config: the layer's ``get_config()``.
        input_shapes: the shapes it is built on, batch dimension included.
        build_config: its ``build_config``, if any.
        policy: the dtype policy; read from ``config["dtype"]`` when not given.

    Raises:
        ValueError: the config and shapes are inconsistent (e.g. an unknown channel count).

    Example:
        >>> out = explain_layer("Dense", {"units": 512}, [(None, 4096)])
        >>> [w.shape for w in out.weights]
        [(4096, 512), (512,)]
    """
    rule = keras_rule(class_name)
    if rule is None:
        return None
    pol = policy or parse_policy(config.get("dtype"))
    inp = RuleInput(
        class_name=class_name,
        config=config,
        input_shapes=tuple(input_shapes),
        variable_dtype=pol.variable_dtype,
        quantization=pol.quantization,
        build_config=build_config or {},
    )
    out = rule(inp)
    weights = tuple(
        w if w.dtype is not None else Weight(
            w.name, w.shape, w.role, w.formula, w.why, pol.variable_dtype, w.is_param
        )
        for w in out.weights
    )
    return RuleOutput(out.output_shapes, weights, out.formula, out.note, out.known)


def _to_tensors(
    weights: Sequence[Weight], frozen: str, path: str, ctx: Context, class_name: str
) -> tuple[Tensor, ...]:
    tensors = []
    for w in weights:
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in w.shape):
            raise ModelError(f"{class_name} weight {w.name!r} would have shape {list(w.shape)}",
                             where=_where(ctx, path))
        role, why = w.role, w.why
        if frozen and role is Role.TRAINABLE:
            role, why = Role.FROZEN, frozen
        tensors.append(
            Tensor(
                name=w.name,
                shape=w.shape,
                dtype=canonical_dtype(w.dtype or "float32"),
                role=role,
                is_param=w.is_param,
                formula=w.formula,
                why=why,
            )
        )
    stored = ctx.stored.get(path)
    if stored is None:
        return tuple(tensors)
    return check_stored(tuple(tensors), stored, class_name, _where(ctx, path))


def _unknown(
    name: str, class_name: str, path: str, origin: str, note: str, ctx: Context,
    input_shapes: tuple[Shape | None, ...] | None, outputs: tuple[Shape | None, ...] | None = None,
) -> tuple[Layer, tuple[Shape | None, ...]]:
    tensors = stored_tensors(ctx.stored.get(path, ()))
    if tensors:
        note += "; its tensors are taken from the weights file (their count is exact, their role is not known)"
    layer = Layer(name=name, type=class_name, path=path, tensors=tensors,
                  input_shapes=_known_shapes(input_shapes), output_shapes=_known_shapes(outputs),
                  note=note, known=False, origin=origin,
                  compute=Compute(None, None, None, (class_name,)))
    return layer, outputs or (None,)


def _known_shapes(shapes: Sequence[Shape | None] | None) -> tuple[Shape, ...] | None:
    if not shapes or any(s is None for s in shapes):
        return None
    return tuple(s for s in shapes if s is not None)


def explain_entry(
    entry: Mapping[str, Any],
    in_shapes: tuple[Shape | None, ...],
    prefix: str,
    frozen: str,
    policy: Policy,
    ctx: Context,
) -> tuple[Layer, tuple[Shape | None, ...]]:
    """One layer entry of a model config as a :class:`Layer`, with its output shapes.

    Args:
        entry: ``{"class_name", "config", "module", "build_config", ...}``.
        in_shapes: shapes of the tensors of its first call (from the graph), if known.
        prefix: the path of the enclosing model, ending in ``/`` (``""`` at the top).
        frozen: why its weights are frozen (``""`` when trainable).
        policy: the enclosing model's dtype policy.
        ctx: the walk's shared state.
    """
    if not isinstance(entry, Mapping) or not isinstance(entry.get("class_name"), str):
        raise CorruptFileError("a layer entry has no 'class_name'", where=_where(ctx, prefix.rstrip("/")))
    class_name: str = entry["class_name"]
    config = entry.get("config")
    if not isinstance(config, Mapping):
        raise CorruptFileError(f"{class_name} entry has no 'config' object",
                               where=_where(ctx, prefix.rstrip("/")))
    name = entry_name(entry)
    path = f"{prefix}{name}"
    module = entry.get("module")
    origin = module if isinstance(module, str) else ""
    if config.get("trainable") is False and not frozen:
        frozen = FROZEN_WHY
    pol = parse_policy(config.get("dtype"), policy, path=name)

    # A legacy .h5 config has no "module": a keras.ops node of a Functional graph is then told
    # from the weightless layer class of the same name (Add, Dot, Softmax) by its config, which
    # holds only a name, where every layer also writes "trainable" and "dtype".
    legacy_op = (
        module is None and "inbound_nodes" in entry and set(config) <= {"name"}
        and class_name in LAYER_NAMED_OPS
    )
    if is_ops_module(module) or legacy_op:
        shape = op_output_shape(class_name, config, in_shapes)
        layer = Layer(name=name, type=class_name, path=path, input_shapes=_known_shapes(in_shapes),
                      output_shapes=_known_shapes((shape,)), origin=origin, compute=op_compute(class_name),
                      note="a keras.ops call recorded in the graph; operations have no weights")
        return layer, (shape,)
    if not is_keras_module(module):
        return _unknown(name, class_name, path, origin,
                        f"custom class from module {module!r}; paramscope never imports it", ctx, in_shapes)
    try:
        is_model = is_model_entry(entry)
    except CorruptFileError as e:
        raise CorruptFileError(e.message, where=_where(ctx, path)) from None
    if is_model:
        return _submodel(entry, in_shapes, path, frozen, pol, ctx)
    if class_name == "InputLayer":
        shape = parse_shape(config.get("batch_shape", config.get("batch_input_shape")), where=path)
        return Layer(name=name, type=class_name, path=path, output_shapes=_known_shapes((shape,)),
                     origin=origin, compute=Compute(0, 0, 0)), (shape,)
    if class_name == "Lambda":
        return _lambda(name, path, config, in_shapes, origin)

    build = entry.get("build_config")
    build_shapes = parse_shapes(build.get("input_shape"), where=path) if isinstance(build, Mapping) else None
    shapes = build_shapes if build_shapes else in_shapes
    if keras_rule(class_name) is None:
        return _unknown(name, class_name, path, origin, f"no rule for Keras layer {class_name}", ctx, shapes)
    if not shapes or any(s is None for s in shapes):
        return _unknown(name, class_name, path, origin,
                        "its input shape is not recorded in the config, so its weights cannot be sized",
                        ctx, shapes)
    known_shapes = tuple(s for s in shapes if s is not None)
    try:
        out = explain_layer(class_name, config, known_shapes,
                            build_config=build if isinstance(build, Mapping) else None, policy=pol)
    except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError) as e:
        raise ModelError(f"cannot size {class_name} layer from its config: {e}",
                         where=_where(ctx, path)) from None
    assert out is not None
    if not out.known:
        # The rule cannot list the weights (a calibrated quantization...): say what it knows,
        # and take the tensors from a weights file if there is one.
        return _unknown(name, class_name, path, origin, out.note or f"{class_name} weights not derived",
                        ctx, known_shapes, tuple(out.output_shapes) or None)
    tensors = _to_tensors(out.weights, frozen, path, ctx, class_name)
    call_shapes = in_shapes if in_shapes and all(s is not None for s in in_shapes) else known_shapes
    compute = layer_compute(class_name, config, call_shapes, out.output_shapes)
    layer = Layer(name=name, type=class_name, path=path, tensors=tensors,
                  input_shapes=known_shapes, output_shapes=_known_shapes(out.output_shapes),
                  formula=out.formula, note=out.note, known=out.known, origin=origin, compute=compute)
    return layer, tuple(out.output_shapes)


def _lambda(
    name: str, path: str, config: Mapping[str, Any], in_shapes: tuple[Shape | None, ...], origin: str
) -> tuple[Layer, tuple[Shape | None, ...]]:
    # The function is marshalled bytecode inside the config; it is never decoded or run.
    declared = config.get("output_shape")
    shape: Shape | None = None
    if isinstance(declared, list) and in_shapes and in_shapes[0] is not None:
        try:
            inner = parse_shape(declared, where=path)
        except CorruptFileError:
            inner = None
        if inner is not None:
            # keras/src/layers/core/lambda_layer.py: a declared shape excludes the batch axis.
            shape = (in_shapes[0][0], *inner)
    note = "a Lambda layer: its function is never run, and Lambda layers hold no weights"
    layer = Layer(name=name, type="Lambda", path=path, input_shapes=_known_shapes(in_shapes),
                  output_shapes=_known_shapes((shape,)), note=note, origin=origin,
                  compute=Compute(None, None, None, ("Lambda",)))
    return layer, (shape,)


def _submodel(
    entry: Mapping[str, Any],
    in_shapes: tuple[Shape | None, ...],
    path: str,
    frozen: str,
    policy: Policy,
    ctx: Context,
) -> tuple[Layer, tuple[Shape | None, ...]]:
    inner_frozen = FROZEN_PARENT_WHY if frozen else ""
    built = ctx.submodel(entry, f"{path}/", inner_frozen, policy, ctx, in_shapes)
    layer = Layer(name=entry_name(entry), type=entry["class_name"], path=path, children=built.layers,
                  compute=sum_compute([c.compute for c in built.layers]),
                  input_shapes=_known_shapes(built.inputs) or _known_shapes(in_shapes),
                  output_shapes=_known_shapes(built.outputs), origin=str(entry.get("module") or ""))
    return layer, built.outputs




def call_compute(entry: Mapping[str, Any], layer: Layer, in_shapes: Sequence[Shape | None],
                 out_shapes: Sequence[Shape | None]) -> Compute | None:
    """FLOPs of a further call of a shared layer: from its own shapes when a rule costs it,
    else the first call's figure."""
    config = entry.get("config")
    if not layer.known or layer.children or is_ops_module(entry.get("module")) or not isinstance(config, Mapping):
        return layer.compute
    if layer.type in ("InputLayer", "Lambda") or keras_rule(layer.type) is None:
        return layer.compute
    return layer_compute(layer.type, config, in_shapes, out_shapes)
