"""Rules for Keras preprocessing layers that appear inside models.

Normalization (keras/src/layers/preprocessing/normalization.py ``build``): without a
``mean`` in its config it keeps ``mean`` and ``variance`` (over the kept ``axis``) and an
int32 ``count``, all non-trainable, filled by ``adapt()``; with a ``mean`` it stores nothing.
"""

from __future__ import annotations

from paramscope.core.anatomy import Formula, Role, Shape
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight, register_keras_rule
from paramscope.rules.keras.shapes import dim, fmt_int, norm_axes, pos_int

__all__: list[str] = []

_ADAPT_WHY = "set by Normalization.adapt() from the data; not trained by gradient"


@register_keras_rule("Normalization")
def normalization(inp: RuleInput) -> RuleOutput:
    """``mean``, ``variance`` over the kept axes and a scalar ``count``, unless mean is given."""
    shape = inp.input_shape
    if inp.config.get("mean") is not None:
        return RuleOutput((shape,), note="mean and variance are constants of the config, not weights")
    axis = inp.config.get("axis", -1)
    axes = sorted(norm_axes(() if axis is None else axis, len(shape)))
    dims = tuple(dim(shape, a, "kept axis") for a in axes)
    label = " x ".join(f"d{a}" for a in axes) or "1"
    numeric = " x ".join(fmt_int(d) for d in dims) or "1"
    f = Formula(label, numeric)
    weights = (
        Weight("mean", dims, Role.STATISTIC, f, _ADAPT_WHY),
        Weight("variance", dims, Role.STATISTIC, f, _ADAPT_WHY),
        Weight("count", (), Role.STATISTIC, Formula("1", "1"),
               "samples seen by adapt(); kept for compatibility with older saved models", "int32"),
    )
    return RuleOutput((shape,), weights, Formula(f"2 x {label} + 1", f"2 x {numeric} + 1"))


@register_keras_rule(
    "Rescaling", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
    "RandomContrast", "RandomBrightness",
)
def same_shape(inp: RuleInput) -> RuleOutput:
    """Elementwise or geometric transforms that keep the shape and store nothing."""
    return RuleOutput((inp.input_shape,))


@register_keras_rule("Resizing", "CenterCrop", "RandomCrop")
def to_size(inp: RuleInput) -> RuleOutput:
    """Images to ``height`` x ``width`` (batched or not, channels first or last)."""
    out: list[int | None] = list(inp.input_shape)
    h, w = pos_int(inp.config, "height"), pos_int(inp.config, "width")
    last = inp.config.get("data_format") in (None, "channels_last")
    first_spatial = (1 if last else 2) if len(out) == 4 else (0 if last else 1)
    out[first_spatial], out[first_spatial + 1] = h, w
    result: Shape = tuple(out)
    return RuleOutput((result,))
