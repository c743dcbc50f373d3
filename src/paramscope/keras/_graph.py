"""Symbolic tensors, layers and the calls between them: a functional graph built without Keras.

Calling a layer on a symbolic tensor records a node, as Keras does, and computes the output
shapes at once from the layer's rule, so that a shape error shows up on the line that causes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paramscope.core.anatomy import Shape
from paramscope.core.errors import ModelError
from paramscope.keras._naming import to_snake_case, unique_name
from paramscope.rules.keras import RuleInput, keras_rule

__all__ = ["KerasTensor", "Node", "Layer"]

# Layers whose call takes query, value and key as separate tensors.
_ATTENTION_CALLS = frozenset({"MultiHeadAttention", "GroupedQueryAttention"})


@dataclass(frozen=True, eq=False)
class KerasTensor:
    """A symbolic tensor: the ``tensor_index``-th output of a layer's ``node_index``-th call."""

    layer: Layer
    node_index: int
    tensor_index: int
    shape: Shape | None
    dtype: str = "float32"

    def history(self) -> list[Any]:
        """``[layer_name, node_index, tensor_index]`` as Keras configs store it."""
        return [self.layer.name, self.node_index, self.tensor_index]

    def to_config(self) -> dict[str, Any]:
        """The ``__keras_tensor__`` entry of a Keras 3 config."""
        return {
            "class_name": "__keras_tensor__",
            "config": {
                "shape": None if self.shape is None else list(self.shape),
                "dtype": self.dtype,
                "keras_history": self.history(),
            },
        }

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, name={self.layer.name}>"


@dataclass
class Node:
    """One call of a layer: the tensors it took (nested as passed) and the ones it made."""

    args: Any
    kwargs: dict[str, Any]
    outputs: tuple[KerasTensor, ...]


def _flatten(x: Any) -> list[KerasTensor]:
    if isinstance(x, KerasTensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _flatten(item)]
    if isinstance(x, dict):
        return [t for item in x.values() for t in _flatten(item)]
    return []


def _serialize(x: Any) -> Any:
    if isinstance(x, KerasTensor):
        return x.to_config()
    if isinstance(x, (list, tuple)):
        return [_serialize(i) for i in x]
    if isinstance(x, dict):
        return {k: _serialize(v) for k, v in x.items()}
    return x


class Layer:
    """A layer of the builder: a Keras class name and its constructor arguments.

    Args:
        class_name: the Keras class it stands for (``"Dense"``).
        config: its constructor arguments, as ``get_config()`` would list them.
        module: the Keras module that defines it.
    """

    def __init__(self, class_name: str, config: dict[str, Any], module: str = "keras.layers") -> None:
        self.class_name = class_name
        self.module = module
        config = dict(config)
        name = config.get("name") or unique_name(to_snake_case(class_name))
        config["name"] = name
        self.config = config
        self.nodes: list[Node] = []
        self.input_shapes: tuple[Shape, ...] | None = None
        self._build_shapes: dict[str, list[int | None]] = {}

    @property
    def name(self) -> str:
        """The layer's name."""
        return str(self.config["name"])

    @property
    def trainable(self) -> bool:
        """Whether the layer's weights are trained (``trainable=False`` freezes them)."""
        return bool(self.config.get("trainable", True))

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self.config["trainable"] = bool(value)

    def _output_shapes(self, input_shapes: tuple[Shape | None, ...]) -> tuple[Shape | None, ...]:
        rule = keras_rule(self.class_name)
        if rule is None or any(s is None for s in input_shapes):
            return (None,)
        known = tuple(s for s in input_shapes if s is not None)
        try:
            out = rule(RuleInput(self.class_name, self.config, known))
        except ModelError as e:
            raise ModelError(f"{self.name} ({self.class_name}): {e.message}") from None
        except (KeyError, ValueError, TypeError, IndexError, ZeroDivisionError) as e:
            raise ModelError(
                f"{self.name} ({self.class_name}) cannot be called on inputs of shape "
                f"{', '.join(str(s) for s in known)}: {e}"
            ) from None
        return out.output_shapes or (None,)

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the layer on symbolic tensors; returns its output tensor(s)."""
        tensors = _flatten(inputs)
        if not tensors:
            raise ModelError(
                f"{self.name} ({self.class_name}) was called on {type(inputs).__name__}, "
                "not on the output of keras.Input(...) or another layer"
            )
        # Tensors may also come as further positional or keyword arguments (attention's value).
        tensors += _flatten(list(args)) + _flatten(kwargs)
        shapes = tuple(t.shape for t in tensors)
        if self.input_shapes is None and all(s is not None for s in shapes):
            self.input_shapes = tuple(s for s in shapes if s is not None)
            if self.class_name in _ATTENTION_CALLS:
                # build(query_shape, value_shape, key_shape): Keras records each by name.
                named = [inputs, *args] + [kwargs[k] for k in ("value", "key") if k in kwargs]
                self._build_shapes = {
                    f"{arg}_shape": list(t.shape)
                    for arg, t in zip(("query", "value", "key"), named)
                    if isinstance(t, KerasTensor) and t.shape is not None
                }
        out_shapes = self._output_shapes(shapes)
        index = len(self.nodes)
        outputs = tuple(KerasTensor(self, index, i, s) for i, s in enumerate(out_shapes))
        self.nodes.append(Node((inputs, *args), dict(kwargs), outputs))
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def node_config(self, node: Node) -> dict[str, Any]:
        """One entry of ``inbound_nodes``."""
        return {"args": _serialize(list(node.args)), "kwargs": _serialize(node.kwargs)}

    def get_config(self) -> dict[str, Any]:
        """The layer's config dict."""
        return dict(self.config)

    def serialize(self) -> dict[str, Any]:
        """``{"module", "class_name", "config", "registered_name"}`` as Keras serialises a layer."""
        d: dict[str, Any] = {
            "module": self.module,
            "class_name": self.class_name,
            "config": self.get_config(),
            "registered_name": None,
        }
        if self._build_shapes:
            d["build_config"] = {"shapes_dict": dict(self._build_shapes)}
        elif self.input_shapes is not None:
            shapes = [list(s) for s in self.input_shapes]
            d["build_config"] = {"input_shape": shapes[0] if len(shapes) == 1 else shapes}
        return d

    def __repr__(self) -> str:
        return f"<{self.class_name} name={self.name}>"


def flatten_tensors(x: Any) -> list[KerasTensor]:
    """All symbolic tensors in a nested structure, in order."""
    return _flatten(x)


def as_list(x: Any) -> list[Any]:
    """``x`` as a list (a single item becomes a one-item list)."""
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def shapes_of(xs: Sequence[KerasTensor]) -> list[Shape | None]:
    """The shapes of some symbolic tensors."""
    return [x.shape for x in xs]
