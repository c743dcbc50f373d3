"""Model states per device: parameters, gradients and optimizer states, by role and precision.

Bytes per parameter (Rajbhandari et al. 2020, "ZeRO", section 3.1 and Table 1): a model
trained with mixed-precision Adam holds 2 bytes of fp16/bf16 weights, 2 bytes of gradients and
K = 12 bytes of optimizer state per trainable parameter (fp32 master weight, momentum and
variance). Gradients and optimizer state exist only for trainable parameters: frozen weights,
LoRA bases and BatchNorm's moving statistics (updated from the data in the forward pass, not
by gradient) have neither. Sharding divides what it shards by the data-parallel size N_d:

    none   (2 + 2 + K) x psi            zero2  2 psi + (2 + K) x psi / N_d
    zero1  2 psi + 2 psi + K psi / N_d  zero3  (2 + 2 + K) x psi / N_d   (fsdp: as zero3)

Tensor parallelism (Megatron, Shoeybi et al. 2019) splits every matrix (2-D and larger:
linear weights, vocab-parallel embeddings and heads) over T devices and replicates vectors
(norm weights, biases). Pipeline parallelism gives each of P stages an equal share of the
repeated blocks; the tensors before the blocks go to the first stage, those after to the last,
and the larger stage is reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from paramscope.core.dtypes import n_bytes as dtype_bytes
from paramscope.planner.setup import PRECISIONS, MemorySetup

__all__ = ["ParamGroup", "Part", "ModelStates", "optimizer_bytes_per_param", "model_states"]

_FLOAT = ("float64", "float32", "float16", "bfloat16")


@dataclass(frozen=True, slots=True)
class ParamGroup:
    """Tensors treated alike, summed.

    Attributes:
        count: elements.
        dtype: stored dtype.
        trainable: gets a gradient and optimizer state.
        is_param: a parameter (``False``: a buffer such as PyTorch's BatchNorm statistics).
        split: tensor parallelism splits it (a matrix, not a vector).
        stage: ``"pre"``, ``"block"`` or ``"post"``: before, inside or after the repeated blocks.
        n_tensors: how many tensors it sums.
        rows_cols: for Adafactor, sum over 2-D-or-larger tensors of (rows + cols) of the factored
            second moment; vectors keep a full second moment.
        largest: elements of its largest tensor (optimizer step temporaries).
        small: elements of its tensors under 4,096 elements (8-bit optimizers keep them 32-bit).
    """

    count: int
    dtype: str
    trainable: bool
    is_param: bool = True
    split: bool = True
    stage: str = "block"
    n_tensors: int = 1
    rows_cols: int = 0
    largest: int = 0
    small: int = 0


@dataclass(frozen=True, slots=True)
class Part:
    """One memory part: bytes on the device, bytes on the host, and how they follow."""

    n_bytes: int | None
    formula: str
    host_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ModelStates:
    """Parameters, gradients, optimizer states per device, and the figures the plan needs."""

    params: Part
    grads: Part
    optimizer: Part
    n_trainable: int
    n_frozen: int
    n_buffers: int
    largest_trainable: int  # elements of the largest trainable tensor (per device)


def optimizer_bytes_per_param(optimizer: str, state_dtype_bytes: int, master: bool) -> tuple[float, str]:
    """K: optimizer bytes per trainable parameter, and what they are.

    Example:
        >>> optimizer_bytes_per_param("adamw", 4, True)
        (12, 'fp32 master 4 + momentum 4 + variance 4')
    """
    k = state_dtype_bytes
    master_k, master_text = (4, "fp32 master 4 + ") if master else (0, "")
    table: dict[str, tuple[float, str]] = {
        "none": (0, "no optimizer"),
        "sgd": (0, "plain SGD keeps no state"),
        "sgd-momentum": (k, f"momentum {k}"),
        "adam": (2 * k, f"momentum {k} + variance {k}"),
        "adamw": (2 * k, f"momentum {k} + variance {k}"),
        # bitsandbytes 8-bit Adam: one byte per state, plus one fp32 absmax per 2,048-element block
        # per state (Dettmers et al. 2022, block-wise quantization).
        "adamw-8bit": (2 + 2 * 4 / 2048, "momentum 1 + variance 1 + 2 x 4/2048 block scales"),
        # Adafactor (Shazeer & Stern 2018) without momentum: the factored second moment is
        # counted per tensor, rows + cols elements; see model_states.
        "adafactor": (0, "factored variance: rows + cols per matrix"),
    }
    base, text = table[optimizer]
    return base + master_k, master_text + text


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def model_states(groups: Iterable[ParamGroup], setup: MemorySetup, stored_dtype: str | None) -> ModelStates:
    """Model state bytes per device for a setup.

    Args:
        groups: the model's tensors, summed by treatment.
        setup: the run.
        stored_dtype: the model's floating dtype as stored (inference default).

    Example:
        >>> from paramscope.planner.setup import make_setup
        >>> g = [ParamGroup(7_500_000_000, "float32", True)]
        >>> s = model_states(g, make_setup(train=True, precision="fp16-mixed", shard="zero1", dp=64), None)
        >>> s.params.n_bytes + s.grads.n_bytes + s.optimizer.n_bytes
        31406250000
    """
    groups = list(groups)
    if setup.precision is not None:
        work, grad_dtype, master = PRECISIONS[setup.precision]
    elif setup.train:
        work, grad_dtype, master = "float32", "float32", False
    else:
        work = stored_dtype or "float32"
        grad_dtype, master = work, False
    work_b = dtype_bytes(work, 1) or 4
    grad_b = dtype_bytes(grad_dtype, 1) or 4
    state_b = 4 if master else work_b
    k, k_text = optimizer_bytes_per_param(setup.optimizer if setup.train else "none", state_b, master)
    t, p, dp = setup.tp, setup.pp, setup.dp
    cast = setup.train or setup.precision is not None  # inference keeps each tensor as stored

    def per_device(select: str, bpe: float | None, trainable_only: bool, params_only: bool = True) -> int:
        """Largest pipeline stage's elements (x bytes per element), tensor-parallel split applied."""
        stages = {"pre": 0.0, "block": 0.0, "post": 0.0}
        for g in groups:
            if trainable_only and not g.trainable:
                continue
            if params_only and not g.is_param:
                continue
            if select == "buffers" and g.is_param:
                continue
            size: float
            if bpe is None:  # the working dtype for floating tensors, else (and for plain inference) as stored
                dt = work if g.dtype in _FLOAT and cast else g.dtype
                size = float(dtype_bytes(dt, g.count) or 0)
            else:
                size = g.count * bpe
            stages[g.stage] += size / t if g.split else size
        block = stages["block"] / p
        if p == 1:
            return int(round(stages["pre"] + block + stages["post"]))
        return int(round(block + max(stages["pre"], stages["post"])))

    n_train = sum(g.count for g in groups if g.trainable and g.is_param)
    n_frozen = sum(g.count for g in groups if not g.trainable and g.is_param)
    n_buf = sum(g.count for g in groups if not g.is_param)
    param_bytes = per_device("params", None, False)
    buffer_bytes = per_device("buffers", None, False, params_only=False)
    scale = f" / TP {t}" if t > 1 else ""
    scale += f", largest of {p} stages" if p > 1 else ""
    shard_params = setup.train and setup.shard in ("zero3", "fsdp")
    p_dev = _ceil_div(param_bytes, dp) if shard_params else param_bytes
    p_formula = f"{work_b} x {n_train + n_frozen:,}" + (f" + {buffer_bytes:,} B buffers" if buffer_bytes else "")
    p_formula += scale + (f" / {dp}" if shard_params else "")
    params_host = 0
    if setup.offload == "params":
        params_host, p_dev = p_dev, 0
        p_formula += " (on the host: CPU offload)"
    params = Part(p_dev + buffer_bytes, p_formula, params_host)

    if not setup.train:
        zero = Part(0, "inference: no gradients")
        return ModelStates(params, zero, Part(0, "inference: no optimizer"), n_train, n_frozen, n_buf, 0)

    grads_full = per_device("grads", grad_b, True)
    shard_grads = setup.shard in ("zero2", "zero3", "fsdp")
    g_dev = _ceil_div(grads_full, dp) if shard_grads else grads_full
    g_formula = f"{grad_b} x {n_train:,} trainable" + scale + (f" / {dp}" if shard_grads else "")
    grads = Part(g_dev, g_formula)
    if setup.offload == "params":
        grads = Part(0, g_formula + " (on the host: CPU offload)", g_dev)

    if setup.optimizer == "adafactor":
        vec = sum(g.count for g in groups if g.trainable and g.is_param and not g.split)
        fact = sum(g.rows_cols for g in groups if g.trainable and g.is_param and g.split)
        opt_full = int((vec + fact) * state_b + (4 * n_train if master else 0)) // (t if t > 1 else 1)
        o_formula = f"{state_b} x ({vec:,} vector + {fact:,} factored elements)" + (
            f" + 4 x {n_train:,} fp32 master" if master else ""
        )
    elif setup.optimizer == "adamw-8bit":
        small = sum(g.small for g in groups if g.trainable and g.is_param)
        opt_full = per_device("opt", k, True) + small * (8 - 2)
        o_formula = f"{k:g} x {n_train:,} ({k_text}; tensors under 4,096 elements keep 32-bit states)"
    else:
        opt_full = per_device("opt", k, True)
        o_formula = f"{k:g} x {n_train:,} ({k_text})" if k else k_text
    if setup.optimizer in ("adam", "adamw"):
        o_formula += "; the step counters are kept on the host by torch (not capturable/fused)"
    shard_opt = setup.shard != "none"
    o_dev = _ceil_div(opt_full, dp) if shard_opt else opt_full
    o_formula += scale + (f" / {dp}" if shard_opt else "")
    optimizer = Part(o_dev, o_formula)
    if setup.offload in ("optimizer", "params"):
        optimizer = Part(0, o_formula + " (on the host: ZeRO-Offload / CPUOffloadPolicy)", o_dev)
    largest = max((g.largest for g in groups if g.trainable and g.is_param), default=0)
    return ModelStates(params, grads, optimizer, n_train, n_frozen, n_buf, largest)
