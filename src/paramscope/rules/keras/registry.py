"""The registry of Keras layer rules and the data they exchange."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from paramscope.core.anatomy import Formula, Role, Shape
from paramscope.rules._families import Families

__all__ = [
    "Weight",
    "RuleInput",
    "RuleOutput",
    "Rule",
    "register_keras_rule",
    "keras_rule",
    "registered_keras_rules",
]

#: Modules holding the built-in rules; imported on the first lookup.
_FAMILIES = Families("paramscope.rules.keras", (
    "core",
    "convolution",
    "normalization",
    "pooling",
    "reshaping",
    "merging",
    "regularization",
    "activations",
    "rnn",
    "attention",
    "preprocessing",
    "wrappers",
))


@dataclass(frozen=True, slots=True)
class Weight:
    """One weight a layer creates.

    Attributes:
        name: the variable's name in Keras (``"kernel"``, ``"moving_mean"``).
        shape: its shape.
        role: trainable, or why not (statistic, buffer...). A frozen layer's trainable
            weights are turned into :attr:`Role.FROZEN` by the reader, not by the rule.
        formula: how its size follows from the config.
        why: one sentence for a non-obvious role.
        dtype: the variable dtype when it differs from the layer's (``int8`` kernels,
            Normalization's ``count``); ``None`` means the policy's variable dtype.
        is_param: whether Keras counts it in ``count_params()``.
    """

    name: str
    shape: Shape
    role: Role = Role.TRAINABLE
    formula: Formula | None = None
    why: str = ""
    dtype: str | None = None
    is_param: bool = True


@dataclass(frozen=True, slots=True)
class RuleInput:
    """What a rule knows about one layer.

    Attributes:
        class_name: the Keras class name.
        config: the layer's ``get_config()`` dict.
        input_shapes: shapes of its inputs at build time (batch dimension included).
        variable_dtype: the dtype policy's variable dtype (``"float32"`` under mixed precision).
        quantization: ``"int8"``, ``"int4"``, ``"float8"`` or ``None``.
        build_config: the layer's ``build_config`` if the config has one.
    """

    class_name: str
    config: Mapping[str, Any]
    input_shapes: tuple[Shape, ...]
    variable_dtype: str = "float32"
    quantization: str | None = None
    build_config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> Shape:
        """The first input's shape (most layers have one input)."""
        return self.input_shapes[0]


@dataclass(frozen=True, slots=True)
class RuleOutput:
    """What a rule says about one layer.

    Attributes:
        output_shapes: the shapes of its outputs.
        weights: the weights it creates, in Keras's order.
        formula: layer-level derivation of its parameter count, e.g. ``4 x 512``.
        note: anything else worth saying (e.g. why a count is unknown).
        known: ``False`` if the rule could not determine the weights.
    """

    output_shapes: tuple[Shape, ...]
    weights: tuple[Weight, ...] = ()
    formula: Formula | None = None
    note: str = ""
    known: bool = True


Rule = Callable[[RuleInput], RuleOutput]

_RULES: dict[str, Rule] = {}


def register_keras_rule(*class_names: str) -> Callable[[Rule], Rule]:
    """Register a rule for Keras layer classes, by exact class name.

    Example:
        >>> @register_keras_rule("MyScale")
        ... def _my_scale(inp: RuleInput) -> RuleOutput:
        ...     n = inp.input_shape[-1]
        ...     return RuleOutput((inp.input_shape,), (Weight("scale", (n,)),))
    """

    def deco(fn: Rule) -> Rule:
        for name in class_names:
            _RULES[name] = fn
        return fn

    return deco


def keras_rule(class_name: str) -> Rule | None:
    """The rule for a Keras class name, or ``None`` if there is none."""
    _FAMILIES.load()
    return _RULES.get(class_name)


def registered_keras_rules() -> list[str]:
    """Names of all Keras classes that have a rule, sorted."""
    _FAMILIES.load()
    return sorted(_RULES)
