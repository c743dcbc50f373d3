"""Walk a Functional or Sequential model config, layer by layer, in dependency order.

Functional configs list layers with their ``inbound_nodes``: one node per call, each naming
its input tensors by ``keras_history = [layer, node, tensor]`` and (Keras 3) their shapes.
Layers are explained in topological order so that a shape the config does not record can be
propagated from the producer's rule. Sequential configs chain each layer to the previous one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from paramscope.core import limits
from paramscope.core.anatomy import Shape
from paramscope.core.errors import CorruptFileError, ModelError
from paramscope.rules.keras.configs import (
    Ref,
    entry_name,
    parse_shape,
    parse_shapes,
    ref_list,
    tensor_refs,
)
from paramscope.readers.keras.engine.entries import Built, Context, call_compute, explain_entry
from paramscope.rules.keras.flops import sum_compute
from paramscope.rules.keras.policy import Policy

__all__ = ["model_layers", "functional_layers", "sequential_layers", "MAX_OUTPUTS"]

#: Bound on a tensor index in ``keras_history``: outputs are enumerated up to it, so a file
#: must not choose it freely.
MAX_OUTPUTS = 4096


def model_layers(
    entry: Mapping[str, Any],
    prefix: str,
    frozen: str,
    policy: Policy,
    ctx: Context,
    in_shapes: Sequence[Shape | None] = (),
) -> Built:
    """The layers of a model entry (Functional or Sequential), paths under ``prefix``."""
    if entry.get("class_name") == "Sequential":
        return sequential_layers(entry, prefix, frozen, policy, ctx, in_shapes)
    return functional_layers(entry["config"], prefix, frozen, policy, ctx)


def _nodes(entry: Mapping[str, Any], where: str) -> list[list[tuple[Ref, Shape | None]]]:
    raw = entry.get("inbound_nodes") or []
    if not isinstance(raw, list):
        return []
    # Checked before the references are parsed: a call's references are walked several times
    # (graph, shapes, the 'Connected to' column), so their number must be one a model needs.
    limits.check(f"calls of layer {entry_name(entry)!r}", len(raw), limits.MAX_INBOUND, "MAX_INBOUND", where=where)
    out = []
    for node in raw:
        refs = list(tensor_refs(node))
        limits.check(
            f"inbound references of one call of layer {entry_name(entry)!r}", len(refs),
            limits.MAX_INBOUND, "MAX_INBOUND", where=where,
        )
        out.append(refs)
    return out


Node = tuple[str, int]


def _toposort(vertices: list[Node], deps: Mapping[Node, list[Node]], where: str) -> list[Node]:
    """Calls (layer, node) ordered so that producers come first, config order kept where free.

    Raises:
        ModelError: the calls form a cycle.
    """
    state: dict[Node, int] = {}
    out: list[Node] = []
    for start in vertices:
        if state.get(start):
            continue
        state[start] = 1
        # Each vertex keeps an iterator over its dependencies: popping the front of a list
        # would make a Concatenate of 400,000 inputs quadratic.
        stack: list[tuple[Node, Iterator[Node]]] = [(start, iter(deps[start]))]
        while stack:
            node, todo = stack[-1]
            nxt = next(todo, None)
            if nxt is None:
                state[node] = 2
                out.append(node)
                stack.pop()
                continue
            if state.get(nxt) == 1:
                names = [n[0] for n, _ in stack]
                cycle = names[names.index(nxt[0]):] + [nxt[0]]
                raise ModelError(
                    "the layer graph has a cycle: " + " -> ".join(reversed(cycle))
                    + "; a Keras model's layers must form a directed acyclic graph",
                    where=where or None,
                )
            if not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(deps[nxt])))
    return out


def functional_layers(
    config: Mapping[str, Any], prefix: str, frozen: str, policy: Policy, ctx: Context
) -> Built:
    """The layers of a Functional config, each with its calls and inbound references.

    Raises:
        CorruptFileError: no ``layers`` list, duplicate names, or a reference to a missing layer.
        ModelError: the graph has a cycle.
    """
    model_name = str(config.get("name", prefix.rstrip("/") or "model"))
    where = ", ".join(x for x in (ctx.source, f"model {prefix.rstrip('/') or model_name}") if x)
    entries_list = config.get("layers")
    if not isinstance(entries_list, list):
        raise CorruptFileError("the model config has no 'layers' list", where=where)
    limits.check("layers in one model config", len(entries_list), limits.MAX_KERAS_LAYERS, "MAX_KERAS_LAYERS", where=where)
    entries: dict[str, Mapping[str, Any]] = {}
    for entry in entries_list:
        if not isinstance(entry, Mapping):
            raise CorruptFileError("a layer entry is not an object", where=where)
        name = entry_name(entry)
        if name in entries:
            raise CorruptFileError(f"two layers are named {name!r}", where=where)
        entries[name] = entry
    nodes = {name: _nodes(e, where) for name, e in entries.items()}
    recorded: dict[Ref, Shape] = {}
    vertices: list[Node] = [(name, k) for name, calls in nodes.items() for k in range(max(1, len(calls)))]
    deps: dict[Node, list[Node]] = {v: [] for v in vertices}
    for name, calls in nodes.items():
        for i, node in enumerate(calls):
            for ref, shape in node:
                if ref[0] not in entries:
                    raise CorruptFileError(
                        f"layer {name!r} (call {i}) takes tensor {ref[0]}[{ref[1]}][{ref[2]}] from "
                        f"layer {ref[0]!r}, which is not in the model's layers",
                        where=where,
                    )
                if not 0 <= ref[2] < MAX_OUTPUTS:
                    raise CorruptFileError(
                        f"layer {name!r} (call {i}) takes output {ref[2]} of layer {ref[0]!r}; a layer "
                        f"has at most {MAX_OUTPUTS:,} outputs",
                        where=where,
                    )
                if (ref[0], ref[1]) not in deps:
                    raise CorruptFileError(
                        f"layer {name!r} (call {i}) takes tensor {ref[0]}[{ref[1]}][{ref[2]}], but "
                        f"layer {ref[0]!r} is called only {max(1, len(nodes[ref[0]]))} time(s)",
                        where=where,
                    )
                deps[(name, i)].append((ref[0], ref[1]))
                if shape is not None:
                    recorded.setdefault(ref, shape)
    for key in ("input_layers", "output_layers"):
        for ref in ref_list(config.get(key)):
            if ref[0] not in entries:
                raise CorruptFileError(f"{key} names layer {ref[0]!r}, which is not in the model's layers",
                                       where=where)
    n_recorded: dict[str, int] = {}
    for ref in recorded:
        n_recorded[ref[0]] = max(n_recorded.get(ref[0], 0), ref[2] + 1)
    computed: dict[Ref, Shape | None] = {}
    layers = {}
    first_outs: dict[str, tuple[Shape | None, ...]] = {}
    computes: dict[str, list[Any]] = {}
    for name, k in _toposort(vertices, deps, where):
        calls = nodes[name]
        if k == 0:
            first = calls[0] if calls else []
            in_shapes = tuple(shape or computed.get(ref) or recorded.get(ref) for ref, shape in first)
            layer, outs = explain_entry(entries[name], in_shapes, prefix, frozen, policy, ctx)
            n_out = max(len(outs), n_recorded.get(name, 0))
            first_outs[name] = tuple(
                recorded.get((name, 0, t)) or (outs[t] if t < len(outs) else None) for t in range(n_out)
            )
            if first_outs[name] and all(s is not None for s in first_outs[name]):
                layer = layer.with_(output_shapes=first_outs[name])
            inbound = tuple(f"{r[0]}[{r[1]}][{r[2]}]" for node in calls for r, _ in node)
            layers[name] = layer.with_(inbound=inbound, calls=max(1, len(calls)))
            computes[name] = [layers[name].compute]
        else:
            node_in = tuple(shape or computed.get(ref) or recorded.get(ref) for ref, shape in calls[k])
            node_out = tuple(recorded.get((name, k, t)) or s0 for t, s0 in enumerate(first_outs[name]))
            computes[name].append(call_compute(entries[name], layers[name], node_in, node_out))
        # Later calls of a shared layer: the recorded shape, else the first call's.
        for t, shape0 in enumerate(first_outs[name]):
            computed[(name, k, t)] = recorded.get((name, k, t)) or shape0
    for name, parts in computes.items():
        if len(parts) > 1:
            layers[name] = layers[name].with_(compute=sum_compute(parts))
    inputs = tuple(computed.get(r) for r in ref_list(config.get("input_layers")))
    outputs = tuple(computed.get(r) for r in ref_list(config.get("output_layers")))
    return Built(tuple(layers[n] for n in entries), inputs, outputs)


def sequential_layers(
    entry: Mapping[str, Any],
    prefix: str,
    frozen: str,
    policy: Policy,
    ctx: Context,
    in_shapes: Sequence[Shape | None] = (),
) -> Built:
    """The layers of a Sequential config (Keras 3 lists no InputLayer row for them).

    The input shape comes from a leading InputLayer entry, ``build_input_shape``, the model's
    ``build_config``, or the first layer's own ``build_config``, in that order.
    """
    config = entry["config"]
    where = ", ".join(x for x in (ctx.source, f"model {prefix.rstrip('/') or entry_name(entry)}") if x)
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise CorruptFileError("the Sequential config has no 'layers' list", where=where)
    shape: Shape | None = None
    if entries and isinstance(entries[0], Mapping) and entries[0].get("class_name") == "InputLayer":
        cfg = entries[0].get("config") or {}
        shape = parse_shape(cfg.get("batch_shape", cfg.get("batch_input_shape")), where=where)
        entries = entries[1:]
    if shape is None:
        shape = parse_shape(config.get("build_input_shape"), where=where)
    if shape is None:
        build = entry.get("build_config")
        if isinstance(build, Mapping):
            shapes = parse_shapes(build.get("input_shape"), where=where)
            shape = shapes[0] if shapes else None
    if shape is None and entries and isinstance(entries[0], Mapping):
        first_cfg = entries[0].get("config") or {}
        if isinstance(first_cfg, Mapping):
            shape = parse_shape(first_cfg.get("batch_shape", first_cfg.get("batch_input_shape")), where=where)
    if shape is None and in_shapes:
        shape = in_shapes[0]
    first_shape = shape
    layers = []
    seen: set[str] = set()
    for e in entries:
        if isinstance(e, Mapping):
            name = entry_name(e)
            if name in seen:
                raise CorruptFileError(f"two layers are named {name!r}", where=where)
            seen.add(name)
        layer, outs = explain_entry(e, (shape,), prefix, frozen, policy, ctx)
        layers.append(layer)
        shape = outs[0] if outs else None
    return Built(tuple(layers), (first_shape,), (shape,))
