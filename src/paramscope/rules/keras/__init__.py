"""Keras layer rules, one module per family of layers, looked up by exact class name.

A rule is a function from a :class:`RuleInput` (the layer's config and input shapes) to a
:class:`RuleOutput` (output shapes, weights with roles and formulas). Register one with
:func:`register_keras_rule`; look one up with :func:`keras_rule`.
"""

from paramscope.rules.keras.registry import (
    RuleInput as RuleInput,
    RuleOutput as RuleOutput,
    Weight as Weight,
    keras_rule as keras_rule,
    register_keras_rule as register_keras_rule,
    registered_keras_rules as registered_keras_rules,
)
