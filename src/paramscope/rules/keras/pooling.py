"""Rules for Keras pooling layers: none has weights; only the output shape is derived.

Output lengths follow keras/src/ops/operation_utils.py ``compute_pooling_output_shape``
(``strides`` defaults to ``pool_size``) and base_global_pooling.py / base_adaptive_pooling.py.
"""

from __future__ import annotations

from paramscope.core.anatomy import Shape
from paramscope.rules.keras.registry import RuleInput, RuleOutput, register_keras_rule
from paramscope.rules.keras.shapes import channels_last, ntuple, pool_length

__all__: list[str] = []

_WINDOWED = [f"{kind}Pooling{n}D" for kind in ("Max", "Average") for n in (1, 2, 3)]
_GLOBAL = [f"Global{kind}Pooling{n}D" for kind in ("Max", "Average") for n in (1, 2, 3)]
_ADAPTIVE = [f"Adaptive{kind}Pooling{n}D" for kind in ("Max", "Average") for n in (1, 2, 3)]


def _rank(class_name: str) -> int:
    return int(class_name[-2])


@register_keras_rule(*_WINDOWED)
def pooling(inp: RuleInput) -> RuleOutput:
    """A window of ``pool_size`` moved by ``strides`` (default: ``pool_size``)."""
    rank = _rank(inp.class_name)
    shape = inp.input_shape
    c = inp.config
    pool = ntuple(c.get("pool_size", 2), rank, "pool_size")
    strides = pool if c.get("strides") is None else ntuple(c["strides"], rank, "strides")
    padding = str(c.get("padding", "valid"))
    last = channels_last(c)
    spatial = shape[1:-1] if last else shape[2:]
    out = [pool_length(spatial[i], pool[i], padding, strides[i]) for i in range(rank)]
    result: Shape = (shape[0], *out, shape[-1]) if last else (shape[0], shape[1], *out)
    return RuleOutput((result,))


@register_keras_rule(*_GLOBAL)
def global_pooling(inp: RuleInput) -> RuleOutput:
    """Pools every spatial position; ``keepdims`` keeps them as size-1 axes."""
    shape = inp.input_shape
    n_spatial = len(shape) - 2
    last = channels_last(inp.config)
    channels = shape[-1] if last else shape[1]
    if inp.config.get("keepdims", False):
        ones = (1,) * n_spatial
        out: Shape = (shape[0], *ones, channels) if last else (shape[0], channels, *ones)
    else:
        out = (shape[0], channels)
    return RuleOutput((out,))


@register_keras_rule(*_ADAPTIVE)
def adaptive_pooling(inp: RuleInput) -> RuleOutput:
    """Pools to a fixed ``output_size`` whatever the input size."""
    rank = _rank(inp.class_name)
    shape = inp.input_shape
    size = ntuple(inp.config["output_size"], rank, "output_size")
    last = channels_last(inp.config)
    out: Shape = (shape[0], *size, shape[-1]) if last else (shape[0], shape[1], *size)
    return RuleOutput((out,))
