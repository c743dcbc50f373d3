"""Rules for Keras activation layers; only PReLU has a weight.

Source: keras/src/layers/activations/prelu.py ``build``: ``alpha`` has the input's
non-batch shape, with each axis in ``shared_axes`` (1-based) reduced to 1.
"""

from __future__ import annotations

from math import prod

from paramscope.core.anatomy import Formula
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight, register_keras_rule
from paramscope.rules.keras.shapes import dim

__all__: list[str] = []


@register_keras_rule("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")
def activation(inp: RuleInput) -> RuleOutput:
    """Elementwise (or softmax over an axis): same shape, no weights."""
    return RuleOutput((inp.input_shape,))


@register_keras_rule("PReLU")
def prelu(inp: RuleInput) -> RuleOutput:
    """One learned negative slope per element of the non-batch shape, unless shared."""
    shape = inp.input_shape
    shared = inp.config.get("shared_axes")
    shared_axes = [] if shared is None else ([shared] if isinstance(shared, int) else list(shared))
    alpha: list[int] = []
    names: list[str] = []
    for axis in range(1, len(shape)):
        if axis in shared_axes:
            alpha.append(1)
            continue
        alpha.append(dim(shape, axis, "PReLU axis"))
        names.append(f"d{axis}")
    numeric = " x ".join(f"{d:,}" for d in alpha if d != 1) or "1"
    f = Formula(" x ".join(names) or "1", numeric)
    weight = Weight("alpha", tuple(alpha), formula=f, why="the learned slope for negative inputs")
    assert prod(alpha) >= 0
    return RuleOutput((shape,), (weight,), f)
