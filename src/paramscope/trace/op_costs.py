"""What each PyTorch operator costs in FLOPs: the tables and formulas, in one place.

The convention is documented in docs/flops.md. Matrix products and convolutions use PyTorch's
own formulas (``torch.utils.flop_counter.flop_registry``); fused attention kernels use
:func:`attention_cost`; elementwise, normalisation, reduction and pooling work uses
:data:`ELEMENTWISE_COST` and PyTorch's ``pointwise``/``reduction`` operator tags; views and
:data:`FREE_OPS` cost 0; anything else is unknown, never 0.

This file is long (about 400 lines) because it is a table: one cost per aten operator, each
derived inline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from math import prod
from types import MappingProxyType
from typing import Any

import torch
from torch.utils.flop_counter import flop_registry

__all__ = [
    "ELEMENTWISE_COST",
    "FREE_OPS",
    "FREE_NAMESPACES",
    "NO_FORMULA_ELEMENTWISE",
    "OpCost",
    "FREE",
    "attention_cost",
    "elementwise_cost",
    "op_cost",
]

#: Per-element cost of elementwise, normalisation and reduction operators: name -> (FLOPs per
#: element, which elements: "out" = output elements, "in" = elements of the first input).
#: A math-library function (exp, tanh, erf, rsqrt, ...) counts as 1, like an add; composite
#: operators count the primitives of their textbook definition (sources in docs/flops.md).
#: Any other operator tagged ``pointwise`` by PyTorch costs 1 per output element, and any other
#: operator tagged ``reduction`` costs 1 per input element.
ELEMENTWISE_COST: Mapping[str, tuple[int, str]] = MappingProxyType(
    {
        # softmax over a row: max, subtract, exp, sum, divide (log_softmax: ..., log, subtract)
        "_softmax": (5, "in"),
        "_safe_softmax": (5, "in"),
        "softmax": (5, "in"),
        "_log_softmax": (5, "in"),
        "log_softmax": (5, "in"),
        "logsumexp": (4, "in"),
        # normalisation without the affine part (added per affine tensor present, see _norm_cost)
        "native_layer_norm": (5, "in"),  # mean, subtract, square, sum, scale
        "native_group_norm": (5, "in"),
        "_fused_rms_norm": (3, "in"),  # square, sum, scale
        "_native_batch_norm_legit_no_training": (2, "in"),  # subtract mean, scale
        "_native_batch_norm_legit": (5, "in"),  # statistics computed from the batch
        "native_batch_norm": (5, "in"),
        # activations defined through other functions
        "gelu": (5, "out"),  # x * 0.5 * (1 + erf(x / sqrt 2)); the tanh form costs 8
        "silu": (2, "out"),  # x * sigmoid(x)
        "mish": (5, "out"),  # x * tanh(log(1 + exp(x)))
        "softplus": (3, "out"),  # log(1 + exp(x))
        "hardsigmoid": (3, "out"),  # clamp(x / 6 + 1/2, 0, 1)
        "hardswish": (4, "out"),  # x * hardsigmoid(x)
        "native_dropout": (2, "out"),  # compare with a random draw, scale
        "masked_fill": (1, "out"),  # one select per element, like where
        "floor_divide": (1, "out"),
        "remainder": (1, "out"),
        "_prelu_kernel": (2, "out"),  # compare, multiply by the slope
        "prelu": (2, "out"),
        # interpolation: a weighted sum of 2, 4, 8 or 16 inputs per output element
        "upsample_linear1d": (3, "out"),
        "upsample_bilinear2d": (7, "out"),
        "_upsample_bilinear2d_aa": (7, "out"),
        "upsample_trilinear3d": (15, "out"),
        "upsample_bicubic2d": (31, "out"),
        "_upsample_bicubic2d_aa": (31, "out"),
        # reductions with more than one operation per element
        "var": (4, "in"),  # mean, subtract, square, sum
        "std": (4, "in"),
        "var_mean": (4, "in"),
        "std_mean": (4, "in"),
        "linalg_vector_norm": (2, "in"),  # square (or abs), sum
        "norm": (2, "in"),
        "cumsum": (1, "in"),
        "cumprod": (1, "in"),
        # pooling where every input element is read once
        "_adaptive_avg_pool2d": (1, "in"),
        "_adaptive_avg_pool3d": (1, "in"),
        "adaptive_avg_pool1d": (1, "in"),
        "adaptive_max_pool1d": (1, "in"),
        "adaptive_max_pool2d": (1, "in"),
        "adaptive_max_pool3d": (1, "in"),
    }
)

#: Pooling with a window: (kernel volume) FLOPs per output element (one compare or add each).
_WINDOW_POOLS = frozenset(
    {
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "max_pool2d_with_indices",
        "max_pool3d_with_indices",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
    }
)

#: Operators that move, copy, create, index or reinterpret data: 0 FLOPs. Views (any operator
#: PyTorch marks as returning a view) are free as well.
FREE_OPS: frozenset[str] = frozenset(
    {
        "clone", "copy", "_to_copy", "to", "contiguous", "detach", "alias", "lift_fresh",
        "lift_fresh_copy", "_unsafe_view", "_reshape_alias", "empty", "empty_like",
        "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "new_zeros",
        "ones", "ones_like", "new_ones", "full", "full_like", "new_full", "fill", "zero",
        "arange", "linspace", "scalar_tensor", "cat", "stack", "split", "split_with_sizes",
        "chunk", "unbind", "index", "_index_put_impl", "index_put", "index_select", "index_copy",
        "gather", "scatter", "slice_scatter", "select_scatter", "diagonal_scatter",
        "as_strided_scatter", "masked_scatter", "embedding", "tril", "triu", "flip", "roll",
        "repeat", "repeat_interleave", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d",
        "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d",
        "bernoulli", "rand", "rand_like", "randn", "randn_like", "randint", "randint_like",
        "randperm", "normal", "uniform", "_local_scalar_dense", "upsample_nearest1d",
        "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
        "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "pixel_shuffle",
        "pixel_unshuffle", "channel_shuffle", "im2col", "nonzero", "resize", "set",
        "_assert_async", "_assert_tensor_metadata", "_functional_assert_async", "tril_indices",
        "triu_indices", "one_hot", "masked_select", "_pin_memory", "record_stream",
        "_assert_scalar", "sym_constrain_range_for_size", "_make_dep_token", "detach_copy",
        "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk", "block_diag", "tensor_split",
        "narrow_copy", "select_copy", "slice_copy", "permute_copy", "view_copy", "expand_copy",
        "index_fill", "masked_fill_copy", "item", "equal", "is_nonzero", "_has_compatible_shallow_copy_type",
        "eye",
    }
)

#: Operators known not to be matrix products, whose cost no formula here gives: they make
#: :attr:`Compute.elementwise_flops` unknown.
NO_FORMULA_ELEMENTWISE: frozenset[str] = frozenset(
    {
        "sort", "argsort", "topk", "kthvalue", "median", "nanmedian", "mode", "unique",
        "_unique2", "unique_consecutive", "unique_dim", "grid_sampler_2d",
        "grid_sampler_3d", "col2im", "histc", "bincount", "searchsorted", "bucketize",
    }
)

#: Operator namespaces that only mark or annotate (profiler ranges from ``record_function``): 0 FLOPs.
FREE_NAMESPACES: frozenset[str] = frozenset({"prim", "profiler"})

#: Matrix-vector and vector-vector products PyTorch's registry leaves out: (first, second)
#: operand positions. They cost 2 FLOPs per multiply-add, like ``mm``; see :func:`op_cost` for
#: which figure they go to.
_VECTOR_PRODUCTS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {"mv": (0, 1), "addmv": (1, 2), "dot": (0, 1), "vdot": (0, 1)}
)

_MATMUL_OPERANDS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {"mm": (0, 1), "bmm": (0, 1), "_scaled_mm": (0, 1), "addmm": (1, 2), "baddbmm": (1, 2)}
)
_BIAS_MATMULS = frozenset({"addmm", "baddbmm"})
_CONVOLUTIONS = frozenset(
    {"convolution", "_convolution", "cudnn_convolution", "convolution_overrideable", "_slow_conv2d_forward"}
)
#: Fused attention kernels PyTorch's registry leaves out: (query, key, value) are args 0-2.
_FUSED_ATTENTION_EXTRA = frozenset(
    {
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_fused_attention_overrideable",
        "_scaled_dot_product_attention_math_for_mps",
    }
)
_REGISTERED_ATTENTION = frozenset(
    {
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_cudnn_attention",
        "_flash_attention_forward",
        "_efficient_attention_forward",
    }
)
#: Per attention score: scale 1 + softmax 5, + 1 for an additive or causal mask.
_SCORE_COST = 6


#: torch.ao quantized linear kernels: (X, packed weight, ...) -> Y; a product like ``addmm``.
_QUANTIZED_LINEAR = frozenset({"linear", "linear_dynamic", "linear_relu", "linear_relu_dynamic"})


@dataclass(frozen=True, slots=True)
class OpCost:
    """What one operator call costs; ``unknown`` names an operator without a formula."""

    flops: int = 0
    attention: int = 0
    elementwise: int = 0
    unknown: str = ""
    unknown_kind: str = ""  # which figure it makes unknown: "flops" or "elementwise"


FREE = OpCost()


def attention_cost(
    q_shape: Iterable[int], k_shape: Iterable[int], v_shape: Iterable[int], *, masked: bool
) -> tuple[int, int]:
    """Attention FLOPs and elementwise FLOPs of softmax(q k^T * scale + mask) v.

    Args:
        q_shape: query shape (..., heads, L, E).
        k_shape: key shape (..., kv_heads, S, E); fewer heads (grouped-query) are broadcast.
        v_shape: value shape (..., kv_heads, S, Ev).
        masked: whether a mask is added to the scores (explicit or causal).

    Returns:
        ``(2*R*S*E + 2*R*S*Ev, R*S*(6 or 7))`` where R = prod(q_shape[:-1]) query rows.

    Example:
        >>> attention_cost((1, 2, 4, 8), (1, 2, 4, 8), (1, 2, 4, 8), masked=False)
        (1024, 192)
    """
    q, k, v = tuple(q_shape), tuple(k_shape), tuple(v_shape)
    rows, s, e, ev = prod(q[:-1]), k[-2], q[-1], v[-1]
    scores = rows * s
    return 2 * scores * e + 2 * scores * ev, scores * (_SCORE_COST + (1 if masked else 0))


def _numel(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return int(x[0].numel())
    return 0


def _name(func: Any) -> tuple[str, str]:
    """(namespace, base name without the in-place underscore) of an operator."""
    packet = getattr(func, "_overloadpacket", None)
    qual = str(packet if packet is not None else func)
    ns, _, name = qual.partition(".")
    if not name:
        ns, name = "", qual
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return ns, name


def _bind(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The operator's arguments by schema name."""
    schema = getattr(func, "_schema", None)
    if schema is None:
        return dict(kwargs)
    bound = {a.name: v for a, v in zip(schema.arguments, args)}
    bound.update(kwargs)
    return bound


def _affine(args: tuple[Any, ...], first: int) -> int:
    return sum(1 for a in args[first : first + 2] if isinstance(a, torch.Tensor))


def _kernel_volume(k: Any) -> int:
    if isinstance(k, int):
        return k
    return prod(int(x) for x in k)


def elementwise_cost(name: str, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> int | None:
    """Elementwise FLOPs of an ATen operator, or ``None`` when it is not elementwise work.

    Args:
        name: the operator's base name (``"native_layer_norm"``, ``"add"`` for ``add_``).
        func: the operator, for its tags.
        args: its positional arguments.
        kwargs: its keyword arguments.
        out: what it returned.

    Example:
        >>> x = torch.zeros(2, 8)
        >>> elementwise_cost("_softmax", torch.ops.aten._softmax.default, (x, -1, False), {}, x)
        80
    """
    n_in = _numel(args[0]) if args else 0
    n_out = _numel(out)
    if name == "gelu":
        approx = kwargs.get("approximate", args[1] if len(args) > 1 else "none")
        # 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))): pow, 4 mul, 2 add, tanh
        return n_out * (8 if approx == "tanh" else 5)
    entry = ELEMENTWISE_COST.get(name)
    if entry is not None:
        per, basis = entry
        if name == "native_layer_norm":
            per += _affine(args, 2)  # (input, normalized_shape, weight, bias, eps)
        elif name == "_fused_rms_norm":
            per += 1 if len(args) > 2 and isinstance(args[2], torch.Tensor) else 0
        elif name in ("native_group_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit"):
            per += _affine(args, 1)
        elif name == "native_batch_norm":
            training = bool(args[5]) if len(args) > 5 else bool(kwargs.get("training", False))
            per = (5 if training else 2) + _affine(args, 1)
        return per * (n_in if basis == "in" else n_out)
    if name == "_weight_norm_interface":
        # w = g * v / ||v||: the norm of v (2 per element of v: square, sum), g / norm (1 per
        # element of g), times v (1 per element of v)
        return 3 * n_in + (_numel(args[1]) if len(args) > 1 else 0)
    if name == "embedding_renorm":
        # each looked-up row: its norm (2 per element) and the rescale (1 per element); a pass
        # without data cannot tell repeated indices apart, so every index counts
        return 3 * _numel(args[1]) * int(args[0].shape[-1])
    if name in _WINDOW_POOLS:
        return n_out * _kernel_volume(args[1])
    if name in ("_embedding_bag", "embedding_bag", "_embedding_bag_forward_only"):
        return _numel(args[1]) * int(args[0].shape[-1])
    tags = getattr(func, "tags", ())
    if torch.Tag.pointwise in tags:
        return n_out
    if torch.Tag.reduction in tags:
        return n_in
    return None


def _quantized_linear(name: str, args: tuple[Any, ...], out: Any) -> OpCost:
    """``2 x M x K x N`` for ``X (M, K)`` times the packed ``(N, K)`` weight; the bias (if the
    packed weight has one) and a fused relu add 1 per output element each."""
    n_out = _numel(out)
    flops = 2 * _numel(args[0]) * int(out.shape[-1])
    from torch.utils._python_dispatch import _disable_current_modes

    try:
        # the packed object is a real kernel object: unpack it outside the fake-tensor mode
        with _disable_current_modes():
            has_bias = args[1].unpack()[1] is not None
    except Exception:  # noqa: BLE001 - a packed object that cannot be unpacked: bias unknown
        return OpCost(flops=flops, unknown=f"quantized.{name}", unknown_kind="elementwise")
    return OpCost(flops=flops, elementwise=n_out * (int(has_bias) + int("relu" in name)))


def op_cost(
    func: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    out: Any,
    is_activation: Callable[[Any], bool],
) -> OpCost:
    """The cost of one operator call (see the module docstring for the convention).

    Args:
        func: the ATen operator (an ``OpOverload``).
        args: its positional arguments.
        kwargs: its keyword arguments.
        out: what it returned.
        is_activation: whether a tensor derives from the model's inputs; a product of two
            such tensors is an attention product.

    Returns:
        The cost; :data:`FREE` for views, copies and creation.

    Example:
        >>> a, b = torch.zeros(2, 3), torch.zeros(3, 4)
        >>> op_cost(torch.ops.aten.mm.default, (a, b), {}, a @ b, lambda t: False).flops
        48
    """
    ns, name = _name(func)
    packet = getattr(func, "_overloadpacket", None)
    tags = getattr(func, "tags", ())
    if ns in FREE_NAMESPACES or getattr(func, "is_view", False) or torch.Tag.inplace_view in tags or name in FREE_OPS:
        return FREE
    if name in _FUSED_ATTENTION_EXTRA or (ns == "aten" and name in _REGISTERED_ATTENTION):
        bound = _bind(func, args, kwargs)
        q, k, v = args[0], args[1], args[2]
        mask = bound.get("attn_mask", bound.get("attn_bias"))
        causal = bool(bound.get("is_causal", False))
        att, elem = attention_cost(q.shape, k.shape, v.shape, masked=mask is not None or causal)
        if packet in flop_registry and q.dim() == 4:
            att = int(flop_registry[packet](*args, **kwargs, out_val=out))
        return OpCost(attention=att, elementwise=elem)
    if ns == "quantized" and name in _QUANTIZED_LINEAR:
        return _quantized_linear(name, args, out)
    vec = _VECTOR_PRODUCTS.get(name) if ns == "aten" else None
    if vec is not None:
        a, b = args[vec[0]], args[vec[1]]
        n = 2 * _numel(a)  # one multiply-add per element of the matrix (mv) or vector (dot)
        bias = _numel(out) if name == "addmv" else 0
        data = int(is_activation(a)) + int(is_activation(b))
        if data == 2:
            return OpCost(attention=n, elementwise=bias)
        if data == 1:
            return OpCost(flops=n, elementwise=bias)
        # both operands are weights or buffers (spectral_norm's sigma = u . (W v)): work on the
        # weights themselves, not per input, counted with the elementwise figure
        return OpCost(elementwise=n + bias)
    if packet is not None and packet in flop_registry:
        n = int(flop_registry[packet](*args, **kwargs, out_val=out))
        bias = 0
        if name in _BIAS_MATMULS or (name in _CONVOLUTIONS and len(args) > 2 and isinstance(args[2], torch.Tensor)):
            bias = _numel(out)
        pair = _MATMUL_OPERANDS.get(name)
        if pair is not None and is_activation(args[pair[0]]) and is_activation(args[pair[1]]):
            return OpCost(attention=n, elementwise=bias)
        return OpCost(flops=n, elementwise=bias)
    if ns == "aten":
        cost = elementwise_cost(name, func, args, kwargs, out)
        if cost is not None:
            return OpCost(elementwise=cost)
        if name in NO_FORMULA_ELEMENTWISE:
            return OpCost(unknown=f"{ns}.{name}", unknown_kind="elementwise")
    return OpCost(unknown=f"{ns}.{name}" if ns else name, unknown_kind="flops")
