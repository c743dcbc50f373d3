"""Activation memory of a PyTorch module, measured: forward and backward on the meta device.

The module's parameters and buffers are replaced, for the call only, by meta tensors of the
same shape (in the planned dtype), and the step runs on meta inputs: nothing is allocated, and
the user's module is left as it was (``torch.func.functional_call``). A
``TorchDispatchMode`` sees every tensor each operator returns; its storage is counted from
that moment until Python frees it (a weak reference's callback), which is when the caching
allocator would get the block back. Storages that existed before the step (weights, buffers,
inputs) are not activations and are not counted. A gradient becomes a gradient (not an
activation) when autograd accumulates it into a parameter's ``.grad``
(``register_post_accumulate_grad_hook``). Forward hooks keep the stack of running modules so
that every storage is attributed to the innermost module that made it.

What is measured is what autograd keeps: a tensor saved for backward lives until its node runs,
a temporary dies when the operator's caller drops it. Two things are modelled on a GPU run
rather than on the meta kernels:

- ``scaled_dot_product_attention`` runs the flash (no mask) or memory-efficient (mask) kernel,
  which keep q, k, v, the output and the log-sum-exp, as the CUDA backends do; with
  ``attention="math"`` the decomposition that keeps the L x S score matrices runs instead;
- dropout runs the fused kernel, which keeps a 1-byte mask, as on CUDA (the CPU path keeps a
  mask in the activation's dtype);
- full activation checkpointing wraps each repeated block's forward in
  ``torch.utils.checkpoint`` (non-reentrant), so the block keeps its input and is recomputed
  during backward, as in a real run.

This file is long (about 400 lines) because the tracker, its module hooks and the pass that
drives it are one mechanism: each depends on the others' bookkeeping.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from paramscope.trace.gpu_kernels import flash_sdpa, fused_dropout
from paramscope.trace.inputs import InputSpec, build_inputs, float_dtype
from paramscope.trace.meta_pass import _first_line, _meta_limitation
from paramscope.trace.snapshot import Snapshot

__all__ = ["MemoryProfile", "measure", "repeated_blocks"]


@dataclass
class MemoryProfile:
    """Activation bytes of one step, per device, as measured.

    Attributes:
        forward_peak: most bytes alive at once during the forward pass (activations,
            temporaries, output and loss).
        forward_end: bytes alive when the forward pass (and the loss) has finished: what
            autograd saved for backward, plus the output.
        backward: ``(activation bytes, gradient bytes)`` alive at each allocation during
            backward, in order; the plan adds gradients at their sharded size.
        by_module: bytes alive at the end of the forward pass, by the module that made them.
        score_bytes: bytes of L x S attention matrices alive at the end of the forward pass.
        grad_bytes: parameter gradient bytes at the end of backward.
        block_marks: for each repeated block (by index), the position in ``backward`` where
            the first gradient of its parameters was accumulated.
        block_grad_bytes: gradient bytes of one repeated block's parameters.
        failure: why the pass stopped (``""`` if it completed); the module and the error.
    """

    forward_peak: int = 0
    forward_end: int = 0
    backward: list[tuple[int, int]] = field(default_factory=list)
    by_module: dict[str, int] = field(default_factory=dict)
    score_bytes: int = 0
    grad_bytes: int = 0
    block_marks: dict[int, int] = field(default_factory=dict)
    block_grad_bytes: int = 0
    failure: str = ""

    @property
    def backward_peak(self) -> int:
        """Most activation and gradient bytes alive at once during backward (unsharded)."""
        return max((a + g for a, g in self.backward), default=0)


def repeated_blocks(module: torch.nn.Module) -> tuple[str, list[torch.nn.Module]]:
    """The model's repeated blocks: the ``ModuleList`` of same-class modules holding the most
    parameters, with its path (``("model.layers", [...])``); ``("", [])`` if there is none."""
    best: tuple[int, str, list[torch.nn.Module]] = (0, "", [])
    for path, m in module.named_modules():
        if not isinstance(m, torch.nn.ModuleList) or len(m) < 2:
            continue
        kids = list(m)
        if len({type(k) for k in kids}) != 1:
            continue
        n = sum(p.numel() for k in kids for p in k.parameters())
        if n > best[0]:
            best = (n, path, kids)
    return best[1], best[2]


class _Tracker(TorchDispatchMode):
    """Counts each new storage from the operator that returns it until it is freed."""

    def __init__(self, stack: list[str], score_side: int | None) -> None:
        super().__init__()
        self.stack = stack
        self.score_side = score_side
        self.known: dict[int, Any] = {}  # storages that were there before: id -> storage (kept alive)
        self.live: dict[int, tuple[Any, int, str, bool]] = {}  # id -> (weakref, bytes, module, score)
        self.grads: set[int] = set()
        self.act = 0
        self.grad = 0
        self.score = 0
        self.forward_peak = 0
        self.backward = False
        self.timeline: list[tuple[int, int]] = []

    def adopt(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        self.known[id(st)] = st

    def _freed(self, key: int) -> None:
        entry = self.live.pop(key, None)
        if entry is None:
            return
        _, n, _, score = entry
        if key in self.grads:
            self.grads.discard(key)
            self.grad -= n
        else:
            self.act -= n
        if score:
            self.score -= n

    def _on_free(self, key: int, _ref: Any) -> None:
        self._freed(key)

    def make_grad(self, t: torch.Tensor) -> None:
        key = id(t.untyped_storage())
        entry = self.live.get(key)
        if entry is None or key in self.grads:
            return
        self.grads.add(key)
        self.act -= entry[1]
        self.grad += entry[1]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            key = id(st)
            if key in self.known or key in self.live:
                continue
            n = int(st.nbytes())
            side = self.score_side
            # Per-head L x S matrices: (b*h, L, S) from bmm or (b, h, L, S); a (b, 1, L, S) mask is not one.
            score = (
                side is not None and t.dim() >= 3 and t.shape[-1] == side and t.shape[-2] == side
                and (t.dim() == 3 or t.shape[-3] > 1)
            )
            ref = weakref.ref(st, functools.partial(self._on_free, key))
            self.live[key] = (ref, n, self.stack[-1] if self.stack else "", score)
            self.act += n
            self.score += n if score else 0
            if self.backward:
                self.timeline.append((self.act, self.grad))
            else:
                self.forward_peak = max(self.forward_peak, self.act)
        return out


def _meta_like(t: torch.Tensor, dtype: torch.dtype | None, grad: bool, device: torch.device) -> torch.Tensor:
    """An empty stand-in (a fake tensor under FakeTensorMode) in the working dtype."""
    dt = dtype if dtype is not None and t.is_floating_point() else t.dtype
    m = torch.empty(t.shape, dtype=dt, device=device)
    return m.requires_grad_(grad) if grad and m.is_floating_point() else m


def _loss(output: Any) -> torch.Tensor | None:
    """What backward starts from: the model's own loss, else the sum of its first float output."""
    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    for t in tree_flatten(output)[0] if not hasattr(output, "to_tuple") else tree_flatten(output.to_tuple())[0]:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad:
            return t.float().sum()
    return None


def measure(
    module: torch.nn.Module,
    specs: Sequence[InputSpec],
    *,
    train: bool,
    dtype: torch.dtype | None = None,
    attention: str = "flash",
    checkpointing: str = "none",
    extra_kwargs: Mapping[str, Any] | None = None,
    labels: str | None = None,
    score_side: int | None = None,
) -> MemoryProfile:
    """Run one step (forward, and backward when ``train``) on meta and measure its activations.

    Args:
        module: the model (left as it was found).
        specs: the inputs to make (see :mod:`paramscope.trace.inputs`).
        train: run forward and backward in train mode; else a forward under ``no_grad``.
        dtype: the working dtype of floating weights (``None``: as stored).
        attention: ``"flash"`` or ``"math"`` for ``scaled_dot_product_attention``.
        checkpointing: ``"full"`` wraps each repeated block in ``torch.utils.checkpoint``.
        extra_kwargs: keyword arguments added to the call (``use_cache=False``).
        labels: the name of an input to pass again as ``labels`` (models that compute a loss).
        score_side: the sequence length, to recognise L x S attention matrices.

    Returns:
        The profile; ``failure`` says why it stopped, with the module where it did.

    Example:
        >>> lin = torch.nn.Linear(1024, 1024)
        >>> p = measure(lin, [InputSpec(None, "", (8, 1024))], train=True)
        >>> p.forward_end, p.grad_bytes  # the output and its sum; weight and bias gradients
        (32772, 4198400)
    """
    profile = MemoryProfile()
    for kind in ("meta", "fake"):
        profile, exc = _attempt(module, specs, train, dtype, attention, checkpointing, extra_kwargs, labels, score_side, kind)
        if exc is None or kind == "fake" or not _meta_limitation(exc):
            break
    return profile


def _attempt(
    module: torch.nn.Module,
    specs: Sequence[InputSpec],
    train: bool,
    dtype: torch.dtype | None,
    attention: str,
    checkpointing: str,
    extra_kwargs: Mapping[str, Any] | None,
    labels: str | None,
    score_side: int | None,
    kind: str,
) -> tuple[MemoryProfile, Exception | None]:
    """One step on bare meta tensors (fast) or under FakeTensorMode (for code that needs data)."""
    profile = MemoryProfile()
    stack: list[str] = []
    tracker = _Tracker(stack, score_side)
    paths: dict[int, str] = {}
    for path, m in module.named_modules(remove_duplicate=False):
        paths.setdefault(id(m), path)
    def pre(mod: torch.nn.Module, _args: Any) -> None:
        stack.append(paths.get(id(mod), f"<{type(mod).__name__}>"))

    def post(mod: torch.nn.Module, _args: Any, _out: Any) -> None:
        if stack:
            stack.pop()

    snapshot = Snapshot(module)
    with ExitStack() as es:
        es.callback(snapshot.restore)
        device = torch.device("meta")
        if kind == "fake":
            # Fake tensors where bare meta ones fail: model code that checks for tracing (masks
            # built from data in transformers) skips its data-dependent checks, as under torch.compile.
            from torch._subclasses.fake_tensor import FakeTensorMode

            es.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
            device = torch.device("cpu")
        else:
            _meta_is_tracing(es)
        _, blocks = repeated_blocks(module)
        block_of = {id(p): i for i, b in enumerate(blocks) for p in b.parameters()}
        metas: dict[int, torch.Tensor] = {}
        state: dict[str, torch.Tensor] = {}
        for name, p in module.named_parameters(remove_duplicate=False):
            if id(p) not in metas:
                metas[id(p)] = _meta_like(p, dtype, train and p.requires_grad, device)
            state[name] = metas[id(p)]
        for name, b in module.named_buffers(remove_duplicate=False):
            if id(b) not in metas:
                metas[id(b)] = _meta_like(b, dtype, False, device)
            state[name] = metas[id(b)]
        work_dtype = dtype or float_dtype(module)
        args, kwargs = build_inputs(specs, None, None, work_dtype, device, False)
        if labels is not None and labels in kwargs:
            kwargs["labels"] = kwargs[labels]
        kwargs.update(extra_kwargs or {})
        for t in [*metas.values(), *args, *kwargs.values()]:
            if isinstance(t, torch.Tensor):
                tracker.adopt(t)
        for m in {id(m): m for m in module.modules()}.values():
            try:
                es.callback(m.register_forward_pre_hook(pre).remove)
                es.callback(m.register_forward_hook(post).remove)
            except (RuntimeError, AttributeError):
                continue

        def on_grad(p: torch.Tensor, block: int | None) -> None:
            if p.grad is not None:
                tracker.make_grad(p.grad)
            if block is not None:
                profile.block_marks.setdefault(block, len(tracker.timeline))

        for orig_id, t in metas.items():
            if t.requires_grad:
                t.register_post_accumulate_grad_hook(lambda p, b=block_of.get(orig_id): on_grad(p, b))
        if blocks:
            profile.block_grad_bytes = sum(
                metas[id(p)].numel() * metas[id(p)].element_size() for p in blocks[0].parameters() if metas[id(p)].requires_grad
            )
        es.callback(setattr, torch.nn.functional, "dropout", torch.nn.functional.dropout)
        torch.nn.functional.dropout = fused_dropout
        if attention == "flash":
            es.callback(setattr, torch.nn.functional, "scaled_dot_product_attention",
                        torch.nn.functional.scaled_dot_product_attention)
            torch.nn.functional.scaled_dot_product_attention = flash_sdpa
        if train and checkpointing == "full":
            _wrap_blocks(module, es)
        module.train(train)
        es.enter_context(torch.enable_grad() if train else torch.no_grad())
        step = _Step(module, tracker, profile, train)
        full_state = {f"model.{k}": v for k, v in state.items()}
        try:
            with tracker:
                # The whole step runs inside one functional_call, so that the recomputation of
                # checkpointed blocks during backward still sees the stand-in weights.
                torch.func.functional_call(step, full_state, args, kwargs, strict=False)
        except Exception as exc:  # noqa: BLE001 - a model failing on meta is reported, not raised
            where = stack[-1] if stack else ""
            name = f"'{where}'" if where else f"the model ({type(module).__name__})"
            profile.failure = f"the step on the meta device stopped in {name} with {type(exc).__name__}: {_first_line(exc)}"
            return profile, exc
    profile.backward = tracker.timeline
    profile.grad_bytes = tracker.grad
    return profile, None


def _meta_is_tracing(es: ExitStack) -> None:
    """transformers skips its data-dependent mask checks when it is tracing; a meta tensor has
    no data either, so for the pass it counts as tracing (restored afterwards)."""
    import sys

    masking = sys.modules.get("transformers.masking_utils")
    original = getattr(masking, "is_tracing", None)
    if masking is None or original is None:
        return

    def is_tracing(tensor: Any = None) -> bool:
        return bool(original(tensor)) or (isinstance(tensor, torch.Tensor) and tensor.is_meta)

    es.callback(setattr, masking, "is_tracing", original)
    setattr(masking, "is_tracing", is_tracing)  # noqa: B010 - a module found at run time


class _Step(torch.nn.Module):
    """Forward, loss and backward of the model as one call."""

    def __init__(self, model: torch.nn.Module, tracker: _Tracker, profile: MemoryProfile, train: bool) -> None:
        super().__init__()
        self.model = model
        self._tracker = tracker
        self._profile = profile
        self._train = train

    def forward(self, *args: Any, **kwargs: Any) -> None:
        tracker, profile = self._tracker, self._profile
        output = self.model(*args, **kwargs)
        loss = _loss(output) if self._train else None
        profile.forward_end = tracker.act
        profile.forward_peak = tracker.forward_peak
        profile.score_bytes = tracker.score
        for _ref, n, where, _s in tracker.live.values():
            profile.by_module[where] = profile.by_module.get(where, 0) + n
        if not self._train:
            return
        if loss is None:
            raise RuntimeError("the model's output has no floating tensor that needs a gradient")
        tracker.backward = True
        del output
        loss.backward()


def _wrap_blocks(module: torch.nn.Module, es: ExitStack) -> None:
    """Each repeated block's forward runs under non-reentrant checkpointing for the call."""
    from torch.utils.checkpoint import checkpoint

    _, blocks = repeated_blocks(module)
    for block in blocks:
        original: Callable[..., Any] = block.forward

        def wrapped(*a: Any, _f: Callable[..., Any] = original, **k: Any) -> Any:
            return checkpoint(_f, *a, use_reentrant=False, **k)

        had = "forward" in vars(block)
        block.forward = wrapped
        if had:
            es.callback(setattr, block, "forward", original)
        else:
            es.callback(vars(block).pop, "forward", None)
