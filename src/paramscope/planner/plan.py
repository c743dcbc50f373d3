"""A memory plan: the parts of a device's memory, the moments of a step, and the peak.

The peak is the largest live total of any moment, never a sum of parts that are not alive
together. Training, per device (Rajbhandari et al. 2020; PyTorch's FSDP2 design):

- forward: weights + optimizer states (kept between steps) + activations as measured, up
  to the end of the forward pass and the loss; gradients do not exist yet
  (``zero_grad(set_to_none=True)`` freed them);
- backward: weights + optimizer states + at each moment the activations still alive plus the
  gradients made so far (the measured timeline, gradients at their sharded size);
- optimizer step: weights + gradients + optimizer states + the step's temporaries.

Inference: prefill (weights + KV cache of the whole context + the forward's peak) and decode
(weights + KV cache + a one-token step). A part that cannot be known is ``None``, and so are
the moments holding it and the peak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from math import prod
from typing import Any

from paramscope.analysis.repeats import collapse
from paramscope.analysis.totals import totals, unique_tensors
from paramscope.core.anatomy import Anatomy, Layer, Role
from paramscope.core.dtypes import n_bytes as dtype_bytes
from paramscope.core.errors import TargetError
from paramscope.planner.activations import Activations, activations, group_paths, working_dtype
from paramscope.planner.kv_cache import KVCache, kv_cache
from paramscope.planner.parallel import check_tensor_parallel, tp_activation_factor
from paramscope.planner.result import Figure, MemoryPlan, ModuleActivation, Phase
from paramscope.planner.setup import PRECISIONS, MemorySetup
from paramscope.planner.sources import Prepared, prepare
from paramscope.planner.states import ModelStates, ParamGroup, model_states

__all__ = ["Ingredients", "NOT_COUNTED", "ingredients", "evaluate", "plan"]

#: What the plan leaves out, and by how much it usually moves the result.
NOT_COUNTED = (
    "CUDA context and kernels: about 0.3-1 GiB per process (more with many kernels loaded), outside PyTorch's allocator",
    "cuBLAS/cuDNN workspaces: tens of MiB to about 1 GiB (cuBLAS keeps up to 32 MiB per stream on Hopper)",
    "NCCL communication buffers: a few hundred MiB per process group with data, tensor or pipeline parallelism",
    "allocator fragmentation and cached blocks: typically 5-30% above the live peak (reserved vs allocated)",
    "pinned host buffers and the host side of offloading (reported as host bytes where known)",
)


@dataclass(frozen=True, slots=True)
class Ingredients:
    """Everything the plan is computed from, so that batch, sequence and devices can vary."""

    name: str
    source: str
    groups: tuple[ParamGroup, ...]
    stored_dtype: str | None
    acts: Activations
    config: Any
    heads: int | None
    kv_heads: int | None
    hidden: int | None
    unit_elements: int  # the largest repeated block's parameters (an FSDP unit)
    root_elements: int  # parameters outside the repeated blocks (FSDP's root unit)
    kind: str
    notes: tuple[str, ...]


def _blocks(anatomy: Anatomy) -> tuple[Layer, ...]:
    best: tuple[Layer, ...] = ()
    for layer in [None, *anatomy.walk()]:
        kids = anatomy.layers if layer is None else layer.children
        for run in collapse(kids):
            if run.n > len(best):
                best = run.layers
    return best


def _groups(anatomy: Anatomy) -> tuple[list[ParamGroup], int, int]:
    """The model's tensors summed by treatment; the largest block's and the root's elements."""
    blocks = _blocks(anatomy)
    block_ids = {id(t) for b in blocks for t in b.all_tensors()}
    per_block = [sum(t.count or 0 for t in unique_tensors(b.all_tensors()) if t.is_param) for b in blocks]
    acc: dict[tuple[Any, ...], list[int]] = {}
    stage = "pre"
    root = 0
    for t in unique_tensors(x for layer in anatomy.layers for x in layer.all_tensors()):
        if id(t) in block_ids:
            stage = "block"
        elif stage == "block":
            stage = "post"
        count = t.count or 0
        trainable = t.is_param and t.role in (Role.TRAINABLE, Role.UNKNOWN)
        shape = t.shape or ()
        split = len(shape) >= 2
        rows_cols = 0
        if split and all(isinstance(d, int) for d in shape):
            dims = [int(d or 0) for d in shape]
            rows_cols = prod(dims[:-1]) + prod(dims[:-2]) * dims[-1]
        key = (t.dtype, trainable, t.is_param, split, stage if blocks else "block")
        a = acc.setdefault(key, [0, 0, 0, 0, 0])
        a[0] += count
        a[1] += 1
        a[2] += rows_cols
        a[3] = max(a[3], count)
        a[4] += count if count < 4096 else 0
        if id(t) not in block_ids and t.is_param:
            root += count
    groups = [
        ParamGroup(a[0], k[0], k[1], k[2], k[3], k[4], a[1], a[2], a[3], a[4]) for k, a in acc.items()
    ]
    return groups, max(per_block, default=0), root


def _config_get(config: Any, *names: str) -> int | None:
    if config is None:
        return None
    c = getattr(config, "text_config", None) or config
    for n in names:
        v = c.get(n) if isinstance(c, dict) else getattr(c, n, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def ingredients(prep: Prepared, setup: MemorySetup) -> Ingredients:
    """Read, measure and collect what the plan needs (the slow part: at most one pass or two)."""
    anatomy = prep.anatomy
    groups, unit, root = _groups(anatomy)
    floating = [d.dtype for d in totals(anatomy).by_dtype if d.dtype in ("float32", "float16", "bfloat16", "float64")]
    stored = floating[0] if floating else None
    heads = _config_get(prep.config, "num_attention_heads", "n_head")
    kv_heads = _config_get(prep.config, "num_key_value_heads") or heads
    hidden = _config_get(prep.config, "hidden_size", "n_embd", "d_model")
    if prep.config is None and prep.module is not None:
        heads = _module_heads(prep.module)
    check_tensor_parallel(setup.tp, heads, kv_heads)
    n_blocks = len(_blocks(anatomy))
    if setup.pp > 1 and setup.pp > n_blocks:
        raise TargetError(
            f"--pp {setup.pp} needs at least {setup.pp} repeated blocks to split, and this model has "
            f"{n_blocks or 'none'}; choose --pp {max(n_blocks, 1)} or fewer"
        )
    if setup.tp > 1 and heads is None:
        raise TargetError(f"--tp {setup.tp}: the model's attention heads are not known, so its split cannot be checked")
    if setup.device is not None and unit:
        work = working_dtype(setup, stored)
        one = (dtype_bytes(work, unit) or 0) // setup.tp
        if one > setup.device:
            raise TargetError(
                f"--device {setup.device_name} has {setup.device:,} bytes, less than one repeated block's "
                f"weights ({one:,} bytes in {work}); choose a larger device or more tensor parallelism (--tp)"
            )
    acts = activations(prep, setup, stored)
    return Ingredients(
        anatomy.name, anatomy.source, tuple(groups), stored, acts, prep.config, heads, kv_heads, hidden,
        unit, root, prep.kind, tuple(prep.notes),
    )


def _module_heads(module: Any) -> int | None:
    for m in module.modules():
        for name in ("num_heads", "num_attention_heads", "n_head"):
            v = getattr(m, name, None)
            if isinstance(v, int) and v > 0:
                return v
    return None


def _scaled(n: int | None, factor: float) -> int | None:
    return None if n is None else int(round(n * factor))


def evaluate(ing: Ingredients, setup: MemorySetup) -> tuple[tuple[Figure, ...], tuple[Phase, ...], int | None, ModelStates]:
    """The figures, phases and peak for ``setup`` (batch and sequence may differ from the
    measured ones: activations are scaled linearly in both, see docs/memory.md)."""
    states = model_states(ing.groups, setup, ing.stored_dtype)
    acts = ing.acts
    work = working_dtype(setup, ing.stored_dtype)
    work_b = dtype_bytes(work, 1) or 4
    batch = setup.batch or acts.batch
    seq = setup.seq or acts.seq
    scale = batch / acts.batch
    if seq and acts.seq:
        scale *= seq / acts.seq
    scale *= tp_activation_factor(setup.tp, setup.sequence_parallel, setup.attention, ing.heads, seq, ing.hidden)
    # Selective recomputation (Megatron) drops what attention keeps as L x S matrices, but for
    # the one layer being recomputed.
    drop = 0
    if setup.train and setup.checkpointing == "selective" and acts.n_blocks:
        drop = acts.score_bytes - acts.score_bytes // acts.n_blocks
    kv = _kv(ing, setup, batch, seq, work_b)
    p, g, o = states.params.n_bytes, states.grads.n_bytes, states.optimizer.n_bytes
    temporary_fwd, temporary_bwd, t_formula = _collectives(ing, setup, states)
    phases: list[Phase] = []
    if setup.train:
        a_fwd = _scaled(None if acts.forward_peak is None else acts.forward_peak - drop, scale)
        g_ratio = (g or 0) / acts.grad_bytes if acts.grad_bytes else 0.0
        if acts.backward:
            a_bwd: int | None = int(round(max(max(a - drop, 0) * scale + gr * g_ratio for a, gr in acts.backward)))
        else:
            a_bwd = None
        opt_tmp = _optimizer_temporary(setup, states)
        phases.append(_phase("forward", (("params", p), ("optimizer", o), ("activations", a_fwd), ("temporary", temporary_fwd))))
        phases.append(_phase("backward", (("params", p), ("optimizer", o), ("activations + grads", a_bwd), ("temporary", temporary_bwd))))
        phases.append(_phase("optimizer step", (("params", p), ("grads", g), ("optimizer", o), ("temporary", opt_tmp))))
        act_value = a_fwd
        act_formula = _act_formula(acts, batch, seq, setup)
        temp = max(temporary_fwd, temporary_bwd, opt_tmp)
        t_formula = t_formula + (f"; optimizer step {opt_tmp:,} B (two tensors the size of the largest parameter)" if opt_tmp else "")
    else:
        a_pre = _scaled(acts.forward_peak, scale)
        phases.append(_phase("prefill" if seq else "forward", (("params", p), ("kv_cache", kv.n_bytes), ("activations", a_pre))))
        if seq and acts.decode_peak is not None:
            a_dec = _scaled(acts.decode_peak, batch / acts.batch)
            phases.append(_phase("decode", (("params", p), ("kv_cache", kv.n_bytes), ("activations", a_dec))))
        act_value = a_pre
        act_formula = _act_formula(acts, batch, seq, setup)
        temp = 0
        t_formula = "inference: none beyond the activations"
    figures = (
        Figure("params", p, states.params.formula, states.params.host_bytes),
        Figure("grads", g, states.grads.formula, states.grads.host_bytes),
        Figure("optimizer", o, states.optimizer.formula, states.optimizer.host_bytes),
        Figure("activations", act_value, act_formula),
        Figure("kv_cache", kv.n_bytes, kv.formula),
        Figure("temporary", temp, t_formula),
    )
    peak = None if any(ph.n_bytes is None for ph in phases) else max(ph.n_bytes or 0 for ph in phases)
    return figures, tuple(phases), peak, states


def _phase(name: str, parts: Sequence[tuple[str, int | None]]) -> Phase:
    total = None if any(v is None for _, v in parts) else sum(v or 0 for _, v in parts)
    return Phase(name, total, tuple(parts))


def _kv(ing: Ingredients, setup: MemorySetup, batch: int, seq: int | None, work_b: int) -> KVCache:
    if setup.train:
        return KVCache(0, "training: no KV cache")
    if seq is None:
        return KVCache(0, "not a token model: no KV cache")
    if ing.config is None:
        return KVCache(None, "?", "no config: the KV cache layout is not known")
    if isinstance(ing.config, dict) and setup.precision is None:
        work_b = ing.config.get("kv_cache_dtype_bytes", work_b)  # a GGUF file: llama.cpp caches in f16
    return kv_cache(ing.config, batch=batch, seq=seq, dtype_bytes=work_b, tp=setup.tp, pp=setup.pp)


def _collectives(ing: Ingredients, setup: MemorySetup, states: ModelStates) -> tuple[int, int, str]:
    """All-gather and reduce-scatter buffers of sharded training, forward and backward."""
    if not setup.train or setup.shard in ("none", "zero1"):
        return 0, 0, "none"
    work, grad_dtype, _ = PRECISIONS[setup.precision] if setup.precision else ("float32", "float32", False)
    wb, gb = dtype_bytes(work, 1) or 4, dtype_bytes(grad_dtype, 1) or 4
    t = setup.tp
    if setup.shard == "zero2":
        # DeepSpeed's default reduce bucket: 5e8 elements (reduce_bucket_size), or all gradients if fewer.
        n = min(500_000_000, states.n_trainable) * gb // t
        return 0, n, f"reduce bucket: {gb} x min(5e8, {states.n_trainable:,}) elements"
    unit = ing.unit_elements or (states.n_trainable + states.n_frozen)
    gather = 2 * wb * unit // t  # the unit running and the next one prefetched
    scatter = gb * unit // t
    root = wb * ing.root_elements // t - (wb * ing.root_elements // t) // setup.dp if setup.shard == "fsdp" else 0
    fwd = gather + root
    formula = (f"all-gather {wb} x {unit:,} x 2 units (running + prefetched)"
               + (f" + root unit kept unsharded {root:,} B" if root else "")
               + f"; backward adds reduce-scatter {gb} x {unit:,}")
    return fwd, fwd + scatter, formula


def _optimizer_temporary(setup: MemorySetup, states: ModelStates) -> int:
    if setup.optimizer in ("none", "sgd") or setup.offload != "none":
        return 0
    state_b = 4 if setup.precision and PRECISIONS[setup.precision][2] else (
        dtype_bytes(PRECISIONS[setup.precision][0], 1) if setup.precision else 4
    ) or 4
    # The single-tensor Adam update builds sqrt(v) and sqrt(v) / bias_correction before the
    # in-place update: two temporaries the size of the parameter being updated.
    n = 2 * states.largest_trainable * state_b // setup.tp
    return n // setup.dp if setup.shard != "none" else n


def _act_formula(acts: Activations, batch: int, seq: int | None, setup: MemorySetup) -> str:
    if acts.failure:
        return f"unknown: {acts.failure}"
    how = "estimated from layer output shapes" if acts.estimated else "measured on meta"
    at = f"batch {acts.batch}" + (f" x seq {acts.seq}" if acts.seq else "")
    text = f"{how} at {at}"
    if batch != acts.batch or (seq and seq != acts.seq):
        text += f", scaled to batch {batch}" + (f" x seq {seq}" if seq else "")
    if setup.tp > 1:
        text += f", x tensor-parallel share ({'1/' + str(setup.tp) if setup.sequence_parallel else 'Korthikanti et al. 2022'})"
    if setup.train and setup.checkpointing != "none":
        text += f"; {setup.checkpointing} checkpointing"
    return text


def plan(source: Any, setup: MemorySetup, *, input_size: Any = None, inputs: Any = None) -> MemoryPlan:
    """Build the plan for ``source`` (see :func:`paramscope.memory`)."""
    from paramscope.planner.fits import fit

    prep = prepare(source, setup, input_size=input_size, inputs=inputs)
    ing = ingredients(prep, setup)
    setup = replace(setup, batch=setup.batch or ing.acts.batch, seq=setup.seq or ing.acts.seq)
    figures, phases, peak, states = evaluate(ing, setup)
    notes = list(ing.notes)
    notes.extend(_explain_states(prep.anatomy, states, setup))
    if ing.acts.failure:
        notes.append(f"Activations unknown: {ing.acts.failure}. Parameters, gradients and optimizer states are unaffected.")
    if ing.acts.estimated:
        notes.append("Activations are an estimate from Keras layer output shapes (every output kept for backward), not a measurement.")
    if setup.train and setup.checkpointing == "selective" and setup.attention == "flash":
        notes.append("Selective recomputation drops the L x S attention matrices, which flash attention never stores: same as none here.")
    if setup.pp > 1:
        notes.append(f"Pipeline: weights of the larger of {setup.pp} stages; activations as one stage of 1F1B keeps ({setup.pp} micro-batches of {setup.pp}-th of the layers: one micro-batch of all layers).")
    by_module = tuple(ModuleActivation(p, n, r) for p, n, r in group_paths(ing.acts.by_module, ing.acts.blocks_path))
    return MemoryPlan(
        name=ing.name, source=ing.source, mode="training" if setup.train else "inference", setup=setup,
        figures=figures, peak=peak, phases=phases, by_module=by_module,
        fits=fit(ing, setup, peak) if setup.device is not None else None,
        not_counted=NOT_COUNTED, notes=tuple(notes),
    )


def _explain_states(anatomy: Anatomy, states: ModelStates, setup: MemorySetup) -> list[str]:
    if not setup.train:
        return []
    notes: list[str] = []
    stats = sum(t.count or 0 for t in unique_tensors(anatomy_tensors(anatomy)) if t.role is Role.STATISTIC)
    frozen = states.n_frozen
    if stats:
        notes.append(
            f"{stats:,} numbers are moving statistics (BatchNormalization's mean and variance): they are updated from "
            "each batch's statistics in the forward pass, not by gradient descent, so they get no gradient and no "
            "optimizer state."
        )
    if frozen and frozen != stats:
        notes.append(f"{frozen:,} frozen parameters (requires_grad=False / trainable=False) get no gradient and no optimizer state.")
    return notes


def anatomy_tensors(anatomy: Anatomy) -> Any:
    """Every tensor of the anatomy, top-level layers first."""
    return (t for layer in anatomy.layers for t in layer.all_tensors())
