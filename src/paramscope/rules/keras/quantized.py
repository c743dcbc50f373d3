"""Variables Keras 3 creates for quantized Dense, EinsumDense and Embedding layers.

Sources: keras/src/layers/core/dense.py, einsum_dense.py and embedding.py
(``_int8_build``, ``_int4_build``, ``_float8_build`` and ``variable_serialization_spec``,
whose order is the order a saved file holds them in). Quantized kernels are stored as int8
and are not trained; their scales are float. float8 layers keep the float kernel and add
scaling state that Keras marks trainable and overwrites through its gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import ceil
from typing import Any

from paramscope.core.anatomy import Formula, Role
from paramscope.rules.keras.policy import parse_policy
from paramscope.rules.keras.registry import Weight

__all__ = ["int4_block_size", "float8_weights", "amax_history_length", "QUANT_WHY", "SCALE_WHY"]

QUANT_WHY = "a quantized weight: Keras stores it as int8 and does not train it"
SCALE_WHY = "a quantization scale fixed when the layer was quantized; not trained"
ZERO_WHY = "the int4 zero point of each block, fixed when the layer was quantized"
GIDX_WHY = "the block index of each input row (int4 sub-channel quantization)"
FLOAT8_WHY = (
    "float8 scaling state: Keras marks it trainable but overwrites it with the value its "
    "gradient carries (overwrite_with_gradient), so it is not learned by gradient descent"
)


def int4_block_size(config: Mapping[str, Any]) -> int | None:
    """The int4 block size: from ``quantization_config`` if present, else the policy name.

    ``None`` (or ``-1``) means one scale per output channel.
    """
    qc = config.get("quantization_config")
    if isinstance(qc, Mapping) and qc.get("class_name") == "Int4QuantizationConfig":
        inner = qc.get("config")
        if isinstance(inner, Mapping) and "block_size" in inner:
            size = inner["block_size"]
            return size if isinstance(size, int) and size > 0 else None
    size = parse_policy(config.get("dtype")).block_size
    return size if size is not None and size > 0 else None


def amax_history_length(config: Mapping[str, Any]) -> int:
    """Length of the float8 amax histories (the policy's, default 1024)."""
    return parse_policy(config.get("dtype")).amax_history_length


def float8_weights(config: Mapping[str, Any]) -> tuple[Weight, ...]:
    """The six float8 scaling variables, in Keras's save order, all float32 and trainable."""
    n = amax_history_length(config)
    out = []
    for what in ("inputs", "kernel", "outputs_grad"):
        out.append(Weight(f"{what}_scale", (), Role.TRAINABLE, Formula("1", "1"), FLOAT8_WHY, "float32"))
        out.append(
            Weight(f"{what}_amax_history", (n,), Role.TRAINABLE,
                   Formula("amax_history_length", f"{n:,}"), FLOAT8_WHY, "float32")
        )
    return tuple(out)


def int4_grouped(rows: int, columns: int, block: int | None) -> tuple[tuple[int, ...], int]:
    """Scale shape and group count for int4: ``(n_groups, columns)`` or ``(columns,)``."""
    if block is None:
        return (columns,), 1
    groups = ceil(rows / block)
    return (groups, columns), groups


def packed(n: int) -> int:
    """Columns after packing two int4 values per int8: ``ceil(n / 2)``."""
    return (n + 1) // 2
