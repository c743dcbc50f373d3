"""Rules for Keras merge layers: none has weights; only the output shape is derived.

Sources: keras/src/layers/merging/{base_merge,concatenate,dot}.py ``compute_output_shape``.
"""

from __future__ import annotations

from paramscope.core.anatomy import Shape
from paramscope.rules.keras.registry import RuleInput, RuleOutput, register_keras_rule
from paramscope.rules.keras.shapes import broadcast

__all__: list[str] = []


@register_keras_rule("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
def elementwise(inp: RuleInput) -> RuleOutput:
    """Elementwise over the inputs: their broadcast shape (batch axis from any input)."""
    shapes = inp.input_shapes
    inner = broadcast([s[1:] for s in shapes])
    batches = {s[0] for s in shapes} - {None}
    batch = batches.pop() if len(batches) == 1 else None
    return RuleOutput(((batch, *inner),))


@register_keras_rule("Concatenate")
def concatenate(inp: RuleInput) -> RuleOutput:
    """The inputs' sizes along ``axis`` add up; other axes are the first input's."""
    shapes = inp.input_shapes
    axis = int(inp.config.get("axis", -1))
    out: list[int | None] = list(shapes[0])
    total: int | None = 0
    for s in shapes:
        d = s[axis]
        total = None if total is None or d is None else total + d
    out[axis] = total
    return RuleOutput((tuple(out),))


@register_keras_rule("Dot")
def dot(inp: RuleInput) -> RuleOutput:
    """Contracts ``axes`` of two inputs; the second input's batch axis is dropped."""
    s1, s2 = list(inp.input_shapes[0]), list(inp.input_shapes[1])
    axes = inp.config.get("axes", -1)
    if isinstance(axes, int):
        pair = [axes % len(s1), axes % len(s2)] if axes < 0 else [axes, axes]
    else:
        pair = [int(a) for a in axes]
    s1.pop(pair[0])
    s2.pop(pair[1])
    s2.pop(0)
    out: Shape = tuple(s1 + s2) if len(s1 + s2) > 1 else (*s1, *s2, 1)
    return RuleOutput((out,))


@register_keras_rule("CustomScaleLayer")
def custom_scale(inp: RuleInput) -> RuleOutput:
    """Inception-ResNet-v2's residual ``x + r * scale`` (keras/src/applications/inception_resnet_v2.py)."""
    return RuleOutput((inp.input_shapes[0],))
