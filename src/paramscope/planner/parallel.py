"""Megatron tensor and sequence parallelism: activation memory per layer, and the checks.

Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
section 4 and Table 2, count the bytes one transformer layer keeps for backward, with 16-bit
activations and 1-byte dropout masks, for sequence ``s``, micro-batch ``b``, hidden ``h``,
``a`` heads and tensor-parallel size ``t``:

    no parallelism                      s b h (34 + 5 a s / h)
    tensor parallel                     s b h (10 + 24 / t + 5 a s / (h t))
    tensor + sequence parallel          s b h / t (34 + 5 a s / h)
    tensor parallel + selective recompute    s b h (10 + 24 / t)
    tensor + sequence parallel + selective   s b h 34 / t
    full recompute                      2 s b h   (the layer's input only)

The ``5 a s / h`` term is the attention scores, softmax output and its dropout mask: what
flash attention never stores. paramscope measures a layer's activations on one device and
scales them by the ratio of these formulas, so its own measurement (which includes what the
formulas leave out, such as the logits) is split the way Megatron splits a layer.
"""

from __future__ import annotations

from paramscope.core.errors import TargetError

__all__ = ["layer_activation_bytes", "tp_activation_factor", "check_tensor_parallel"]


def layer_activation_bytes(
    s: int, b: int, h: int, a: int, *, t: int = 1, sp: bool = False, recompute: str = "none"
) -> float:
    """Bytes of activations one transformer layer keeps (Korthikanti et al. 2022, Table 2).

    Example:
        >>> s, b, h, a = 2048, 1, 12288, 96  # GPT-3 175B: 5as/h = 80 (section 4.2)
        >>> layer_activation_bytes(s, b, h, a) / (s * b * h)
        114.0
        >>> layer_activation_bytes(s, b, h, a, t=8, sp=True, recompute="selective") / (s * b * h)
        4.25
    """
    sbh = s * b * h
    if recompute == "full":
        return 2 * sbh / (t if sp else 1)
    score = 0.0 if recompute == "selective" else 5 * a * s / h
    if sp:
        return sbh / t * (34 + score)
    return sbh * (10 + 24 / t + score / t)


def tp_activation_factor(t: int, sp: bool, attention: str, a: int | None, s: int | None, h: int | None) -> float:
    """What share of one device's measured layer activations each tensor-parallel device keeps.

    With flash attention the score term is absent (nothing L x S is stored); with the math
    path it is kept, split over the devices with the heads.

    Example:
        >>> tp_activation_factor(8, False, "flash", None, None, None)  # (10 + 24/8) / 34
        0.38235294117647056
    """
    if t == 1:
        return 1.0
    if sp:
        return 1.0 / t
    if attention == "math" and a and s and h:
        score = 5 * a * s / h
        return (10 + 24 / t + score / t) / (34 + score)
    return (10 + 24 / t) / 34


def check_tensor_parallel(t: int, heads: int | None, kv_heads: int | None) -> None:
    """Refuse a tensor-parallel size that does not split the heads evenly.

    Raises:
        TargetError: ``heads`` is not a multiple of ``t``, or ``kv_heads`` is larger than ``t``
            and not a multiple of it.

    Example:
        >>> check_tensor_parallel(3, 32, 8)
        Traceback (most recent call last):
        ...
        paramscope.core.errors.TargetError: --tp 3 does not divide the model's 32 attention heads; choose a divisor of 32 (1, 2, 4, 8, 16, 32)
    """
    if t == 1 or heads is None:
        return
    if heads % t:
        divisors = ", ".join(str(d) for d in range(1, heads + 1) if heads % d == 0)
        raise TargetError(
            f"--tp {t} does not divide the model's {heads} attention heads; choose a divisor of {heads} ({divisors})"
        )
    if kv_heads is not None and kv_heads > t and kv_heads % t:
        raise TargetError(f"--tp {t} does not divide the model's {kv_heads} key/value heads; choose a divisor of {kv_heads}")
