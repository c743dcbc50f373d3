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
- elementwise, normalisation, reduction and pooling work uses :data:`ELEMENTWISE_COST`
  (the tables and per-operator formulas are in :mod:`paramscope.trace.op_costs`);
  views, copies, creation and indexing cost 0 (:data:`FREE_OPS`);
- an operator covered by none of these is listed in :attr:`Compute.unknown_ops` and makes the
  figure it might belong to unknown (``None``), never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from paramscope.trace.op_costs import (
    ELEMENTWISE_COST as ELEMENTWISE_COST,
    FREE,
    FREE_OPS as FREE_OPS,
    NO_FORMULA_ELEMENTWISE as NO_FORMULA_ELEMENTWISE,
    OpCost,
    attention_cost as attention_cost,
    op_cost,
)
from paramscope.core.anatomy import Compute

__all__ = [
    "ELEMENTWISE_COST",
    "FREE_OPS",
    "NO_FORMULA_ELEMENTWISE",
    "Tally",
    "FlopCounter",
    "attention_cost",
]


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


_aten = torch.ops.aten
#: Operators that pick elements of their first argument: the result is data only when that
#: source is. Expert weights gathered by data-derived routing indices (mixture-of-experts) stay
#: weights, so their products with activations count as matmul FLOPs, not attention.
_PICK = frozenset({_aten.index, _aten._unsafe_index, _aten.index_select, _aten.gather, _aten.take})


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

    def _add(self, cost: OpCost) -> None:
        if cost is FREE:
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

    def on_op(self, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> None:
        """Record one operator call."""
        if not self._suppress:
            self._add(op_cost(func, args, kwargs, out, self._is_act))
        if getattr(func, "overloadpacket", None) in _PICK:
            self._mark(args[:1], out)
        else:
            self._mark((args, kwargs), out)

    def on_attention(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        """Record a ``scaled_dot_product_attention`` call from its query, key and value."""
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
        bound = dict(zip(names, args))
        bound.update({k: v for k, v in kwargs.items() if k in names})
        q, k, v = bound["query"], bound["key"], bound["value"]
        masked = bound.get("attn_mask") is not None or bool(bound.get("is_causal", False))
        att, elem = attention_cost(q.shape, k.shape, v.shape, masked=masked)
        self._add(OpCost(attention=att, elementwise=elem))

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
