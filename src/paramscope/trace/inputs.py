"""Example inputs for a PyTorch forward pass, from sizes, spec strings or tensors.

A spec string names one input: ``"input_ids=int64[1,128]"`` (a keyword argument) or
``"float32[1,3,224,224]"`` (the next positional argument). Parsing does not import torch;
making the tensors does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paramscope.core.dtypes import canonical_dtype, lookup_dtype
from paramscope.core.errors import TargetError

if TYPE_CHECKING:
    import torch

__all__ = ["InputSpec", "parse_input_spec", "input_specs", "build_inputs", "float_dtype", "model_device"]

_SPEC = re.compile(
    r"^\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*)?(?P<dtype>[A-Za-z_][A-Za-z0-9_]*)\s*"
    r"\[(?P<dims>[^\]]*)\]\s*$"
)
_FORM = "name=dtype[d0,d1,...] or dtype[d0,d1,...], e.g. input_ids=int64[1,128] or float32[1,3,224,224]"
#: Dimensions above this are refused: they are typing mistakes, not models.
_MAX_DIM = 1 << 40


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One example input to build.

    Attributes:
        name: keyword argument name, or ``None`` for a positional argument.
        dtype: canonical dtype name (``"int64"``); ``""`` for the model's floating dtype.
        shape: the shape.
    """

    name: str | None
    dtype: str
    shape: tuple[int, ...]

    def describe(self, float_dtype: str = "float") -> str:
        """The spec written back as a string (``float_dtype`` names the model's floating dtype)."""
        body = f"{self.dtype or float_dtype}[{','.join(map(str, self.shape))}]"
        return f"{self.name}={body}" if self.name else body


def parse_input_spec(spec: str) -> InputSpec:
    """Parse ``"name=dtype[d0,d1]"`` or ``"dtype[d0,d1]"``.

    Raises:
        TargetError: the string does not have that form, a dimension is not a whole number,
            or the dtype is unknown; the message shows the string and the expected form.

    Example:
        >>> parse_input_spec("input_ids=int64[1, 128]")
        InputSpec(name='input_ids', dtype='int64', shape=(1, 128))
    """
    if not isinstance(spec, str):
        raise TargetError(f"input spec {spec!r} is not a string; expected {_FORM}")
    m = _SPEC.match(spec)
    if m is None:
        raise TargetError(f"cannot read input spec {spec!r}; expected {_FORM}")
    dtype = canonical_dtype(m["dtype"])
    if lookup_dtype(dtype) is None or dtype == "string":
        raise TargetError(f"unknown dtype {m['dtype']!r} in input spec {spec!r}; expected {_FORM}")
    dims_text = m["dims"].strip()
    shape: list[int] = []
    if dims_text:
        for part in dims_text.split(","):
            part = part.strip()
            if not part.isdigit() or int(part) > _MAX_DIM:
                raise TargetError(
                    f"dimension {part!r} in input spec {spec!r} is not a whole number >= 0; expected {_FORM}"
                )
            shape.append(int(part))
    return InputSpec(m["name"], dtype, tuple(shape))


def _size(size: Any, where: str) -> tuple[int, ...]:
    if not isinstance(size, Sequence) or isinstance(size, str):
        raise TargetError(f"{where} {size!r} is not a sequence of whole numbers, e.g. (1, 3, 224, 224)")
    dims = []
    for d in size:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0 or d > _MAX_DIM:
            raise TargetError(f"{where} {tuple(size)!r} has {d!r}, not a whole number >= 0; e.g. (1, 3, 224, 224)")
        dims.append(d)
    return tuple(dims)


def input_specs(input_size: Any = None, inputs: Any = None) -> list[InputSpec]:
    """The inputs described by ``input_size`` and ``inputs``, positional ones first.

    Args:
        input_size: one shape ``(1, 3, 224, 224)`` or several ``[(1, 10), (1, 20)]``; each is a
            positional input in the model's floating dtype.
        inputs: spec strings (one string or a sequence of them), see :func:`parse_input_spec`.

    Example:
        >>> [s.describe() for s in input_specs((1, 8), ["mask=bool[1,8]"])]
        ['float[1,8]', 'mask=bool[1,8]']
    """
    specs: list[InputSpec] = []
    if input_size is not None:
        if isinstance(input_size, Sequence) and input_size and all(
            isinstance(s, Sequence) and not isinstance(s, str) for s in input_size
        ):
            specs.extend(InputSpec(None, "", _size(s, "input_size")) for s in input_size)
        else:
            specs.append(InputSpec(None, "", _size(input_size, "input_size")))
    if inputs is not None:
        items = [inputs] if isinstance(inputs, str) else list(inputs)
        parsed = [parse_input_spec(s) for s in items]
        specs.extend(p for p in parsed if p.name is None)
        names = [p.name for p in parsed if p.name is not None]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise TargetError(f"input {sorted(dup)[0]!r} is given more than once; give each named input once")
        specs.extend(p for p in parsed if p.name is not None)
    return specs


def float_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter (float32 if it has none)."""
    import torch

    for t in module.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def model_device(module: torch.nn.Module) -> torch.device:
    """The device of the model's first tensor (cpu if it has none)."""
    import torch

    for t in [*module.parameters(), *module.buffers()]:
        return t.device
    return torch.device("cpu")


def _make(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, real: bool) -> torch.Tensor:
    import torch

    if not real:
        return torch.empty(shape, dtype=dtype, device=device)
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, dtype=dtype, device=device)
    return torch.zeros(shape, dtype=dtype, device=device)  # token id 0 is valid for any vocabulary


def _convert(value: Any, device: torch.device, real: bool, fake: Any = None) -> Any:
    """Example tensors on the device of the pass.

    A real pass keeps the user's values (the tensor itself, or a copy on the pass's device):
    a model whose shapes or branches depend on its inputs must see them. A pass without data
    keeps shape, dtype and strides only: under fake tensors the example becomes a fake of it
    (``FakeTensorMode.from_tensor`` copies metadata, never values), on ``meta`` an empty tensor.
    """
    import torch

    if isinstance(value, torch.Tensor):
        if real:
            return value.to(device)
        if fake is not None and value.device == device and device.type != "meta":
            return fake.from_tensor(value)
        return _make(tuple(value.shape), value.dtype, device, False)
    if isinstance(value, tuple):
        return tuple(_convert(v, device, real, fake) for v in value)
    if isinstance(value, list):
        return [_convert(v, device, real, fake) for v in value]
    if isinstance(value, dict):
        return {k: _convert(v, device, real, fake) for k, v in value.items()}
    return value


def build_inputs(
    specs: Sequence[InputSpec],
    example_inputs: Any,
    example_kwargs: Mapping[str, Any] | None,
    float_dtype: torch.dtype,
    device: torch.device,
    real: bool,
    *,
    fake: Any = None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments of the forward pass.

    Args:
        specs: inputs to make (see :func:`input_specs`).
        example_inputs: positional example tensors or values (see :func:`_convert`: a real
            pass keeps their values, a pass without data their shapes and dtypes).
        example_kwargs: keyword example tensors or values.
        float_dtype: dtype of inputs given by size alone.
        device: where to make them.
        real: make real values (random floats, zero integers) instead of empty tensors.
        fake: the ``FakeTensorMode`` of a fake pass, to turn example tensors into fakes.

    Raises:
        TargetError: a spec's dtype has no PyTorch equivalent.
    """
    import torch

    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for s in specs:
        dtype = getattr(torch, s.dtype, None) if s.dtype else float_dtype
        if not isinstance(dtype, torch.dtype):
            raise TargetError(f"input {s.describe()!r}: PyTorch has no dtype {s.dtype!r}")
        t = _make(s.shape, dtype, device, real)
        if s.name is None:
            args.append(t)
        else:
            kwargs[s.name] = t
    if example_inputs is not None:
        ex = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        args.extend(_convert(v, device, real, fake) for v in ex)
    for k, v in (example_kwargs or {}).items():
        kwargs[k] = _convert(v, device, real, fake)
    return tuple(args), kwargs
