"""Rules for Keras normalization layers.

Sources: keras/src/layers/normalization/*.py (``build``). BatchNormalization's moving
statistics are variables Keras counts as non-trainable parameters; they are updated from
batch statistics during training, not by gradient.
"""

from __future__ import annotations

from paramscope.core.anatomy import Formula, Role
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight, register_keras_rule
from paramscope.rules.keras.shapes import dim, fmt_int, norm_axes

__all__: list[str] = []

MOVING_WHY = (
    "a running average of the batch {what}, updated during training by momentum, not by "
    "gradient; Keras counts it as a non-trainable parameter"
)


def _per_feature(weights: list[Weight], n: int, label: str = "features") -> Formula:
    k = len(weights)
    if k == 1:
        return Formula(label, fmt_int(n))
    return Formula(f"{k} x {label}", f"{k} x {fmt_int(n)}")


@register_keras_rule("BatchNormalization")
def batch_normalization(inp: RuleInput) -> RuleOutput:
    """gamma, beta (trained) and moving_mean, moving_variance (statistics), each (features,)."""
    shape = inp.input_shape
    axis = inp.config.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    (ax,) = norm_axes(axis, len(shape))
    n = dim(shape, ax, "normalized axis")
    f = Formula("features", fmt_int(n))
    w: list[Weight] = []
    if inp.config.get("scale", True):
        w.append(Weight("gamma", (n,), formula=f, why="per-feature scale, learned"))
    if inp.config.get("center", True):
        w.append(Weight("beta", (n,), formula=f, why="per-feature shift, learned"))
    w.append(Weight("moving_mean", (n,), Role.STATISTIC, f, MOVING_WHY.format(what="mean")))
    w.append(Weight("moving_variance", (n,), Role.STATISTIC, f, MOVING_WHY.format(what="variance")))
    if inp.config.get("renorm", False):
        for name in ("moving_stddev", "renorm_mean", "renorm_stddev"):
            w.append(Weight(name, (n,), Role.STATISTIC, f, "a batch renormalization statistic, not trained"))
    return RuleOutput((shape,), tuple(w), _per_feature(w, n))


def _axes_shape(inp: RuleInput) -> tuple[tuple[int, ...], str, str]:
    shape = inp.input_shape
    axes = sorted(norm_axes(inp.config.get("axis", -1), len(shape)))
    dims = tuple(dim(shape, a, "normalized axis") for a in axes)
    label = "features" if len(dims) == 1 else " x ".join(f"d{a}" for a in axes)
    return dims, label, " x ".join(fmt_int(d) for d in dims)


@register_keras_rule("LayerNormalization")
def layer_normalization(inp: RuleInput) -> RuleOutput:
    """gamma (if scale or rms_scaling) and beta (if center and not rms_scaling) over the axes."""
    dims, label, numeric = _axes_shape(inp)
    rms = bool(inp.config.get("rms_scaling", False))
    f = Formula(label, numeric)
    w: list[Weight] = []
    if inp.config.get("scale", True) or rms:
        w.append(Weight("gamma", dims, formula=f))
    if inp.config.get("center", True) and not rms:
        w.append(Weight("beta", dims, formula=f))
    layer_f = Formula(f"{len(w)} x {label}", f"{len(w)} x {numeric}") if len(w) > 1 else (f if w else None)
    return RuleOutput((inp.input_shape,), tuple(w), layer_f)


@register_keras_rule("RMSNormalization")
def rms_normalization(inp: RuleInput) -> RuleOutput:
    """One ``scale`` over the normalized axes."""
    dims, label, numeric = _axes_shape(inp)
    f = Formula(label, numeric)
    return RuleOutput((inp.input_shape,), (Weight("scale", dims, formula=f),), f)


@register_keras_rule("GroupNormalization")
def group_normalization(inp: RuleInput) -> RuleOutput:
    """gamma and beta, one per channel (not per group)."""
    shape = inp.input_shape
    (ax,) = norm_axes(inp.config.get("axis", -1), len(shape))
    n = dim(shape, ax, "channel axis")
    groups = inp.config.get("groups", 32)
    if groups != -1 and (n % groups or n < groups):
        raise ValueError(f"{n} channels cannot be split into {groups} groups")
    f = Formula("channels", fmt_int(n))
    w: list[Weight] = []
    if inp.config.get("scale", True):
        w.append(Weight("gamma", (n,), formula=f))
    if inp.config.get("center", True):
        w.append(Weight("beta", (n,), formula=f))
    return RuleOutput((shape,), tuple(w), _per_feature(w, n, "channels") if w else None)


@register_keras_rule("UnitNormalization")
def unit_normalization(inp: RuleInput) -> RuleOutput:
    """No weights: divides by the L2 norm."""
    return RuleOutput((inp.input_shape,))


@register_keras_rule("LayerScale")
def layer_scale(inp: RuleInput) -> RuleOutput:
    """ConvNeXt's LayerScale (keras/src/applications/convnext.py): ``gamma (projection_dim,)``."""
    n = int(inp.config["projection_dim"])
    f = Formula("projection_dim", fmt_int(n))
    return RuleOutput((inp.input_shape,), (Weight("gamma", (n,), formula=f, why="per-channel scale, learned"),), f)
