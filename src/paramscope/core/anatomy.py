"""The framework-neutral model of a network: tensors, layers and the anatomy that holds them.

Everything here is frozen, typed data with units in the names. Nothing is formatted: the
renderers turn these objects into text last. Totals are never stored; they are derived from
the tensors by :mod:`paramscope.analysis.totals`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from math import prod
from types import MappingProxyType
from typing import Any

from paramscope.core.dtypes import n_bytes as _n_bytes

__all__ = [
    "Shape",
    "Role",
    "ROLE_MEANING",
    "Formula",
    "Tensor",
    "Compute",
    "Layer",
    "TensorGroup",
    "Anatomy",
    "set_html_display",
    "set_table_export",
]

#: A tensor or activation shape; ``None`` marks a dimension that is not fixed (the batch).
Shape = tuple[int | None, ...]


class Role(str, Enum):
    """What a tensor is for, independent of how a framework files it.

    How it is *counted* is a separate fact, :attr:`Tensor.is_param`: Keras counts
    BatchNormalization's moving statistics as non-trainable parameters, PyTorch keeps the
    same numbers in buffers.
    """

    TRAINABLE = "trainable"
    FROZEN = "frozen"
    STATISTIC = "statistic"
    BUFFER = "buffer"
    UNKNOWN = "unknown"


#: One sentence per role, used by renderers and documentation.
ROLE_MEANING: Mapping[Role, str] = MappingProxyType(
    {
        Role.TRAINABLE: "learned by gradient descent",
        Role.FROZEN: "a weight that training leaves unchanged (trainable=False / requires_grad=False)",
        Role.STATISTIC: "a running statistic, updated from the data during training, not by gradient",
        Role.BUFFER: "state kept with the model that is not learned (a counter, a constant, a cache)",
        Role.UNKNOWN: "stored with the model; its purpose is not known",
    }
)


@dataclass(frozen=True, slots=True)
class Formula:
    """How a count is derived, symbolically and with the numbers filled in.

    Example:
        >>> Formula("input_dim x units", "4096 x 512")
        Formula(symbolic='input_dim x units', numeric='4096 x 512')
    """

    symbolic: str
    numeric: str


@dataclass(frozen=True, slots=True)
class Tensor:
    """One stored tensor of a layer.

    Attributes:
        name: the tensor's name inside its layer (``"kernel"``, ``"running_mean"``).
        shape: its shape; ``None`` when unknown, and any ``None`` dimension makes the count unknown.
        dtype: canonical dtype name (see :mod:`paramscope.core.dtypes`).
        role: what the tensor is for.
        is_param: whether the framework counts it as a parameter (``False`` for a buffer).
        key: identity of the storage; tensors with equal non-empty keys are one tensor,
            counted once in totals and shown as shared.
        formula: how its element count follows from the layer's config.
        why: one sentence explaining its role when that is not obvious.
        persistent: whether the model saves it (``False`` for PyTorch's non-persistent buffers,
            which live on the module but not in its ``state_dict``).
        overlap: elements it shares with tensors listed before it under other keys (a view
            partly overlapping another view of one storage); totals count ``count - overlap``.
            ``None`` when the overlap cannot be computed exactly (the totals are then incomplete).
    """

    name: str
    shape: Shape | None
    dtype: str = "float32"
    role: Role = Role.TRAINABLE
    is_param: bool = True
    key: str = ""
    formula: Formula | None = None
    why: str = ""
    persistent: bool = True
    overlap: int | None = 0

    @property
    def count(self) -> int | None:
        """Number of elements, or ``None`` when the shape is not fully known."""
        if self.shape is None or any(d is None for d in self.shape):
            return None
        return prod(d for d in self.shape if d is not None)

    @property
    def n_bytes(self) -> int | None:
        """Bytes of storage, from the element count and the dtype table."""
        return _n_bytes(self.dtype, self.count)

    @property
    def counted_as(self) -> str:
        """How the framework counts it: ``"trainable"``, ``"non_trainable"``, ``"buffer"``, or
        ``"unknown"`` for a parameter whose role the source does not say."""
        if not self.is_param:
            return "buffer"
        if self.role is Role.UNKNOWN:
            return "unknown"
        return "trainable" if self.role is Role.TRAINABLE else "non_trainable"


@dataclass(frozen=True, slots=True)
class Compute:
    """Arithmetic of one forward pass through a layer.

    The convention (documented in docs/flops.md): ``flops`` counts the matrix products and
    convolutions, one multiply-add being 2 FLOPs; ``macs`` is half of it. Attention score and
    value products are in ``attention_flops``; bias, normalisation, activation and softmax work
    is in ``elementwise_flops``, outside the headline. ``None`` means unknown, never zero, and
is the default: ``Compute()`` knows nothing. Sums go through
:func:`paramscope.core.compute.sum_compute`.

    Attributes:
        flops: matmul and convolution FLOPs, attention excluded.
        attention_flops: FLOPs of the attention matmuls (scores and weighted values).
        elementwise_flops: FLOPs of elementwise and reduction work.
        unknown_ops: operators seen that no formula covers.
    """

    flops: int | None = None
    attention_flops: int | None = None
    elementwise_flops: int | None = None
    unknown_ops: tuple[str, ...] = ()

    @property
    def macs(self) -> int | None:
        """Multiply-accumulates of the headline figure (``flops / 2``)."""
        return None if self.flops is None else self.flops // 2

    @property
    def complete(self) -> bool:
        """Whether every operator had a formula."""
        return not self.unknown_ops and None not in (
            self.flops,
            self.attention_flops,
            self.elementwise_flops,
        )


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer (or module, or group of tensors sharing a name prefix) and its sub-layers.

    Attributes:
        name: display name (``"dense_1"``, ``"q_proj"``).
        type: type name (``"Dense"``, ``"Linear"``); ``""`` when not known.
        path: unique path from the root (``"encoder/dense_1"``, ``"model.layers.0"``).
        tensors: the layer's own tensors (not its children's).
        children: nested layers, in order.
        input_shapes: shapes of the inputs of its first call, if known.
        output_shapes: shapes of the outputs of its first call, if known.
        inbound: the tensors it is called on, as ``"layer[node][tensor]"`` references.
        formula: how the layer's own parameter count is derived, e.g. ``4 x 512``.
        note: anything the reader wants the user to know (what is unknown, and why).
        known: ``False`` when no rule explains the layer: its tensors may be incomplete and
            totals that include it are marked incomplete.
        calls: how many times the layer is called in the graph (shared layers: more than 1).
        compute: FLOPs of a forward pass, when measured.
        origin: where the type comes from (``"keras.layers"``, ``"torch.nn"``, a user module).
    """

    name: str
    type: str = ""
    path: str = ""
    tensors: tuple[Tensor, ...] = ()
    children: tuple[Layer, ...] = ()
    input_shapes: tuple[Shape, ...] | None = None
    output_shapes: tuple[Shape, ...] | None = None
    inbound: tuple[str, ...] = ()
    formula: Formula | None = None
    note: str = ""
    known: bool = True
    calls: int = 1
    compute: Compute | None = None
    origin: str = ""

    def walk(self) -> Iterator[Layer]:
        """This layer and all its descendants, depth first, parents before children."""
        # An explicit stack rather than nested generators: each layer is yielded in constant
        # time, however deep it sits (views and totals walk every subtree).
        stack = [self]
        while stack:
            layer = stack.pop()
            yield layer
            stack.extend(reversed(layer.children))

    def all_tensors(self) -> Iterator[Tensor]:
        """Every tensor of this layer and its descendants (shared ones as often as they occur)."""
        for layer in self.walk():
            yield from layer.tensors

    def with_(self, **changes: object) -> Layer:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class TensorGroup:
    """Tensors that travel with a model but are not part of it (optimizer state, ...)."""

    name: str
    tensors: tuple[Tensor, ...]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Anatomy:
    """A whole network: its layers, where it came from, and what is known about it.

    Attributes:
        name: the model's name.
        framework: ``"keras"``, ``"torch"``, ``"safetensors"``, ``"onnx"``, ``"gguf"``, ...
        layers: top-level layers in order.
        source: where it was read from (a file path, ``"live keras model"``).
        inputs: shapes of the model inputs, when known.
        outputs: shapes of the model outputs, when known.
        extras: tensors stored with the model but not counted in it (optimizer state).
        metadata: facts read from the source (architecture, context length, ...), as strings.
        notes: sentences the user should see with the summary.
        compute: FLOPs of one forward pass of the whole model, when measured (``None``:
            the sum over top-level layers is used).
    """

    name: str
    framework: str
    layers: tuple[Layer, ...] = ()
    source: str = ""
    inputs: tuple[Shape, ...] = ()
    outputs: tuple[Shape, ...] = ()
    extras: tuple[TensorGroup, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    notes: tuple[str, ...] = ()
    compute: Compute | None = None

    def walk(self) -> Iterator[Layer]:
        """Every layer, depth first."""
        for layer in self.layers:
            yield from layer.walk()

    def find(self, name_or_path: str) -> Layer | None:
        """The layer with this path, or else the first with this name; ``None`` if absent."""
        by_name = None
        for layer in self.walk():
            if layer.path == name_or_path:
                return layer
            if by_name is None and layer.name == name_or_path:
                by_name = layer
        return by_name

    @property
    def complete(self) -> bool:
        """Whether every layer is explained and every tensor's size is known."""
        return all(
            layer.known and all(t.count is not None for t in layer.tensors) for layer in self.walk()
        )

    def with_(self, **changes: object) -> Anatomy:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def _repr_html_(self) -> str | None:
        """A notebook shows an anatomy as its summary (see :func:`set_html_display`)."""
        return _HTML_DISPLAY[0](self) if _HTML_DISPLAY else None

    def to_pandas(self) -> Any:
        """The summary's rows as a ``pandas.DataFrame`` (needs pandas), one row per layer.

        Columns: path, name, type, depth, repeat, output_shape, params, trainable,
        non_trainable, buffers, bytes, dtypes, flops, macs, formula, tied_to, ... (see
        :data:`paramscope.render.records.COLUMNS`); unknown counts are missing values.
        """
        if not _TABLE_EXPORT:
            raise RuntimeError("import paramscope to register the table export")
        return _TABLE_EXPORT[0](self)


# How an anatomy shows itself in a notebook. The renderers live above core and core imports
# none of them, so the API registers the function when paramscope is imported.
_HTML_DISPLAY: list[Callable[[Anatomy], str]] = []


def set_html_display(show: Callable[[Anatomy], str]) -> None:
    """Register how an :class:`Anatomy` renders itself as HTML in a notebook."""
    _HTML_DISPLAY[:] = [show]


# Likewise for Anatomy.to_pandas: the records are made above core.
_TABLE_EXPORT: list[Callable[[Anatomy], Any]] = []


def set_table_export(export: Callable[[Anatomy], Any]) -> None:
    """Register how an :class:`Anatomy` turns into a table (a pandas DataFrame)."""
    _TABLE_EXPORT[:] = [export]
