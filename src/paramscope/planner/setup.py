"""The setup of a memory plan: what run is planned, validated once and frozen.

Every option is checked here, before any model is built, so that an impossible setup ends in
one line saying what is wrong and what to do (:class:`~paramscope.core.errors.TargetError`).
Checks that need the model (tensor parallelism against the head count, ``seq`` against the
model's inputs) are in :mod:`paramscope.planner.plan`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from paramscope.core.errors import TargetError

__all__ = [
    "MemorySetup",
    "PRECISIONS",
    "OPTIMIZERS",
    "CHECKPOINTING",
    "SHARDING",
    "OFFLOAD",
    "ATTENTION",
    "make_setup",
]

#: Precision -> (dtype of the working weights and activations, dtype of the gradients,
#: whether an fp32 master copy lives in the optimizer). Mixed precision as in ZeRO
#: (Rajbhandari et al. 2020, section 3.1) and FSDP2's MixedPrecisionPolicy: 16-bit working copy
#: and gradients, fp32 master weights updated by the optimizer.
PRECISIONS: dict[str, tuple[str, str, bool]] = {
    "fp32": ("float32", "float32", False),
    "fp16": ("float16", "float16", False),
    "bf16": ("bfloat16", "bfloat16", False),
    "fp16-mixed": ("float16", "float16", True),
    "bf16-mixed": ("bfloat16", "bfloat16", True),
}
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw", "adafactor", "adamw-8bit", "none")
CHECKPOINTING = ("none", "full", "selective")
SHARDING = ("none", "zero1", "zero2", "zero3", "fsdp")
OFFLOAD = ("none", "optimizer", "params")
#: ``flash``: scaled_dot_product_attention keeps q, k, v, output and log-sum-exp (the CUDA
#: flash / memory-efficient kernels); ``math``: it keeps the L x S score matrices, as eager code.
ATTENTION = ("flash", "math")
_MAX = 1 << 40


@dataclass(frozen=True, slots=True)
class MemorySetup:
    """One planned run, per device.

    Attributes:
        train: training step (forward, backward, optimizer step) instead of inference.
        batch: sequences (or samples) per device per micro-batch; ``None``: the first
            dimension of the inputs given (1 for configs).
        seq: tokens per sequence for token models (the KV cache's context for inference);
            ``None``: the model's default input.
        precision: a key of :data:`PRECISIONS`; ``None``: stored dtype for inference, fp32
            for training.
        optimizer: a name in :data:`OPTIMIZERS` (training only).
        checkpointing: activation checkpointing, a name in :data:`CHECKPOINTING`.
        shard: optimizer/gradient/parameter sharding, a name in :data:`SHARDING`.
        dp: data-parallel world size (the devices the sharding spreads over).
        tp: Megatron tensor-parallel size.
        pp: pipeline stages.
        sequence_parallel: Megatron sequence parallelism with ``tp`` (Korthikanti et al. 2022).
        offload: what moves to host memory, a name in :data:`OFFLOAD`.
        device: the device's memory in bytes, or ``None`` for no fit check.
        device_name: the name it was given by.
        attention: how attention keeps its inputs, a name in :data:`ATTENTION`.
    """

    train: bool = False
    batch: int | None = None
    seq: int | None = None
    precision: str | None = None
    optimizer: str = "adamw"
    checkpointing: str = "none"
    shard: str = "none"
    dp: int = 1
    tp: int = 1
    pp: int = 1
    sequence_parallel: bool = False
    offload: str = "none"
    device: int | None = None
    device_name: str = ""
    attention: str = "flash"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)


def _whole(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= _MAX:
        raise TargetError(f"--{name} {value!r} is not a whole number >= {least}; e.g. --{name} {max(least, 1) * 8}")
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...] | dict[str, Any]) -> str:
    if value not in choices:
        raise TargetError(f"--{name} {value!r} is not known; choose one of {', '.join(choices)}")
    return str(value)


def make_setup(
    *,
    train: bool = False,
    batch: int | None = None,
    seq: int | None = None,
    precision: str | None = None,
    optimizer: str = "adamw",
    checkpointing: str = "none",
    shard: str = "none",
    dp: int | None = None,
    tp: int = 1,
    pp: int = 1,
    sequence_parallel: bool = False,
    offload: str = "none",
    device: str | int | None = None,
    attention: str = "flash",
) -> MemorySetup:
    """Check every option and freeze them.

    Raises:
        TargetError: an option is out of range or contradicts another; the message names it
            and the fix.

    Example:
        >>> make_setup(train=True, shard="zero3", dp=64).dp
        64
        >>> make_setup(shard="zero3")
        Traceback (most recent call last):
        ...
        paramscope.core.errors.TargetError: --shard zero3 spreads states over data-parallel devices: give their number with --dp N (e.g. --dp 8)
    """
    from paramscope.planner.devices import device_bytes

    if batch is not None:
        _whole("batch", batch, 1)
    if seq is not None:
        _whole("seq", seq, 1)
    if precision is not None:
        _choice("precision", precision, PRECISIONS)
    _choice("optimizer", optimizer, OPTIMIZERS)
    _choice("checkpointing", checkpointing, CHECKPOINTING)
    _choice("shard", shard, SHARDING)
    _choice("offload", offload, OFFLOAD)
    _choice("attention", attention, ATTENTION)
    if dp is not None:
        _whole("dp", dp, 1)
    _whole("tp", tp, 1)
    _whole("pp", pp, 1)
    if shard != "none" and dp is None:
        raise TargetError(
            f"--shard {shard} spreads states over data-parallel devices: give their number with --dp N (e.g. --dp 8)"
        )
    if shard != "none" and not train:
        raise TargetError(f"--shard {shard} shards training states; add --train, or drop --shard for inference")
    if offload == "params" and shard not in ("zero3", "fsdp"):
        raise TargetError("--offload params needs sharded parameters: add --shard zero3 or --shard fsdp with --dp N")
    if offload != "none" and not train:
        raise TargetError(f"--offload {offload} moves training states to the host; add --train")
    if sequence_parallel and tp == 1:
        raise TargetError("sequence parallelism splits activations over tensor-parallel devices: give --tp T > 1")
    size, name = device_bytes(device) if device is not None else (None, "")
    return MemorySetup(
        train=bool(train), batch=batch, seq=seq, precision=precision, optimizer=optimizer,
        checkpointing=checkpointing, shard=shard, dp=dp or 1, tp=tp, pp=pp,
        sequence_parallel=bool(sequence_parallel), offload=offload, device=size,
        device_name=name, attention=attention,
    )
