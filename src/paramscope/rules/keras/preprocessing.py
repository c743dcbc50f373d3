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
    "RandomContrast", "RandomBrightness", "AugMix", "AutoContrast",
    "ContrastLimitedAdaptiveHistogramEqualization", "CutMix", "Equalization", "MixUp",
    "RandAugment", "RandomColorDegeneration", "RandomColorJitter", "RandomElasticTransform",
    "RandomErasing", "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert",
    "RandomPerspective", "RandomPosterization", "RandomSaturation", "RandomSharpness",
    "RandomShear", "Solarization",
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


@register_keras_rule("Discretization")
def discretization(inp: RuleInput) -> RuleOutput:
    """Bucket indices (``int``) or per-bucket encodings; no weights (the boundaries are config).

    Source: keras/src/layers/preprocessing/discretization.py ``compute_output_shape``.
    """
    shape = inp.input_shape
    mode = inp.config.get("output_mode", "int")
    if mode == "int":
        return RuleOutput((shape,))
    bounds = inp.config.get("bin_boundaries")
    depth = len(bounds) + 1 if isinstance(bounds, list) else pos_int(inp.config, "num_bins")
    if mode == "one_hot":
        out: Shape = (*shape[:-1], depth) if len(shape) > 1 and shape[-1] == 1 else (*shape, depth)
    else:
        out = (shape[0], *shape[2:], depth) if len(shape) >= 2 else (depth,)
    return RuleOutput((out,))


@register_keras_rule("CategoryEncoding")
def category_encoding(inp: RuleInput) -> RuleOutput:
    """Token ids to one-hot, multi-hot or counts over ``num_tokens``; no weights.

    Source: keras/src/layers/preprocessing/category_encoding.py ``compute_output_shape``.
    """
    shape = inp.input_shape
    n = pos_int(inp.config, "num_tokens")
    if not shape:
        return RuleOutput(((n,),))
    if inp.config.get("output_mode", "multi_hot") == "one_hot" and (shape[-1] != 1 or len(shape) == 1):
        return RuleOutput(((*shape, n),))
    return RuleOutput(((*shape[:-1], n),))
