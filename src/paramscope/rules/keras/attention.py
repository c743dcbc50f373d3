"""Rules for Keras attention layers: MultiHeadAttention, GroupQueryAttention, Attention, AdditiveAttention.

MultiHeadAttention builds four EinsumDense projections (query, key, value, attention_output)
whose kernels keep the heads as a separate axis: query ``(query_dim, num_heads, key_dim)``,
output ``(num_heads, value_dim, *output_shape)``. Source: ``MultiHeadAttention.build`` and
``GroupedQueryAttention.build`` in ``keras/src/layers/attention/`` (Keras 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paramscope.core.anatomy import Formula, Shape
from paramscope.rules.keras.shapes import fmt_int
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight, register_keras_rule

__all__ = ["attention_shapes"]


def _shape(value: Any) -> Shape | None:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if all(v is None or isinstance(v, int) for v in value):
            return tuple(value)
    return None


def attention_shapes(inp: RuleInput) -> tuple[Shape, Shape, Shape] | None:
    """Query, value and key shapes: from ``build_config`` when saved, else from the inputs.

    Keras saves ``{"shapes_dict": {"query_shape": ..., "value_shape": ..., "key_shape": ...}}``;
    a missing key shape means key = value.

    Example:
        >>> attention_shapes(RuleInput("MultiHeadAttention", {}, ((None, 4, 16), (None, 5, 12))))
        ((None, 4, 16), (None, 5, 12), (None, 5, 12))
    """
    shapes = inp.build_config.get("shapes_dict") if inp.build_config else None
    if isinstance(shapes, Mapping):
        q = _shape(shapes.get("query_shape"))
        v = _shape(shapes.get("value_shape"))
        k = _shape(shapes.get("key_shape")) or v
        if q is not None and v is not None and k is not None:
            return q, v, k
    if len(inp.input_shapes) >= 2:
        q, v = inp.input_shapes[0], inp.input_shapes[1]
        k = inp.input_shapes[2] if len(inp.input_shapes) > 2 else v
        return q, v, k
    return None


def _sized(inp: RuleInput) -> tuple[Shape, tuple[int, int, int]] | RuleOutput:
    """The query shape and the query, value and key feature sizes; an unknown output if missing."""
    shapes = attention_shapes(inp)
    if shapes is None:
        return RuleOutput((), known=False, note="query and value shapes are not known")
    qd, vd, kd = (s[-1] if s else None for s in shapes)
    if qd is None or vd is None or kd is None:
        return RuleOutput((), known=False, note="the feature size of the query, value or key is not known")
    return shapes[0], (qd, vd, kd)


def _proj(
    name: str,
    in_dim: int,
    heads: int,
    head: int,
    sym: tuple[str, str, str],
    use_bias: bool,
) -> tuple[list[Weight], Formula]:
    """One head-split projection (an EinsumDense): its weights and its count, bias folded in."""
    heads_num = f"{fmt_int(heads)} x {fmt_int(head)}"
    out = [
        Weight(
            f"{name}/kernel",
            (in_dim, heads, head),
            formula=Formula(" x ".join(sym), f"{fmt_int(in_dim)} x {heads_num}"),
        )
    ]
    if not use_bias:
        return out, Formula(" x ".join(sym), f"{fmt_int(in_dim)} x {heads_num}")
    out.append(Weight(f"{name}/bias", (heads, head), formula=Formula(f"{sym[1]} x {sym[2]}", heads_num)))
    return out, Formula(f"({sym[0]} + 1) x {sym[1]} x {sym[2]}", f"({fmt_int(in_dim)} + 1) x {heads_num}")


def _output_proj(
    heads: int, head: int, out_dims: tuple[int, ...], sym: tuple[str, str, str], use_bias: bool, why: str
) -> tuple[list[Weight], Formula]:
    """The projection from the concatenated heads back to ``out_dims``."""
    out_num = " x ".join(fmt_int(d) for d in out_dims)
    heads_num = f"{fmt_int(heads)} x {fmt_int(head)}"
    kernel_sym = f"{sym[0]} x {sym[1]} x {sym[2]}"
    out = [
        Weight("attention_output/kernel", (heads, head, *out_dims),
               formula=Formula(kernel_sym, f"{heads_num} x {out_num}"), why=why)
    ]
    if not use_bias:
        return out, Formula(kernel_sym, f"{heads_num} x {out_num}")
    out.append(Weight("attention_output/bias", out_dims, formula=Formula(sym[2], out_num)))
    return out, Formula(f"({sym[0]} x {sym[1]} + 1) x {sym[2]}", f"({heads_num} + 1) x {out_num}")


def _assemble(parts: Sequence[tuple[list[Weight], Formula]]) -> tuple[tuple[Weight, ...], Formula]:
    weights = tuple(w for ws, _ in parts for w in ws)
    return weights, Formula(" + ".join(f.symbolic for _, f in parts), " + ".join(f.numeric for _, f in parts))


@register_keras_rule("MultiHeadAttention")
def _mha(inp: RuleInput) -> RuleOutput:
    sized = _sized(inp)
    if isinstance(sized, RuleOutput):
        return sized
    q, (qd, vd, kd) = sized
    cfg = inp.config
    heads = int(cfg["num_heads"])
    key_dim = int(cfg["key_dim"])
    value_dim = int(cfg.get("value_dim") or key_dim)
    use_bias = bool(cfg.get("use_bias", True))
    out_shape_cfg = cfg.get("output_shape")
    if isinstance(out_shape_cfg, int):
        out_shape_cfg = [out_shape_cfg]
    out_dims: tuple[int, ...] = tuple(int(d) for d in out_shape_cfg) if out_shape_cfg else (qd,)
    parts = [
        _proj("query", qd, heads, key_dim, ("query_dim", "num_heads", "key_dim"), use_bias),
        _proj("key", kd, heads, key_dim, ("key_input_dim", "num_heads", "key_dim"), use_bias),
    ]
    if cfg.get("use_gate"):
        parts.append(_proj("gate", qd, heads, value_dim, ("query_dim", "num_heads", "value_dim"), use_bias))
    parts.append(_proj("value", vd, heads, value_dim, ("value_input_dim", "num_heads", "value_dim"), use_bias))
    out_sym = "output_dim" if out_shape_cfg else "query_dim"
    why = "projects the concatenated heads back to the output size"
    parts.append(_output_proj(heads, value_dim, out_dims, ("num_heads", "value_dim", out_sym), use_bias, why))
    weights, formula = _assemble(parts)
    output: Shape = (*q[:-1], *out_dims) if out_shape_cfg else q
    return RuleOutput((output,), weights, formula)


@register_keras_rule("GroupQueryAttention", "GroupedQueryAttention")
def _gqa(inp: RuleInput) -> RuleOutput:
    sized = _sized(inp)
    if isinstance(sized, RuleOutput):
        return sized
    q, (qd, vd, kd) = sized
    cfg = inp.config
    head = int(cfg["head_dim"])
    nq = int(cfg["num_query_heads"])
    nkv = int(cfg["num_key_value_heads"])
    use_bias = bool(cfg.get("use_bias", True))
    parts = [
        _proj("query", qd, nq, head, ("feature_dim", "num_query_heads", "head_dim"), use_bias),
        _proj("key", kd, nkv, head, ("key_dim", "num_key_value_heads", "head_dim"), use_bias),
    ]
    if cfg.get("use_gate"):
        parts.append(_proj("gate", qd, nq, head, ("feature_dim", "num_query_heads", "head_dim"), use_bias))
    parts.append(_proj("value", vd, nkv, head, ("value_dim", "num_key_value_heads", "head_dim"), use_bias))
    why = "projects the concatenated heads back to the query's feature size"
    parts.append(_output_proj(nq, head, (qd,), ("num_query_heads", "head_dim", "feature_dim"), use_bias, why))
    weights, formula = _assemble(parts)
    note = f"{nq} query heads share {nkv} key/value heads ({nq // max(nkv, 1)} queries per key/value head)"
    return RuleOutput((q,), weights, formula, note)


def _qv(inp: RuleInput) -> tuple[Shape, Shape] | None:
    shapes = inp.input_shapes
    build = inp.build_config.get("input_shape") if inp.build_config else None
    if isinstance(build, Sequence) and len(build) >= 2:
        q, v = _shape(build[0]), _shape(build[1])
        if q is not None and v is not None:
            return q, v
    if len(shapes) >= 2:
        return shapes[0], shapes[1]
    return None


@register_keras_rule("Attention")
def _dot_attention(inp: RuleInput) -> RuleOutput:
    qv = _qv(inp)
    if qv is None:
        return RuleOutput((), known=False, note="Attention needs [query, value] inputs")
    q, v = qv
    weights = []
    if inp.config.get("use_scale"):
        weights.append(
            Weight("scale", (), formula=Formula("1", "1"), why="one learned scalar multiplying the scores")
        )
    if inp.config.get("score_mode") == "concat":
        weights.append(
            Weight(
                "concat_score_weight",
                (),
                formula=Formula("1", "1"),
                why="one learned scalar scaling the tanh of query + key (score_mode='concat')",
            )
        )
    return RuleOutput(((*q[:-1], v[-1]),), tuple(weights), Formula(str(len(weights)), str(len(weights))))


@register_keras_rule("AdditiveAttention")
def _additive_attention(inp: RuleInput) -> RuleOutput:
    qv = _qv(inp)
    if qv is None:
        return RuleOutput((), known=False, note="AdditiveAttention needs [query, value] inputs")
    q, v = qv
    dim = q[-1]
    if dim is None:
        return RuleOutput((), known=False, note="the feature size of the query is not known")
    weights = []
    if inp.config.get("use_scale", True):
        weights.append(
            Weight(
                "scale",
                (dim,),
                formula=Formula("query_dim", fmt_int(dim)),
                why="a learned weight per feature, summing tanh(query + key) into a score",
            )
        )
    formula = Formula("query_dim", fmt_int(dim)) if weights else Formula("0", "0")
    return RuleOutput(((*q[:-1], v[-1]),), tuple(weights), formula)

