"""LoRA in Keras 3 layers (``lora_rank`` in the config of Dense, EinsumDense, Embedding, Conv).

Source: ``enable_lora`` in keras/src/layers/core/{dense,einsum_dense,embedding}.py and
convolutional/base_conv.py: two float32 factors ``a (*kernel.shape[:-1], rank)`` and
``b (rank, kernel.shape[-1])`` are trained, and the base kernel is frozen. A saved file holds
the kernel with the update merged in, not the factors.
"""

from __future__ import annotations

from math import prod

from paramscope.core.anatomy import Formula, Role, Shape
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight
from paramscope.rules.keras.shapes import fmt_int, pos_int

__all__ = ["apply_lora", "LORA_PREFIX"]

#: Weight names starting with this are LoRA factors, which Keras does not save.
LORA_PREFIX = "lora_"


def apply_lora(inp: RuleInput, out: RuleOutput, base: str, logical: Shape) -> RuleOutput:
    """``out`` with the LoRA factors added and ``base`` frozen, when the config sets ``lora_rank``.

    Args:
        inp: the rule's input (its config holds ``lora_rank``).
        out: what the rule derived without LoRA.
        base: the weight LoRA adapts (``"kernel"``, ``"embeddings"``).
        logical: that weight's unquantized shape.

    Example:
        >>> from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight
        >>> inp = RuleInput("Dense", {"units": 8, "lora_rank": 2}, ((None, 16),))
        >>> out = apply_lora(inp, RuleOutput(((None, 8),), (Weight("kernel", (16, 8)),)), "kernel", (16, 8))
        >>> [(w.name, w.shape, w.role.value) for w in out.weights]
        [('kernel', (16, 8), 'frozen'), ('lora_kernel_a', (16, 2), 'trainable'), ('lora_kernel_b', (2, 8), 'trainable')]
    """
    if not inp.config.get("lora_rank") or not out.known:
        return out
    rank = pos_int(inp.config, "lora_rank")
    if any(d is None for d in logical):
        raise ValueError(f"the {base} shape {list(logical)} is not fully known")
    dims = [d for d in logical if d is not None]
    why = f"LoRA is enabled (lora_rank={rank}): the base {base} is frozen and only its low-rank update is trained"
    weights = [
        Weight(w.name, w.shape, Role.FROZEN, w.formula, why, w.dtype, w.is_param)
        if w.name == base and w.role is Role.TRAINABLE else w
        for w in out.weights
    ]
    a_shape = (*dims[:-1], rank)
    b_shape = (rank, dims[-1])
    a_f = Formula(f"{base}.shape[:-1] x rank", " x ".join(fmt_int(d) for d in a_shape))
    b_f = Formula(f"rank x {base}.shape[-1]", " x ".join(fmt_int(d) for d in b_shape))
    name = "embeddings" if base == "embeddings" else "kernel"
    lora_why = f"low-rank update of the {base}, trained; merged into the {base} when saved"
    weights += [
        Weight(f"{LORA_PREFIX}{name}_a", a_shape, Role.TRAINABLE, a_f, lora_why, "float32"),
        Weight(f"{LORA_PREFIX}{name}_b", b_shape, Role.TRAINABLE, b_f, lora_why, "float32"),
    ]
    formula = out.formula
    if formula is not None:
        formula = Formula(f"{formula.symbolic} + rank x (in + out)",
                          f"{formula.numeric} + {rank} x ({fmt_int(prod(dims[:-1]))} + {fmt_int(dims[-1])})")
    return RuleOutput(out.output_shapes, tuple(weights), formula, out.note, out.known)
