"""Output shapes of ``keras.ops`` calls recorded as nodes of a Functional config.

A Functional model built with ``keras.ops.add(a, b)`` saves the call as a node whose
``module`` is ``keras.src.ops.numpy`` (or another ``keras.src.ops`` module). Such nodes have
no weights; their output shape is read from the config where a consumer records it, and
derived here for the elementwise operations where it is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paramscope.core.anatomy import Shape
from paramscope.rules.keras.shapes import broadcast

__all__ = ["is_ops_module", "op_output_shape", "is_elementwise_op", "LAYER_NAMED_OPS"]

# keras/src/ops/numpy.py and nn.py: operations whose output has the broadcast input shape.
_BROADCAST = frozenset(
    {
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "FloorDivide", "Mod", "Power",
        "Maximum", "Minimum", "Equal", "NotEqual", "Greater", "GreaterEqual", "Less",
        "LessEqual", "LogicalAnd", "LogicalOr", "LogicalXor", "Where",
    }
)  # fmt: skip
# Operations that keep their single input's shape.
_SAME = frozenset(
    {
        "Abs", "Absolute", "Negative", "Exp", "Log", "Sqrt", "Square", "Rsqrt", "Sin", "Cos",
        "Tanh", "Sigmoid", "Relu", "Relu6", "Gelu", "Silu", "Elu", "Selu", "Softplus",
        "Softsign", "LeakyRelu", "HardSigmoid", "HardSilu", "Softmax", "LogSoftmax", "Cast",
        "LogicalNot", "Sign", "Floor", "Ceil", "Round", "Clip", "Erf", "Reciprocal",
        "StopGradient", "ConvertToTensor",
    }
)  # fmt: skip

#: keras.ops operation classes that share their name with a Keras layer class.
LAYER_NAMED_OPS = frozenset(
    {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average", "Dot", "Softmax", "Concatenate",
     "Identity", "Reshape"}
)


def is_ops_module(module: object) -> bool:
    """Whether a config entry's ``module`` names a ``keras.ops`` operation, not a layer."""
    return isinstance(module, str) and (
        module.startswith("keras.src.ops") or module.startswith("keras.ops")
    )


def op_output_shape(
    class_name: str, config: Mapping[str, Any], input_shapes: Sequence[Shape | None]
) -> Shape | None:
    """The output shape of an elementwise op, or ``None`` when it is not derivable here.

    Example:
        >>> op_output_shape("Add", {}, [(None, 8), (None, 8)])
        (None, 8)
    """
    if not input_shapes or any(s is None for s in input_shapes):
        return None
    shapes = [s for s in input_shapes if s is not None]
    if class_name in _BROADCAST:
        try:
            return broadcast(shapes)
        except ValueError:
            return None
    if class_name in _SAME and len(shapes) == 1:
        return shapes[0]
    return None


def is_elementwise_op(class_name: str) -> bool:
    """Whether a ``keras.ops`` node class is an elementwise operation."""
    return class_name in _BROADCAST or class_name in _SAME
