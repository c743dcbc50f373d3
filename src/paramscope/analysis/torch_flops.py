"""FLOPs of a PyTorch forward pass, counted per operator at the dispatch level.

Every ATen operator the forward runs is seen once (by a ``TorchDispatchMode``) and costed by
what it computes, never by which module or class called it. The convention is documented in
docs/flops.md; in short:

- matrix products and convolutions use PyTorch's own formulas
  (``torch.utils.flop_counter.flop_registry``; one multiply-add = 2 FLOPs) and go to
  :attr:`Compute.flops`, unless both operands are activations (data x data, as in attention
  scores and weighted values), which go to :attr:`Compute.attention_flops`;
- ``scaled_dot_product_attention`` is costed once at the function level from the shapes of
  query, key and value (so the math path on ``meta`` and the fused kernels on CPU/GPU count the
  same), attention in ``attention_flops``, scale, mask and softmax in ``elementwise_flops``;
- elementwise, normalisation, reduction and pooling work uses :data:`ELEMENTWISE_COST`;
  views, copies, creation and indexing cost 0 (:data:`FREE_OPS`);
- an operator covered by none of these is listed in :attr:`Compute.unknown_ops` and makes the
  figure it might belong to unknown (``None``), never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from math import prod
from types import MappingProxyType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from torch.utils.weak import WeakIdKeyDictionary

from paramscope.core.anatomy import Compute

__all__ = [
    "ELEMENTWISE_COST",
    "FREE_OPS",
    "NO_FORMULA_ELEMENTWISE",
    "Tally",
    "FlopCounter",
    "attention_cost",
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


@dataclass
class Tally:
    """FLOPs accumulated for one module (inclusive of everything run while it was active)."""

    flops: int = 0
    attention: int = 0
    elementwise: int = 0
    unknown: dict[str, None] = field(default_factory=dict)
    flops_unknown: bool = False
    elementwise_unknown: bool = False

    def compute(self) -> Compute:
        """The tally as a frozen :class:`Compute`."""
        return Compute(
            flops=None if self.flops_unknown else self.flops,
            attention_flops=self.attention,
            elementwise_flops=None if self.elementwise_unknown else self.elementwise,
            unknown_ops=tuple(self.unknown),
        )


@dataclass(frozen=True, slots=True)
class _Cost:
    flops: int = 0
    attention: int = 0
    elementwise: int = 0
    unknown: str = ""
    unknown_kind: str = ""  # "flops" or "elementwise"


_FREE = _Cost()


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
        (512, 192)
    """
    q, k, v = tuple(q_shape), tuple(k_shape), tuple(v_shape)
    rows, s, e, ev = prod(q[:-1]), k[-2], q[-1], v[-1]
    scores = rows * s
    return 2 * scores * e + 2 * scores * ev, scores * (_SCORE_COST + (1 if masked else 0))


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Tensors in an operator's arguments or results: tensors, and lists, tuples and dicts of them
    (a plain walk; ``tree_leaves`` costs more than the operators themselves on ``meta``)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


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


def _elementwise(name: str, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> int | None:
    """Elementwise FLOPs of an operator, or ``None`` when it is not elementwise work."""
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


class FlopCounter:
    """Counts FLOPs of the operators run inside :meth:`modes`, attributed to active modules.

    Args:
        active: returns the paths of the modules running now (their forward has started and
            not returned); each operator's cost is added to every one of them.
        activations: the model inputs; products of two tensors derived from them are
            attention-like (data x data) and counted in ``attention_flops``.

    Example:
        >>> counter = FlopCounter(lambda: ("",), [])  # doctest: +SKIP
        >>> with counter.modes():  # doctest: +SKIP
        ...     model(x)
        >>> counter.tallies[""].compute()  # doctest: +SKIP
    """

    def __init__(self, active: Callable[[], Iterable[str]], activations: Iterable[torch.Tensor]) -> None:
        self.active = active
        self.tallies: dict[str, Tally] = {}
        self.total = Tally()
        self._suppress = 0
        self._act: WeakIdKeyDictionary = WeakIdKeyDictionary()
        for t in _tensors(list(activations)):
            self._act[t] = True

    # -- bookkeeping --------------------------------------------------------------------------

    def _add(self, cost: _Cost) -> None:
        if cost is _FREE:
            return
        targets = [self.total] + [self.tallies.setdefault(p, Tally()) for p in set(self.active())]
        for t in targets:
            t.flops += cost.flops
            t.attention += cost.attention
            t.elementwise += cost.elementwise
            if cost.unknown:
                t.unknown.setdefault(cost.unknown)
                if cost.unknown_kind == "flops":
                    t.flops_unknown = True
                else:
                    t.elementwise_unknown = True

    def _is_act(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor) and x in self._act

    def _mark(self, inputs: Any, out: Any) -> None:
        if any(x in self._act for x in _tensors(inputs)):
            for x in _tensors(out):
                self._act[x] = True

    # -- costing ------------------------------------------------------------------------------

    def cost(self, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> _Cost:
        """The cost of one operator call (see the module docstring for the convention)."""
        ns, name = _name(func)
        packet = getattr(func, "_overloadpacket", None)
        tags = getattr(func, "tags", ())
        if ns == "prim" or getattr(func, "is_view", False) or torch.Tag.inplace_view in tags or name in FREE_OPS:
            return _FREE
        if name in _FUSED_ATTENTION_EXTRA or (ns == "aten" and name in _REGISTERED_ATTENTION):
            bound = _bind(func, args, kwargs)
            q, k, v = args[0], args[1], args[2]
            mask = bound.get("attn_mask", bound.get("attn_bias"))
            causal = bool(bound.get("is_causal", False))
            att, elem = attention_cost(q.shape, k.shape, v.shape, masked=mask is not None or causal)
            if packet in flop_registry and q.dim() == 4:
                att = int(flop_registry[packet](*args, **kwargs, out_val=out))
            return _Cost(attention=att, elementwise=elem)
        if packet is not None and packet in flop_registry:
            n = int(flop_registry[packet](*args, **kwargs, out_val=out))
            bias = 0
            if name in _BIAS_MATMULS or (name in _CONVOLUTIONS and len(args) > 2 and isinstance(args[2], torch.Tensor)):
                bias = _numel(out)
            pair = _MATMUL_OPERANDS.get(name)
            if pair is not None and self._is_act(args[pair[0]]) and self._is_act(args[pair[1]]):
                return _Cost(attention=n, elementwise=bias)
            return _Cost(flops=n, elementwise=bias)
        if ns == "aten":
            cost = _elementwise(name, func, args, kwargs, out)
            if cost is not None:
                return _Cost(elementwise=cost)
            if name in NO_FORMULA_ELEMENTWISE:
                return _Cost(unknown=f"{ns}.{name}", unknown_kind="elementwise")
        return _Cost(unknown=f"{ns}.{name}" if ns else name, unknown_kind="flops")

    def on_op(self, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> None:
        """Record one operator call."""
        if not self._suppress:
            self._add(self.cost(func, args, kwargs, out))
        self._mark((args, kwargs), out)

    def on_attention(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        """Record a ``scaled_dot_product_attention`` call from its query, key and value."""
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
        bound = dict(zip(names, args))
        bound.update({k: v for k, v in kwargs.items() if k in names})
        q, k, v = bound["query"], bound["key"], bound["value"]
        masked = bound.get("attn_mask") is not None or bool(bound.get("is_causal", False))
        att, elem = attention_cost(q.shape, k.shape, v.shape, masked=masked)
        self._add(_Cost(attention=att, elementwise=elem))

    def modes(self) -> _Modes:
        """A context manager that counts while active (a dispatch and a function mode)."""
        return _Modes(self)


class _DispatchMode(TorchDispatchMode):
    def __init__(self, counter: FlopCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.counter.on_op(func, args, kwargs, out)
        return out


class _FunctionMode(TorchFunctionMode):
    def __init__(self, counter: FlopCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            self.counter.on_attention(args, kwargs)
            self.counter._suppress += 1
            try:
                out = func(*args, **kwargs)
            finally:
                self.counter._suppress -= 1
            self.counter._mark((args, kwargs), out)
            return out
        return func(*args, **kwargs)


class _Modes:
    def __init__(self, counter: FlopCounter) -> None:
        self._dispatch = _DispatchMode(counter)
        self._function = _FunctionMode(counter)

    def __enter__(self) -> FlopCounter:
        self._dispatch.__enter__()
        self._function.__enter__()
        return self._dispatch.counter

    def __exit__(self, *exc: Any) -> None:
        self._function.__exit__(*exc)
        self._dispatch.__exit__(*exc)
