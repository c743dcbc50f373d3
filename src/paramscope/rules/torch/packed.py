"""Packed weights of ``torch.ao`` quantized modules, unpacked through the modules' own API.

A quantized module (``torch.ao.nn.quantized.Linear``/``Conv2d``/``Embedding``, the dynamic
``Linear``/``LSTM``/``GRU`` and cells) keeps its int8 weight inside a packed object of the
quantized kernel library, not as a ``Parameter`` or a buffer: ``model.parameters()`` lists
nothing, and a reader that only looks there finds 0 tensors. The module hands its tensors out
itself: ``weight()``/``bias()``, ``_weight_bias()``, or ``_packed_params``. Each weight is a
quantized tensor (``qint8``: 1 byte per element) with its quantization parameters:

- per tensor: one scale (float64) and one zero point (int64), as a quantized tensor stores them;
- per channel: a scale and a zero point per output channel, with the dtypes torch gives them.

Static modules also keep the scale and zero point of their output (``scale``, ``zero_point``
in their ``state_dict``). Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Packed", "packed_tensors", "is_packed_holder"]

_QUANTIZED = "torch.ao.nn.quantized"
#: Modules that only hold a packed object for their parent (the parent lists the tensors).
_HOLDERS = frozenset({"LinearPackedParams", "EmbeddingPackedParams", "PackedParameter"})


@dataclass(frozen=True, slots=True)
class Packed:
    """One tensor unpacked from a quantized module.

    Attributes:
        name: its name on the module (``weight``, ``weight_scale``, ``weight_ih_l0``, ``scale``).
        tensor: the tensor (a copy unpacked by torch; only its shape and dtype are used).
        is_param: ``True`` for weights and biases, ``False`` for scales and zero points.
        why: one sentence on what it is.
    """

    name: str
    tensor: Any
    is_param: bool
    why: str


def _quantized(module: Any) -> bool:
    origin = type(module).__module__
    return origin.startswith(_QUANTIZED + ".") and ".reference." not in origin


def is_packed_holder(module: Any) -> bool:
    """Whether the module only holds a packed object whose tensors its parent lists."""
    return _quantized(module) and type(module).__name__ in _HOLDERS


def _unpacked(module: Any) -> list[tuple[str, Any]]:
    """(name, tensor) of the weights and biases, as the module itself unpacks them."""
    weight_bias = getattr(module, "_weight_bias", None)
    if callable(weight_bias):
        got = weight_bias()
        if isinstance(got, dict):  # dynamic RNNs: {"weight": {name: t}, "bias": {name: t}}
            return [(n, t) for group in got.values() for n, t in group.items()]
        if isinstance(got, tuple) and len(got) == 2:  # convolutions: (weight, bias)
            return [("weight", got[0]), ("bias", got[1])]
    out: list[tuple[str, Any]] = []
    for name in ("weight", "bias"):
        get = getattr(module, name, None)
        if callable(get):
            out.append((name, get()))
    return out


def _qparams(name: str, t: Any) -> list[Packed]:
    """The scale and zero point of a quantized tensor, per tensor or per channel."""
    import torch

    scheme = t.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return [
            Packed(f"{name}_scale", torch.empty((), dtype=torch.float64), False,
                   f"The scale of the quantized {name}: real value = scale x (stored - zero point)."),
            Packed(f"{name}_zero_point", torch.empty((), dtype=torch.int64), False,
                   f"The zero point of the quantized {name}."),
        ]  # fmt: skip
    axis = t.q_per_channel_axis()
    return [
        Packed(f"{name}_scale", t.q_per_channel_scales(), False,
               f"One scale per channel (axis {axis}) of the quantized {name}: real = scale x (stored - zero point)."),
        Packed(f"{name}_zero_point", t.q_per_channel_zero_points(), False,
               f"One zero point per channel (axis {axis}) of the quantized {name}."),
    ]  # fmt: skip


def packed_tensors(module: Any) -> list[Packed]:
    """The tensors a quantized module keeps outside ``_parameters`` and ``_buffers``.

    Returns ``[]`` for any other module.

    Example:
        >>> import torch.ao.nn.quantized.dynamic as nnqd  # doctest: +SKIP
        >>> [p.name for p in packed_tensors(nnqd.Linear(8, 4))]  # doctest: +SKIP
        ['weight', 'weight_scale', 'weight_zero_point', 'bias']
    """
    if not _quantized(module) or is_packed_holder(module):
        return []
    out: list[Packed] = []
    for name, t in _unpacked(module):
        if t is None:
            continue
        if getattr(t, "is_quantized", False):
            out.append(Packed(name, t, True, f"A packed {str(t.dtype).removeprefix('torch.')} weight of the quantized kernel: not a Parameter (model.parameters() does not list it), stored in the state_dict."))
            out.extend(_qparams(name, t))
        else:
            out.append(Packed(name, t, True, "Unpacked from the quantized kernel's packed parameters; kept in floating point."))
    own: dict[str, Any] = {}
    try:
        module._save_to_state_dict(own, "", True)
    except Exception:  # noqa: BLE001 - a module whose state cannot be listed keeps the tensors above
        own = {}
    for name in ("scale", "zero_point"):
        t = own.get(name)
        if t is not None and hasattr(t, "shape") and not any(p.name == name for p in out):
            why = f"The {name.replace('_', ' ')} of the module's quantized output."
            if ".dynamic." in type(module).__module__:
                why = f"The output {name.replace('_', ' ')} kept in the state_dict; a dynamic module's output is floating point, so it is unused."
            out.append(Packed(name, t, False, why))
    return out
