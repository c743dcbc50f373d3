"""Rules for Keras normalization layers.

Sources: keras/src/layers/normalization/*.py (``build``). BatchNormalization's moving
statistics are variables Keras counts as non-trainable parameters; they are updated from
batch statistics during training, not by gradient.
"""

from __future__ import annotations

from collections.abc import Mapping

from paramscope.core.anatomy import Formula, Role
from paramscope.rules.keras.configs import is_keras_module, parse_shapes
from paramscope.rules.keras.policy import parse_policy
from paramscope.rules.keras.registry import (
    RuleInput,
    RuleOutput,
    Weight,
    keras_rule,
    register_keras_rule,
)
from paramscope.rules.keras.shapes import dim, fmt_int, norm_axes, pos_int

__all__: list[str] = []

MOVING_WHY = "running average of the batch {what}s, updated by momentum during training, not by gradient"


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
    raw = inp.config.get("axis", -1)
    # keras sorts the axis values as given, so [1, -1] becomes [-1, 1]: the weight's axes
    # follow that order (layer_normalization.py and rms_normalization.py ``build``).
    axes = norm_axes(sorted(raw) if isinstance(raw, list) else raw, len(shape))
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
    """ConvNeXt's LayerScale (keras/src/applications/convnext.py): one scale per channel.

    The layer keeps it in ``self.gamma`` but creates it without a name, so Keras calls the
    variable ``variable``.
    """
    n = pos_int(inp.config, "projection_dim")
    f = Formula("projection_dim", fmt_int(n))
    w = Weight("variable", (n,), formula=f, why="LayerScale's gamma: a learned per-channel scale")
    return RuleOutput((inp.input_shape,), (w,), f)


_POWER_WHY = (
    "power-iteration estimate of the kernel's leading singular vector, updated in training "
    "steps, not by gradient"
)


@register_keras_rule("SpectralNormalization")
def spectral_normalization(inp: RuleInput) -> RuleOutput:
    """The wrapped layer's weights (named ``inner/kernel``...) plus ``vector_u (1, units)``.

    Source: keras/src/layers/normalization/spectral_normalization.py ``build``: ``vector_u``
    has shape ``(1, kernel.shape[-1])`` and the kernel's dtype, and is not trainable.
    """
    inner = inp.config.get("layer")
    if not isinstance(inner, Mapping) or not isinstance(inner.get("config"), Mapping):
        raise ValueError("SpectralNormalization has no wrapped 'layer' config")
    cls = str(inner.get("class_name"))
    rule = keras_rule(cls) if is_keras_module(inner.get("module")) else None
    if rule is None:
        return RuleOutput((), known=False, note=f"no rule for the wrapped layer {cls}")
    cfg = inner["config"]
    build = inner.get("build_config")
    shapes = parse_shapes(build.get("input_shape")) if isinstance(build, Mapping) else None
    in_shapes = tuple(s for s in shapes if s is not None) if shapes else inp.input_shapes
    pol = parse_policy(cfg.get("dtype"))
    out = rule(RuleInput(cls, cfg, in_shapes, pol.variable_dtype, pol.quantization,
                         build if isinstance(build, Mapping) else {}))
    name = str(cfg.get("name", cls))
    kernel = next((w for w in out.weights if w.name in ("kernel", "embeddings")), None)
    if kernel is None or not kernel.shape or kernel.shape[-1] is None:
        raise ValueError(f"the wrapped {cls} has no kernel or embeddings to normalise")
    n = kernel.shape[-1]
    weights = tuple(
        Weight(f"{name}/{w.name}", w.shape, w.role, w.formula, w.why, w.dtype or pol.variable_dtype, w.is_param)
        for w in out.weights
    ) + (
        Weight("vector_u", (1, n), Role.STATISTIC, Formula("kernel.shape[-1]", fmt_int(n)), _POWER_WHY,
               kernel.dtype or pol.variable_dtype),
    )
    formula = None
    if out.formula is not None:
        formula = Formula(f"{out.formula.symbolic} + kernel.shape[-1]", f"{out.formula.numeric} + {fmt_int(n)}")
    return RuleOutput(out.output_shapes, weights, formula, out.note, out.known)
