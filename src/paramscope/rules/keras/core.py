"""Rules for Keras core layers: Dense, EinsumDense, Embedding, Identity, Masking.

Weight names, shapes and order follow keras/src/layers/core/{dense,einsum_dense,embedding}.py
(``build`` and ``variable_serialization_spec``).
"""

from __future__ import annotations

import re

from paramscope.core.anatomy import Formula, Role, Shape
from paramscope.rules.keras.lora import apply_lora
from paramscope.rules.keras.quantized import (
    GIDX_WHY,
    QUANT_WHY,
    SCALE_WHY,
    ZERO_WHY,
    float8_weights,
    int4_block_size,
    int4_grouped,
    packed,
)
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight, register_keras_rule
from paramscope.rules.keras.shapes import dim, fmt_int, pos_int, size_formula

__all__: list[str] = []


def _unsupported(inp: RuleInput, out: Shape) -> RuleOutput:
    return RuleOutput(
        (out,),
        known=False,
        note=f"{inp.quantization} quantization: its variables depend on calibration and are not derived",
    )


def _sum_formula(weights: tuple[Weight, ...]) -> Formula | None:
    parts = [w.formula for w in weights if w.formula is not None]
    if not parts:
        return None
    return Formula(" + ".join(p.symbolic for p in parts), " + ".join(p.numeric for p in parts))


@register_keras_rule("Dense")
def dense(inp: RuleInput) -> RuleOutput:
    """``kernel (input_dim, units)`` and ``bias (units,)``; quantized variants per mode; LoRA."""
    logical = (dim(inp.input_shape, -1, "input feature size"), pos_int(inp.config, "units"))
    return apply_lora(inp, _dense(inp), "kernel", logical)


def _dense(inp: RuleInput) -> RuleOutput:
    shape = inp.input_shape
    n_in = dim(shape, -1, "input feature size")
    units = pos_int(inp.config, "units")
    use_bias = inp.config.get("use_bias", True)
    out: Shape = (*shape[:-1], units)
    bias = (Weight("bias", (units,), formula=Formula("units", fmt_int(units))),) if use_bias else ()
    q = inp.quantization
    kernel_f = size_formula(["input_dim", "units"], [n_in, units])
    if q is None or q == "float8":
        weights = (Weight("kernel", (n_in, units), formula=kernel_f), *bias)
        layer_f = _sum_formula(weights)
        if q == "float8":
            weights = (*weights, *float8_weights(inp.config))
        return RuleOutput((out,), weights, layer_f)
    if q == "int8":
        weights = (
            Weight("kernel", (n_in, units), Role.FROZEN, kernel_f, QUANT_WHY, "int8"),
            *bias,
            Weight("kernel_scale", (units,), Role.FROZEN, Formula("units", fmt_int(units)), SCALE_WHY),
        )
        return RuleOutput((out,), weights, _sum_formula(weights))
    if q == "int4":
        block = int4_block_size(inp.config)
        scale, groups = int4_grouped(n_in, units, block)
        return RuleOutput((out,), _int4(n_in, units, scale, groups, block, bias, "kernel"))
    return _unsupported(inp, out)


def _int4(
    rows: int, cols: int, scale: tuple[int, ...], groups: int, block: int | None,
    bias: tuple[Weight, ...], name: str,
) -> tuple[Weight, ...]:
    kernel = Weight(
        name, (rows, packed(cols)), Role.FROZEN,
        Formula("rows x ceil(columns / 2)", f"{fmt_int(rows)} x {fmt_int(packed(cols))}"),
        QUANT_WHY + "; two int4 values are packed in each int8", "int8",
    )
    scale_f = (
        Formula("n_groups x columns", f"{groups} x {fmt_int(cols)}")
        if block else Formula("columns", fmt_int(cols))
    )
    out = [kernel, *bias, Weight(f"{name}_scale", scale, Role.FROZEN, scale_f, SCALE_WHY)]
    if block:
        out.append(Weight(f"{name}_zero", scale, Role.FROZEN, scale_f, ZERO_WHY, "int8"))
        out.append(Weight("g_idx", (rows,), Role.FROZEN, Formula("rows", fmt_int(rows)), GIDX_WHY, "float32"))
    return tuple(out)


def _specs(equation: str, rank: int) -> tuple[str, str, str, int, bool]:
    """Input, weight and output labels of an EinsumDense equation, ellipsis expanded."""
    eq = equation.replace("...", "0")
    for pattern, left in (
        (r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$", False),
        (r"0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)$", True),
        (r"([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0$", False),
    ):
        m = re.match(pattern, eq)
        if m:
            i, w, o = m.groups()
            return i, w, o, rank - len(i), left
    raise ValueError(f"unsupported einsum equation {equation!r}")


def einsum_shapes(
    equation: str, bias_axes: str | None, input_shape: Shape, partial: tuple[int | None, ...]
) -> tuple[tuple[int, ...], tuple[int, ...] | None, Shape, str, str]:
    """Kernel shape, bias shape, output shape, weight labels and output labels of EinsumDense.

    Example:
        >>> einsum_shapes("abc,cde->abde", "de", (None, 10, 64), (None, 8, 16))[:3]
        ((64, 8, 16), (8, 16), (None, None, 8, 16))
    """
    i_spec, w_spec, o_spec, elided, left = _specs(equation, len(input_shape))
    out: list[int | None] = [input_shape[0], *partial]
    if elided > 0 and left:
        for k in range(1, elided):
            out.insert(1, input_shape[k])
    elif elided > 0:
        out.extend(input_shape[len(input_shape) - elided:])
    in_map = {c: (k + elided - len(input_shape) if left else k) for k, c in enumerate(i_spec)}
    out_map = {c: (k + elided if left else k) for k, c in enumerate(o_spec)}
    kernel: list[int] = []
    for c in w_spec:
        if c in out_map:
            d = out[out_map[c]]
        elif c in in_map:
            d = input_shape[in_map[c]]
        else:
            raise ValueError(f"weight label {c!r} is in neither the input nor the output")
        if d is None:
            raise ValueError(f"the size of weight axis {c!r} is unknown")
        kernel.append(d)
    bias: tuple[int, ...] | None = None
    if bias_axes:
        first = min(o_spec.index(c) for c in bias_axes)
        offset = elided if left else 0
        dims = []
        for c in o_spec[first:]:
            d = out[o_spec.index(c) + offset] if c in bias_axes else 1
            if d is None:
                raise ValueError(f"the size of bias axis {c!r} is unknown")
            dims.append(d)
        if not left:
            dims.extend([1] * max(elided, 0))
        bias = tuple(dims)
    return tuple(kernel), bias, tuple(out), w_spec, o_spec


def _einsum_scale_shape(kernel: tuple[int, ...], w_spec: str, o_spec: str) -> tuple[int, ...] | None:
    """Shape of an int8 EinsumDense ``kernel_scale``: the kernel with its reduced axes set to 1,
    laid out along the output axes (keras ``_get_kernel_scale_shape``); ``None`` if unusual."""
    reduced = [k for k, c in enumerate(w_spec) if c not in o_spec]
    expand = [k for k, c in enumerate(o_spec) if c not in w_spec]
    order = [w_spec.index(c) for c in o_spec if c in w_spec]
    for axis in reduced:
        if not expand:
            return None
        order.insert(expand.pop(0), axis)
    dims = [1 if k in reduced else kernel[k] for k in range(len(kernel))]
    laid = [dims[k] for k in order]
    for a in sorted(expand):
        laid.insert(a, 1)
    return tuple(laid)


@register_keras_rule("EinsumDense")
def einsum_dense(inp: RuleInput) -> RuleOutput:
    """Kernel and bias shapes read from the einsum equation, ``output_shape`` and ``bias_axes``."""
    out = _einsum_dense(inp)
    if not inp.config.get("lora_rank"):
        return out
    partial_raw = inp.config.get("output_shape")
    partial = (partial_raw,) if isinstance(partial_raw, int) else tuple(partial_raw or ())
    kernel = einsum_shapes(str(inp.config["equation"]), inp.config.get("bias_axes"), inp.input_shape, partial)[0]
    return apply_lora(inp, out, "kernel", kernel)


def _einsum_dense(inp: RuleInput) -> RuleOutput:
    partial_raw = inp.config.get("output_shape")
    partial = (partial_raw,) if isinstance(partial_raw, int) else tuple(partial_raw or ())
    kernel, bias_shape, out, w_spec, o_spec = einsum_shapes(
        str(inp.config["equation"]), inp.config.get("bias_axes"), inp.input_shape, partial
    )
    kernel_f = size_formula([f"'{c}'" for c in w_spec], list(kernel))
    bias: tuple[Weight, ...] = ()
    if bias_shape is not None:
        bias = (Weight("bias", bias_shape, formula=size_formula(
            [f"'{c}'" if n > 1 else "1" for c, n in zip(o_spec[-len(bias_shape):], bias_shape)],
            list(bias_shape)) if len(bias_shape) <= len(o_spec) else None),)
    q = inp.quantization
    weights: tuple[Weight, ...]
    if q is None or q == "float8":
        weights = (Weight("kernel", kernel, formula=kernel_f), *bias)
        layer_f = _sum_formula(weights)
        if q == "float8":
            weights = (*weights, *float8_weights(inp.config))
        return RuleOutput((out,), weights, layer_f)
    if q == "int8":
        scale = _einsum_scale_shape(kernel, w_spec, o_spec)
        if scale is None:
            return RuleOutput((out,), known=False, note="int8 kernel_scale layout for this equation is not derived")
        weights = (
            Weight("kernel", kernel, Role.FROZEN, kernel_f, QUANT_WHY, "int8"),
            *bias,
            Weight("kernel_scale", scale, Role.FROZEN, size_formula([], []) if not scale else
                   Formula("kernel shape with reduced axes set to 1", " x ".join(map(str, scale))), SCALE_WHY),
        )
        return RuleOutput((out,), weights, _sum_formula(weights))
    if q == "int4":
        rows = cols = 1
        for k, c in enumerate(w_spec):
            if c in o_spec:
                cols *= kernel[k]
            else:
                rows *= kernel[k]
        block = int4_block_size(inp.config)
        scale2, groups = int4_grouped(rows, cols, block)
        return RuleOutput((out,), _int4(rows, cols, scale2, groups, block, bias, "kernel"))
    return _unsupported(inp, out)


@register_keras_rule("Embedding")
def embedding(inp: RuleInput) -> RuleOutput:
    """``embeddings (input_dim, output_dim)``: one row per token id; LoRA if configured."""
    logical = (pos_int(inp.config, "input_dim"), pos_int(inp.config, "output_dim"))
    return apply_lora(inp, _embedding(inp), "embeddings", logical)


def _embedding(inp: RuleInput) -> RuleOutput:
    vocab = pos_int(inp.config, "input_dim")
    width = pos_int(inp.config, "output_dim")
    out: Shape = (*inp.input_shape, width)
    f = size_formula(["input_dim", "output_dim"], [vocab, width])
    q = inp.quantization
    if q is None:
        return RuleOutput((out,), (Weight("embeddings", (vocab, width), formula=f),), f)
    if q == "int8":
        weights = (
            Weight("embeddings", (vocab, width), Role.FROZEN, f, QUANT_WHY, "int8"),
            Weight("embeddings_scale", (vocab,), Role.FROZEN, Formula("input_dim", fmt_int(vocab)), SCALE_WHY),
        )
        return RuleOutput((out,), weights, _sum_formula(weights))
    if q == "int4":
        block = int4_block_size(inp.config)
        if block is None:
            scale: tuple[int, ...] = (vocab,)
            scale_f = Formula("input_dim", fmt_int(vocab))
        else:
            groups = -(-width // block)
            scale = (vocab, groups)
            scale_f = Formula("input_dim x n_groups", f"{fmt_int(vocab)} x {groups}")
        weights_l = [
            Weight("embeddings", (vocab, packed(width)), Role.FROZEN,
                   Formula("input_dim x ceil(output_dim / 2)", f"{fmt_int(vocab)} x {fmt_int(packed(width))}"),
                   QUANT_WHY + "; two int4 values are packed in each int8", "int8"),
            Weight("embeddings_scale", scale, Role.FROZEN, scale_f, SCALE_WHY),
        ]
        if block is not None:
            weights_l.append(Weight("embeddings_zero", scale, Role.FROZEN, scale_f, ZERO_WHY, "int8"))
            weights_l.append(Weight("g_idx", (width,), Role.FROZEN, Formula("output_dim", fmt_int(width)),
                                    GIDX_WHY, "float32"))
        return RuleOutput((out,), tuple(weights_l), _sum_formula(tuple(weights_l)))
    return _unsupported(inp, out)


@register_keras_rule("ReversibleEmbedding")
def reversible_embedding(inp: RuleInput) -> RuleOutput:
    """``embeddings (input_dim, output_dim)``, and ``reverse_embeddings (output_dim, input_dim)``
    for projecting back to the vocabulary unless ``tie_weights`` reuses the first.

    Source: keras/src/layers/core/reversible_embedding.py ``build``.
    """
    if inp.quantization is not None:
        base = embedding(inp)
        return RuleOutput(base.output_shapes, known=False,
                          note="quantized ReversibleEmbedding variables are not derived")
    base = embedding(inp)
    if inp.config.get("tie_weights", True):
        return base
    vocab, width = pos_int(inp.config, "input_dim"), pos_int(inp.config, "output_dim")
    f = size_formula(["output_dim", "input_dim"], [width, vocab])
    weights = (*base.weights, Weight("reverse_embeddings", (width, vocab), formula=f,
                                     why="the output projection back to the vocabulary (tie_weights is False)"))
    return RuleOutput(base.output_shapes, weights, _sum_formula(weights))


@register_keras_rule("Identity", "Masking")
def passthrough(inp: RuleInput) -> RuleOutput:
    """No weights; the output has the input's shape."""
    return RuleOutput((inp.input_shape,))

