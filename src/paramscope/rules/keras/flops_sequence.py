"""FLOPs of Keras recurrent and attention layers, one sample (batch of 1), in docs/flops.md's convention.

Recurrent layers run their cell once per time step: each step multiplies the input by the
kernel and the previous state by the recurrent kernel (``2 x (input_dim + units) x gates x
units`` for LSTM (4 gates), GRU (3) and SimpleRNN (1); ConvLSTM convolves the input and the
state instead). These products involve weights: they go to ``flops``. Attention layers project
query, key and value and the concatenated heads (weights: ``flops``) and compute the scores
``Q K^T`` and the weighted values (two activations: ``attention_flops``). Gates, activations,
softmax and scaling are elementwise work, which is not costed for Keras layers (``None``).
Sources: ``keras/src/layers/rnn/{lstm,gru,simple_rnn,conv_lstm}.py`` and
``keras/src/layers/attention/{multi_head_attention,grouped_query_attention,attention}.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import prod
from typing import Any

from paramscope.core.anatomy import Compute, Shape
from paramscope.rules.keras.shapes import conv_length, ntuple

__all__ = ["recurrent_compute", "conv_lstm_compute", "attention_compute", "GATES"]

#: Gate blocks of each recurrent cell: its kernels are ``gates x units`` wide.
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3, "SimpleRNNCell": 1, "LSTMCell": 4, "GRUCell": 3}


def _mul(*xs: int | None) -> int | None:
    return None if any(x is None for x in xs) else prod(x for x in xs if x is not None)


def _add(*xs: int | None) -> int | None:
    return None if any(x is None for x in xs) else sum(x for x in xs if x is not None)


def _cell_step(cell: str, config: Mapping[str, Any], input_dim: int | None) -> tuple[int | None, int | None]:
    """(FLOPs of one step of a dense cell, its output size)."""
    if cell == "StackedRNNCells":
        total: int | None = 0
        dim = input_dim
        for sub in config.get("cells") or []:
            if not isinstance(sub, Mapping):
                return None, None
            step, dim = _cell_step(str(sub.get("class_name")), sub.get("config") or {}, dim)
            total = _add(total, step)
        return total, dim
    if cell not in GATES:
        return None, None
    units = int(config["units"])
    gates = GATES[cell]
    # x_t @ kernel (input_dim x gates*units) and h_{t-1} @ recurrent_kernel (units x gates*units);
    # GRU's reset_after=False multiplies (r * h) by the candidate block separately: same sizes.
    return _mul(2, _add(input_dim, units), gates, units), units


def recurrent_compute(class_name: str, config: Mapping[str, Any], ins: Sequence[Shape]) -> Compute:
    """SimpleRNN, LSTM, GRU (and ``RNN`` around one of their cells): ``time_steps x`` one step.

    Example:
        >>> recurrent_compute("LSTM", {"units": 4}, [(None, 5, 3)]).flops  # 5 x 2 x (3 + 4) x 4 x 4
        1120
    """
    x = ins[0]
    if len(x) != 3:
        return Compute(None, None, None, (class_name,))
    steps, input_dim = x[1], x[2]
    if class_name == "RNN":
        cell = config.get("cell")
        if not isinstance(cell, Mapping):
            return Compute(None, None, None, (class_name,))
        step, _ = _cell_step(str(cell.get("class_name")), cell.get("config") or {}, input_dim)
        if step is None and input_dim is not None:
            return Compute(None, None, None, (f"RNN({cell.get('class_name')})",))
    else:
        step, _ = _cell_step(class_name, config, input_dim)
    return Compute(_mul(steps, step), 0, None)


def conv_lstm_compute(class_name: str, config: Mapping[str, Any], ins: Sequence[Shape]) -> Compute:
    """ConvLSTM1D/2D/3D: per step, the input convolved into 4 gates and the state (``same``
    padding, stride 1, so on the output grid) convolved into 4 gates.

    Example:
        >>> cfg = {"filters": 3, "kernel_size": 3, "padding": "same"}
        >>> conv_lstm_compute("ConvLSTM2D", cfg, [(None, 4, 6, 6, 2)]).flops  # 4 x 2 x 36 x 9 x (2 + 3) x 12
        155520
    """
    rank = int(class_name[-2])
    x = ins[0]
    if len(x) != rank + 3:
        return Compute(None, None, None, (class_name,))
    filters = int(config["filters"])
    kernel = ntuple(config["kernel_size"], rank, "kernel_size")
    strides = ntuple(config.get("strides", 1), rank, "strides")
    dilation = ntuple(config.get("dilation_rate", 1), rank, "dilation_rate")
    padding = str(config.get("padding", "valid"))
    first = config.get("data_format") == "channels_first"
    steps = x[1]
    spatial = x[3:] if first else x[2:-1]
    c_in = x[2] if first else x[-1]
    grid = [conv_length(n, k, padding, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilation)]
    positions = _mul(*grid)
    per_step = _mul(2, positions, prod(kernel), _add(c_in, filters), 4 * filters)
    return Compute(_mul(steps, per_step), 0, None)


def _out_dim(config: Mapping[str, Any], query_dim: int | None) -> int | None:
    """Features of the output projection: ``output_shape`` (an int or a shape), else the query's."""
    out = config.get("output_shape")
    if out is None:
        return query_dim
    return prod(int(d) for d in out) if isinstance(out, (list, tuple)) else int(out)


def _proj(tokens: int | None, d_in: int | None, d_out: int | None) -> int | None:
    return _mul(2, tokens, d_in, d_out)


def attention_compute(class_name: str, config: Mapping[str, Any], ins: Sequence[Shape]) -> Compute:
    """MultiHeadAttention, GroupedQueryAttention, Attention and AdditiveAttention on
    ``[query (T_q, d_q), value (T_v, d_v), key (T_v, d_k) = value]``.

    Example:
        >>> cfg = {"num_heads": 2, "key_dim": 4}
        >>> c = attention_compute("MultiHeadAttention", cfg, [(None, 5, 8), (None, 7, 6)])
        >>> c.flops, c.attention_flops  # projections 640 + 672 + 672 + 640; 2 x (2 x 2 x 5 x 7 x 4)
        (2624, 1120)
    """
    if len(ins) < 2 or any(len(s) != 3 for s in ins[:3]):
        # Attention over several axes (attention_axes) or a single input: no formula here.
        return Compute(None, None, None, (class_name,))
    q, v = ins[0], ins[1]
    k = ins[2] if len(ins) > 2 else v
    tq, dq = q[1], q[2]
    tv, dv, dk = v[1], v[2], k[2]
    if class_name == "MultiHeadAttention":
        # Rank-3 inputs attend over axis 1, which Keras saves as attention_axes [1].
        if config.get("attention_axes") not in (None, [1], (1,), [-2], (-2,), 1, -2):
            return Compute(None, None, None, (class_name,))
        heads = int(config["num_heads"])
        key_dim = int(config["key_dim"])
        value_dim = int(config.get("value_dim") or key_dim)
        d_out = _out_dim(config, dq)
        proj = _add(_proj(tq, dq, heads * key_dim), _proj(tv, dk, heads * key_dim),
                    _proj(tv, dv, heads * value_dim), _proj(tq, heads * value_dim, d_out))  # fmt: skip
        if config.get("use_gate"):  # a sigmoid gate projected from the query, like the values
            proj = _add(proj, _proj(tq, dq, heads * value_dim))
        att = _add(_mul(2, heads, tq, tv, key_dim), _mul(2, heads, tq, tv, value_dim))
        return Compute(proj, att, None)
    if class_name in ("GroupQueryAttention", "GroupedQueryAttention"):
        hq = int(config["num_query_heads"])
        hkv = int(config["num_key_value_heads"])
        head = int(config["head_dim"])
        d_out = _out_dim(config, dq)
        proj = _add(_proj(tq, dq, hq * head), _proj(tv, dk, hkv * head), _proj(tv, dv, hkv * head),
                    _proj(tq, hq * head, d_out))  # fmt: skip
        if config.get("use_gate"):
            proj = _add(proj, _proj(tq, dq, hq * head))
        # Key and value heads are repeated to the query heads before the products.
        att = _mul(2, 2, hq, tq, tv, head)
        return Compute(proj, att, None)
    if class_name == "Attention" and config.get("score_mode", "dot") == "dot":
        return Compute(0, _add(_mul(2, tq, tv, dq), _mul(2, tq, tv, dv)), None)
    if class_name in ("Attention", "AdditiveAttention"):
        # Additive ("concat") scores are a sum of tanh(q + k): elementwise; only the weighted
        # values are a product.
        return Compute(0, _mul(2, tq, tv, dv), None)
    return Compute(None, None, None, (class_name,))
