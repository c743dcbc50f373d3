"""Rules for Keras wrappers: Bidirectional and TimeDistributed.

A wrapper's weights are its inner layers' weights, named as Keras names the variables under the
wrapper: ``forward_lstm/lstm_cell/kernel``, ``dense/kernel``. Source of the shapes:
``keras/src/layers/rnn/{bidirectional,time_distributed}.py`` (Keras 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paramscope.core.anatomy import Formula, Shape
from paramscope.rules.keras.policy import Policy, parse_policy
from paramscope.rules.keras.registry import RuleInput, RuleOutput, keras_rule, register_keras_rule
from paramscope.rules.keras.rnn import prefixed_weights

__all__: list[str] = []


def _run_inner(layer: Mapping[str, Any], shapes: tuple[Shape, ...], outer: RuleInput) -> tuple[str, RuleOutput]:
    cls = str(layer.get("class_name", ""))
    cfg: Mapping[str, Any] = layer.get("config") or {}
    name = str(cfg.get("name", cls))
    rule = keras_rule(cls)
    if rule is None:
        return name, RuleOutput((), known=False, note=f"no rule for the wrapped layer class {cls!r}")
    # The wrapped layer keeps its own dtype policy; without one it inherits the wrapper's.
    outer_policy = Policy(variable_dtype=outer.variable_dtype, quantization=outer.quantization)
    policy = parse_policy(cfg.get("dtype"), outer_policy)
    build = layer.get("build_config")
    return name, rule(
        RuleInput(cls, cfg, shapes, policy.variable_dtype, policy.quantization,
                  build if isinstance(build, Mapping) else {})
    )


def _sum_formula(parts: Sequence[tuple[str, Formula | None]]) -> Formula | None:
    if any(f is None for _, f in parts):
        return None
    return Formula(
        " + ".join(f"[{n}] {f.symbolic}" for n, f in parts if f is not None),
        " + ".join(f.numeric for _, f in parts if f is not None),
    )


@register_keras_rule("Bidirectional")
def _bidirectional(inp: RuleInput) -> RuleOutput:
    fwd_cfg = inp.config.get("layer")
    if not isinstance(fwd_cfg, Mapping):
        return RuleOutput((), known=False, note="the Bidirectional config names no layer")
    bwd_cfg = inp.config.get("backward_layer")
    if not isinstance(bwd_cfg, Mapping):
        # A config without backward_layer (Keras 2 wrote one only for a custom backward layer)
        # holds the wrapped layer; Bidirectional.__init__ copies it as forward_<name> and,
        # running the other way, backward_<name>.
        inner = fwd_cfg.get("config") or {}
        base = str(inner.get("name", "")).removeprefix("forward_")
        bwd_cfg = {**fwd_cfg, "config": {**inner, "name": f"backward_{base}",
                                          "go_backwards": not inner.get("go_backwards", False)}}
        fwd_cfg = {**fwd_cfg, "config": {**inner, "name": f"forward_{base}"}}
    fname, fwd = _run_inner(fwd_cfg, inp.input_shapes, inp)
    bname, bwd = _run_inner(bwd_cfg, inp.input_shapes, inp)
    weights = prefixed_weights(fwd.weights, fname) + prefixed_weights(bwd.weights, bname)
    if not (fwd.known and bwd.known) or not fwd.output_shapes:
        return RuleOutput((), weights, known=False, note=fwd.note or bwd.note)
    return_state = bool((fwd_cfg.get("config") or {}).get("return_state"))
    out, states = fwd.output_shapes[0], fwd.output_shapes[1:]
    if not return_state:
        states = ()
    mode = inp.config.get("merge_mode", "concat")
    if mode == "concat":
        last = out[-1]
        merged: tuple[Shape, ...] = ((*out[:-1], None if last is None else 2 * last),)
    elif mode is None:
        merged = (out, out)
    else:
        merged = (out,)
    formula = _sum_formula([(fname, fwd.formula), (bname, bwd.formula)])
    return RuleOutput((*merged, *states, *states), weights, formula)


@register_keras_rule("TimeDistributed")
def _time_distributed(inp: RuleInput) -> RuleOutput:
    layer = inp.config.get("layer")
    if not isinstance(layer, Mapping):
        return RuleOutput((), known=False, note="the TimeDistributed config names no layer")
    shape = inp.input_shape
    if len(shape) < 3:
        return RuleOutput((), known=False, note=f"TimeDistributed needs (batch, time, ...) input, got {shape}")
    name, out = _run_inner(layer, ((shape[0], *shape[2:]),), inp)
    weights = prefixed_weights(out.weights, name)
    if not out.known or not out.output_shapes:
        return RuleOutput((), weights, out.formula, out.note, known=False)
    child = out.output_shapes[0]
    note = "the same weights are applied to every time step"
    return RuleOutput(((child[0], shape[1], *child[1:]),), weights, out.formula, note)
