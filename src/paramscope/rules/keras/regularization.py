"""Rules for Keras regularization layers: noise and dropout, no weights, shape unchanged.

Dropout-style layers draw random numbers from a seed generator whose state Keras keeps as a
variable outside ``layer.weights``; it is not a parameter and is not listed.
"""

from __future__ import annotations

from paramscope.rules.keras.registry import RuleInput, RuleOutput, register_keras_rule

__all__: list[str] = []


@register_keras_rule(
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization",
)
def no_weights(inp: RuleInput) -> RuleOutput:
    """The output has the input's shape; nothing is stored."""
    return RuleOutput((inp.input_shape,))
