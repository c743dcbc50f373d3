"""Activation bytes of one step on one device, before tensor parallelism: measured or estimated.

PyTorch modules and Hugging Face configs are measured by
:func:`paramscope.trace.memory_pass.measure` (forward and backward on meta, what autograd
keeps and when each tensor dies). Keras models are estimated from their layer output shapes:
training keeps every layer's output for backward (a layer's gradient needs its input, which is
the previous layer's output); inference needs one layer's input and output at a time. The
estimate is labelled as such in the plan's notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import prod
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.dtypes import n_bytes as dtype_bytes
from paramscope.planner.setup import PRECISIONS, MemorySetup
from paramscope.planner.sources import Prepared

__all__ = ["Activations", "activations"]


@dataclass(frozen=True, slots=True)
class Activations:
    """Activation bytes measured at ``batch`` x ``seq`` on one device, unsharded.

    Attributes:
        forward_peak: training: most bytes alive during the forward pass; inference: the
            prefill (or single forward) peak. ``None`` when unknown.
        forward_end: training: bytes kept at the end of the forward pass.
        backward: training: ``(activation, gradient)`` bytes at each allocation of backward.
        grad_bytes: parameter gradient bytes the measured pass made (to rescale to shards).
        score_bytes: bytes of L x S attention matrices kept at the end of the forward pass.
        decode_peak: inference: the peak of a one-token step.
        by_module: ``(path, bytes)`` kept at the end of the forward pass.
        batch: the batch measured.
        seq: the sequence length measured.
        n_blocks: repeated blocks found (for selective recomputation).
        blocks_path: the path of the module list holding them (``model.layers``).
        extrapolated_from: measured on a copy with this many blocks (0: the whole model).
        estimated: from shapes, not measured.
        failure: why they are unknown.
    """

    forward_peak: int | None = None
    forward_end: int | None = None
    backward: tuple[tuple[int, int], ...] = ()
    grad_bytes: int = 0
    score_bytes: int = 0
    decode_peak: int | None = None
    by_module: tuple[tuple[str, int], ...] = ()
    batch: int = 1
    seq: int | None = None
    n_blocks: int = 0
    blocks_path: str = ""
    extrapolated_from: int = 0
    estimated: bool = False
    failure: str = ""


def working_dtype(setup: MemorySetup, stored: str | None) -> str:
    """The dtype weights and activations are computed in."""
    if setup.precision is not None:
        return PRECISIONS[setup.precision][0]
    return "float32" if setup.train else (stored or "float32")


def activations(prep: Prepared, setup: MemorySetup, stored: str | None) -> Activations:
    """Activation bytes of the planned step (see the module docstring)."""
    work = working_dtype(setup, stored)
    if prep.kind == "keras":
        return _keras(prep.anatomy, setup, prep.batch, work)
    if prep.module is None:
        return Activations(batch=prep.batch, seq=prep.seq, failure="no forward pass")
    import torch

    from paramscope.trace.memory_pass import measure, repeated_blocks

    dtype = getattr(torch, work)
    forward = _forward_kwargs(prep.module)
    labels = "input_ids" if setup.train and "labels" in forward and prep.seq is not None else None
    extra: dict[str, Any] = {"use_cache": False} if "use_cache" in forward else {}
    if not setup.train and "logits_to_keep" in forward:
        extra["logits_to_keep"] = 1  # as generate() runs the prefill: logits of the last token only
    checkpointing = setup.checkpointing if setup.train else "none"
    blocks_path, blocks = repeated_blocks(prep.module)
    short = [_truncated(prep, blocks, k) for k in (_K, _K + 1)] if setup.train else [None]
    if all(m is not None for m in short):
        profiles = [
            measure(
                m, prep.specs, train=True, dtype=dtype, attention=setup.attention, checkpointing=checkpointing,
                extra_kwargs=extra, labels=labels, score_side=prep.seq,
            )
            for m in short
            if m is not None
        ]
        if not any(p.failure for p in profiles) and len(profiles[0].block_marks) == _K:
            return _extrapolate(profiles[0], profiles[1], len(blocks), blocks_path, prep)
    profile = measure(
        prep.module, prep.specs, train=setup.train, dtype=dtype, attention=setup.attention,
        checkpointing=checkpointing, extra_kwargs=extra, labels=labels, score_side=prep.seq,
    )
    blocks_path, blocks = repeated_blocks(prep.module)
    if profile.failure:
        return Activations(batch=prep.batch, seq=prep.seq, failure=profile.failure, n_blocks=len(blocks))
    decode = None
    if not setup.train and prep.seq is not None and prep.seq > 1 and prep.kind in ("hf", "file"):
        one = [type(s)(s.name, s.dtype, (s.shape[0], 1, *s.shape[2:])) for s in prep.specs]
        step = measure(prep.module, one, train=False, dtype=dtype, attention=setup.attention, extra_kwargs=extra)
        decode = None if step.failure else step.forward_peak
    return Activations(
        forward_peak=profile.forward_peak,
        forward_end=profile.forward_end if setup.train else None,
        backward=tuple(profile.backward),
        grad_bytes=profile.grad_bytes,
        score_bytes=profile.score_bytes,
        decode_peak=decode,
        by_module=tuple(profile.by_module.items()),
        batch=prep.batch,
        seq=prep.seq,
        n_blocks=len(blocks),
        blocks_path=blocks_path,
    )


#: Blocks kept when a deep model is measured through a shortened copy (see _extrapolate).
_K = 2
#: Models with more repeated blocks than this are measured through a shortened copy.
_SHORTEN_ABOVE = 6


def _truncated(prep: Prepared, blocks: list[Any], k: int) -> Any:
    """The same Hugging Face model with only ``k`` blocks, when its blocks are all alike.

    Every block must have the same parameter shapes, and the config must not give layers
    different kinds (sliding and full attention, dense and expert layers); otherwise ``None``.
    """
    if prep.config is None or len(blocks) <= _SHORTEN_ABOVE:
        return None
    import copy

    def shapes(b: Any) -> list[tuple[str, tuple[int, ...]]]:
        return [(n, tuple(p.shape)) for n, p in b.named_parameters()]

    first = shapes(blocks[0])
    if any(shapes(b) != first for b in blocks[1:]):
        return None
    config = copy.deepcopy(prep.config)
    target = getattr(config, "text_config", None) or config
    kinds = getattr(target, "layer_types", None)
    if isinstance(kinds, (list, tuple)):
        if len(set(kinds)) > 1:
            return None
        target.layer_types = list(kinds)[:k]
    for name in ("first_k_dense_replace", "moe_layer_freq", "mlp_only_layers", "max_window_layers"):
        if getattr(target, name, None) not in (None, 0, 1, [], ()):
            return None
    try:
        target.num_hidden_layers = k
    except (AttributeError, TypeError):
        return None
    from paramscope.readers.hf import config as hf

    tf = hf._transformers()
    with hf._quiet(tf):
        model = hf._build_model(tf, type(prep.module), config, "")
    _, short_blocks = __import__("paramscope.trace.memory_pass", fromlist=["x"]).repeated_blocks(model)
    if len(short_blocks) != k or shapes(short_blocks[0]) != first:
        return None
    return model


def _extrapolate(p: Any, p_next: Any, n_blocks: int, blocks_path: str, prep: Prepared) -> Activations:
    """A ``_K``-block measurement extended to ``n_blocks`` alike blocks.

    Blocks that are alike keep alike activations (``kept`` bytes each at the end of the forward
    pass: the difference between the ``_K + 1``- and the ``_K``-block measurements) and make
    alike gradients (``grad`` bytes each). Backward runs the blocks last to first:
    the measured timeline is cut where each block's first gradient is accumulated, and the
    stretch of one block is repeated, with the activations of the blocks not yet reached still
    alive and the gradients of those already done accumulated.
    """
    prefix = f"{blocks_path}."
    kept = p_next.forward_end - p.forward_end
    grad = p.block_grad_bytes
    extra = n_blocks - _K
    t = p.backward
    m1, m0 = p.block_marks[1], p.block_marks[0]
    timeline = [(int(a + extra * kept), g) for a, g in t[:m1]]
    for i in range(n_blocks - 1, 0, -1):
        timeline.extend((int(a + (i - 1) * kept), g + (n_blocks - 1 - i) * grad) for a, g in t[m1:m0])
    timeline.extend((a, g + extra * grad) for a, g in t[m0:])
    # Every block but the last keeps what block 0 keeps; the last keeps what the copy's last keeps.
    by_module: dict[str, int] = {}
    for path, n in p.by_module.items():
        head, _, rest = path[len(prefix):].partition(".") if path.startswith(prefix) else ("", "", "")
        if not head.isdigit():
            by_module[path] = n
            continue
        tail = f".{rest}" if rest else ""
        if int(head) == _K - 1:
            by_module[f"{prefix}{n_blocks - 1}{tail}"] = n
        elif int(head) == 0:
            for j in range(n_blocks - 1):
                by_module[f"{prefix}{j}{tail}"] = n
    return Activations(
        forward_peak=int(p.forward_peak + extra * kept),
        forward_end=int(p.forward_end + extra * kept),
        backward=tuple(timeline),
        grad_bytes=p.grad_bytes + extra * grad,
        score_bytes=p.score_bytes * n_blocks // _K,
        by_module=tuple(by_module.items()),
        batch=prep.batch,
        seq=prep.seq,
        n_blocks=n_blocks,
        blocks_path=blocks_path,
        extrapolated_from=_K,
    )


def _forward_kwargs(module: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _keras(anatomy: Anatomy, setup: MemorySetup, batch: int, work: str) -> Activations:
    outputs: list[tuple[str, int]] = []
    largest_step = 0
    for layer in anatomy.walk():
        if layer.children or not layer.output_shapes:
            continue
        size = 0
        for shape in layer.output_shapes:
            dims = [batch if d is None else d for d in shape]
            size += dtype_bytes(work, prod(dims)) or 0
        outputs.append((layer.path or layer.name, size * max(layer.calls, 1)))
        inputs = 0
        for shape in layer.input_shapes or ():
            inputs += dtype_bytes(work, prod(batch if d is None else d for d in shape)) or 0
        largest_step = max(largest_step, inputs + size)
    if not outputs:
        return Activations(batch=batch, failure="the Keras model has no layer output shapes")
    kept = sum(n for _, n in outputs)
    largest = max(n for _, n in outputs)
    if not setup.train:
        return Activations(forward_peak=largest_step, batch=batch, by_module=tuple(outputs), estimated=True)
    grads = sum(
        dtype_bytes(work, t.count or 0) or 0 for layer in anatomy.walk() for t in layer.tensors if t.role.value == "trainable"
    )
    # Backward starts with every output kept and the loss gradient (the size of the last
    # output); gradients appear as activations are released, so the two ends bound the peak.
    backward = ((kept + largest, 0), (largest, grads))
    return Activations(
        forward_peak=kept, forward_end=kept, backward=backward, grad_bytes=grads, batch=batch,
        by_module=tuple(outputs), estimated=True,
    )


def group_paths(by_module: tuple[tuple[str, int], ...], blocks_path: str) -> list[tuple[str, int, int]]:
    """``(pattern, bytes, repeat)``: the repeated blocks' indices written ``*``, in first-seen order.

    Example:
        >>> group_paths((("h.0.mlp", 4), ("h.1.mlp", 4), ("lm_head", 8)), "h")
        [('h.*.mlp', 8, 2), ('lm_head', 8, 1)]
    """
    index = re.compile(rf"^({re.escape(blocks_path)}\.)\d+(?=\.|$)") if blocks_path else None
    order: dict[str, tuple[int, set[str]]] = {}
    for path, n in by_module:
        pattern = (index.sub(r"\1*", path) if index else path) or "(top level: loss, outputs)"
        total, members = order.get(pattern, (0, set()))
        members.add(path)
        order[pattern] = (total + n, members)
    return [(p, n, len(m)) for p, (n, m) in order.items()]
