"""Functional and Sequential models of the builder, with ``summary()``, ``explain()`` and exports."""

from __future__ import annotations

import json
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import ModelError
from paramscope.keras._graph import KerasTensor, Layer, Node, as_list, flatten_tensors
from paramscope.keras.layers import InputLayer

__all__ = ["Input", "Model", "Functional", "Sequential"]


def Input(  # noqa: N802 - Keras's name
    shape: Any = None,
    batch_size: int | None = None,
    dtype: str | None = None,
    sparse: bool = False,
    batch_shape: Any = None,
    name: str | None = None,
    **legacy: Any,
) -> KerasTensor:
    """A symbolic input, like ``keras.Input(shape=(4096,))`` or ``Input(batch_shape=(None, 4096))``.

    Example:
        >>> x = Input(shape=(8,))
        >>> x.shape
        (None, 8)
    """
    layer = InputLayer(
        shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name,
        sparse=sparse, **legacy,
    )
    return layer.output


class _ModelBase(Layer):
    """What Functional and Sequential share: reading, printing and exporting."""

    def serialize(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self, **kwargs: Any) -> str:
        """The model as ``keras.Model.to_json()`` would write it."""
        return json.dumps(self.serialize(), **kwargs)

    def to_config(self) -> dict[str, Any]:
        """The model's config: what ``keras.Model.from_config`` (or ``Sequential.from_config``) takes."""
        return dict(self.serialize()["config"])

    get_config = to_config

    def to_keras(self) -> Any:
        """The real Keras model with this architecture (needs keras; weights freshly initialised)."""
        try:
            import keras
        except ImportError:
            from paramscope.core.errors import MissingDependencyError

            raise MissingDependencyError("keras", "keras", "Building the real Keras model") from None
        return keras.models.model_from_json(self.to_json())

    def __paramscope_anatomy__(self, **options: Any) -> Anatomy:
        from paramscope.readers import unused_inputs
        from paramscope.readers.keras.engine.graph import anatomy_from_config

        error = unused_inputs("keras.builder", [k for k in ("input_size", "inputs") if options.get(k) is not None])
        if error is not None:
            raise error

        return anatomy_from_config(self.serialize(), source="paramscope.keras builder")

    def count_params(self) -> int:
        """Total parameters, as Keras counts them (moving statistics included)."""
        from paramscope.analysis.totals import totals

        return totals(self.__paramscope_anatomy__()).params

    def summary(self, style: str = "paramscope", **kwargs: Any) -> None:
        """Print the summary (``style="keras2"`` for the classic Keras layout)."""
        from paramscope.api import summary

        print(summary(self.__paramscope_anatomy__(), style=style, **kwargs).text, end="")

    def explain(self, layer: str | None = None, **kwargs: Any) -> None:
        """Print every tensor of one layer (or all): shape, count, formula, role and why."""
        from paramscope.api import explain

        print(explain(self.__paramscope_anatomy__(), layer=layer, **kwargs).text, end="")


class Functional(_ModelBase):
    """A model defined by its inputs and outputs: ``Model(inputs=x, outputs=y)``.

    The Keras 1/2 keywords ``input=`` and ``output=`` are accepted too.
    """

    def __init__(
        self,
        inputs: Any = None,
        outputs: Any = None,
        name: str | None = None,
        trainable: bool = True,
        *,
        input: Any = None,  # noqa: A002 - Keras 1/2 keyword
        output: Any = None,
        **kwargs: Any,
    ) -> None:
        inputs = inputs if inputs is not None else input
        outputs = outputs if outputs is not None else output
        if inputs is None or outputs is None:
            raise TypeError("Model() needs inputs=... and outputs=... (or Keras 1/2's input=, output=)")
        self.inputs = flatten_tensors(inputs)
        self.outputs = flatten_tensors(outputs)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        config: dict[str, Any] = {"name": name, "trainable": trainable}
        super().__init__("Functional", config, module="keras")
        self.layers, self._node_map = self._collect()
        # Each layer's calls used by this model, in order (one pass, not one scan per layer).
        self._calls: dict[int, list[int]] = {}
        for lid, idx in sorted(self._node_map):
            self._calls.setdefault(lid, []).append(idx)

    def _collect(self) -> tuple[list[Layer], dict[tuple[int, int], int]]:
        # Layers are ordered the way Keras orders them: by depth (distance from the outputs,
        # deepest first), ties broken by the order a depth-first walk from the outputs meets them.
        NodeKey = tuple[int, int]
        layer_of: dict[int, Layer] = {}
        first_seen: dict[int, int] = {}
        parents: dict[NodeKey, list[NodeKey]] = {}
        post_order: list[NodeKey] = []
        done: set[NodeKey] = set()
        inputs = {id(t) for t in self.inputs}

        # An explicit stack, not recursion: a chain of thousands of layers is a valid model and
        # must not hit Python's recursion limit. ``on_path`` holds the nodes being expanded, so a
        # node met again while still on it closes a cycle.
        on_path: set[NodeKey] = set()
        for out in self.outputs:
            stack: list[tuple[KerasTensor, bool]] = [(out, False)]
            while stack:
                t, expanded = stack.pop()
                key = (id(t.layer), t.node_index)
                if expanded:
                    on_path.discard(key)
                    if key not in done:
                        done.add(key)
                        post_order.append(key)
                    continue
                if key in done:
                    continue
                if key in on_path:
                    raise ModelError(f"the graph has a cycle through layer {t.layer.name}")
                on_path.add(key)
                layer_of[id(t.layer)] = t.layer
                first_seen.setdefault(id(t.layer), len(first_seen))
                node = t.layer.nodes[t.node_index]
                ins = [] if id(t) in inputs else flatten_tensors(node.args) + flatten_tensors(node.kwargs)
                parents[key] = [(id(p.layer), p.node_index) for p in ins]
                stack.append((t, True))
                # Reversed, so that parents are visited in order, as the recursive walk (and Keras) does.
                stack.extend((p, False) for p in reversed(ins))

        node_depth: dict[NodeKey, int] = {}
        layer_depth: dict[int, int] = {}
        for key in reversed(post_order):
            depth = max(node_depth.setdefault(key, 0), layer_depth.get(key[0], 0))
            layer_depth[key[0]] = node_depth[key] = depth
            for parent in parents[key]:
                node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
        for t in self.inputs:
            if not isinstance(t.layer, InputLayer):
                raise ModelError(f"model input {t.layer.name} is not the output of keras.Input")
            if id(t.layer) not in layer_depth:  # an input the outputs do not use: Keras keeps it
                layer_of[id(t.layer)] = t.layer
                layer_depth[id(t.layer)] = 0
                first_seen[id(t.layer)] = -1
                post_order.append((id(t.layer), t.node_index))
        order = sorted(layer_of.values(), key=lambda x: (-layer_depth[id(x)], first_seen[id(x)]))
        calls: dict[int, list[int]] = {}
        for lid, idx in post_order:
            calls.setdefault(lid, []).append(idx)
        node_map: dict[tuple[int, int], int] = {}
        for layer in order:
            for local, idx in enumerate(sorted(calls.get(id(layer), ()))):
                node_map[(id(layer), idx)] = local
        return order, node_map

    def _tensor(self, t: KerasTensor) -> dict[str, Any]:
        d = t.to_config()
        d["config"]["keras_history"][1] = self._node_map.get((id(t.layer), t.node_index), t.node_index)
        return d

    def _ser(self, x: Any) -> Any:
        if isinstance(x, KerasTensor):
            return self._tensor(x)
        if isinstance(x, (list, tuple)):
            return [self._ser(i) for i in x]
        if isinstance(x, dict):
            return {k: self._ser(v) for k, v in x.items()}
        return x

    def _history(self, t: KerasTensor) -> list[Any]:
        return [t.layer.name, self._node_map[(id(t.layer), t.node_index)], t.tensor_index]

    def _layer_entry(self, layer: Layer) -> dict[str, Any]:
        d = layer.serialize()
        d["name"] = layer.name
        nodes = [layer.nodes[i] for i in self._calls.get(id(layer), ())]
        d["inbound_nodes"] = [] if isinstance(layer, InputLayer) else [self._node(n) for n in nodes]
        return d

    def _node(self, node: Node) -> dict[str, Any]:
        return {"args": self._ser(list(node.args)), "kwargs": self._ser(node.kwargs)}

    def serialize(self) -> dict[str, Any]:
        """The model as Keras serialises it: ``{"module", "class_name", "config", ...}``."""
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "layers": [self._layer_entry(x) for x in self.layers],
            "input_layers": _structure(self._inputs_struct, self._history),
            "output_layers": _structure(self._outputs_struct, self._history),
        }
        return {
            "module": "keras.src.models.functional",
            "class_name": "Functional",
            "config": config,
            "registered_name": "Functional",
        }

    def _output_shapes(self, input_shapes: Any) -> Any:
        return tuple(t.shape for t in self.outputs)


def _structure(x: Any, fn: Any) -> Any:
    # Keras keeps the structure the user gave: one tensor -> [name, node, index], a list -> a list.
    if isinstance(x, KerasTensor):
        return fn(x)
    if isinstance(x, dict):
        return {k: _structure(v, fn) for k, v in x.items()}
    return [_structure(t, fn) for t in as_list(x)]


class Sequential(_ModelBase):
    """A stack of layers, each called on the output of the one before.

    Example:
        >>> from paramscope.keras import layers
        >>> m = Sequential([Input(shape=(4,)), layers.Dense(2)])
        >>> m.count_params()
        10
    """

    def __init__(self, layers: Any = None, name: str | None = None, trainable: bool = True) -> None:
        super().__init__("Sequential", {"name": name, "trainable": trainable}, module="keras")
        self.layers: list[Layer] = []
        self._input: KerasTensor | None = None
        self._output: KerasTensor | None = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Any) -> None:
        """Append a layer (or ``keras.Input(...)`` as the first item)."""
        if isinstance(layer, KerasTensor):
            if self.layers:
                raise ModelError("keras.Input can only be the first item of a Sequential model")
            self._input = self._output = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add() takes a layer, not {type(layer).__name__}")
        if self._input is None and not self.layers:
            legacy = {k: layer.config.pop(k) for k in ("input_shape", "batch_input_shape", "input_dim") if k in layer.config}
            if "input_dim" in legacy:
                legacy["input_shape"] = (legacy.pop("input_dim"),)
            if legacy:
                self._input = self._output = Input(**legacy)
        self.layers.append(layer)
        if self._output is not None:
            out = layer(self._output)
            self._output = out if isinstance(out, KerasTensor) else out[0]

    def serialize(self) -> dict[str, Any]:
        """The model as Keras serialises it."""
        entries = []
        if self._input is not None:
            entries.append(self._input.layer.serialize())
        entries.extend(x.serialize() for x in self.layers)
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable, "layers": entries}
        if self._input is not None and self._input.shape is not None:
            config["build_input_shape"] = list(self._input.shape)
        return {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None}

    def _output_shapes(self, input_shapes: Any) -> Any:
        return (None if self._output is None else self._output.shape,)


Model = Functional
