"""How much work an ONNX model asks for, counted before any layer is built.

Model-local functions are expanded into layers at every call, so a few KB of functions that
each call the next twice, 30 deep, ask for 2**30 layers. The expansion is counted here first,
once per function (memoised over the call graph), and refused past
:data:`~paramscope.core.limits.MAX_ONNX_NODES`; a function that calls itself, which the ONNX
spec forbids, and chains deeper than :data:`~paramscope.core.limits.MAX_ONNX_FUNCTION_DEPTH`
are refused too. Every node and initializer name is checked against the name limits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from paramscope.core import limits
from paramscope.core.errors import LimitError
from paramscope.core.tree import check_name
from paramscope.readers.onnx.proto import OFunction, OGraph, ONode, OModel

__all__ = ["check_model"]

_Key = tuple[str, str]


def _all_nodes(nodes: list[ONode]) -> Iterator[ONode]:
    """``nodes`` and every node of their subgraphs (nesting is bounded by the parser)."""
    stack = [nodes]
    while stack:
        for node in stack.pop():
            yield node
            for a in node.attrs.values():
                stack.extend(g.nodes for g in a.graphs)


def _graphs(graph: OGraph) -> Iterator[OGraph]:
    """``graph`` and its subgraphs."""
    stack = [graph]
    while stack:
        g = stack.pop()
        yield g
        stack.extend(sub for node in g.nodes for a in node.attrs.values() for sub in a.graphs)


def _expanded(nodes: list[ONode], functions: Mapping[_Key, OFunction], cost: dict[_Key, tuple[int, int]],
              chain: list[_Key], where: str) -> int:  # fmt: skip
    """Layers ``nodes`` become once every function call is expanded (subgraphs included)."""
    total = 0
    for node in _all_nodes(nodes):
        total += 1
        key = (node.domain, node.op_type)
        if key in functions:
            total += _function_cost(key, functions, cost, chain, where)
        if total > limits.MAX_ONNX_NODES:
            break  # refused by the caller; no need to count on
    return total


def _function_cost(key: _Key, functions: Mapping[_Key, OFunction], cost: dict[_Key, tuple[int, int]],
                   chain: list[_Key], where: str) -> int:  # fmt: skip
    """Layers one call of ``key`` expands to; ``cost`` keeps (layers, call-chain height) per function."""
    if key in chain:
        loop = " -> ".join(f"{d}.{n}" for d, n in [*chain[chain.index(key):], key])
        raise LimitError(
            f"model-local functions call themselves ({loop}); ONNX forbids recursion, so the "
            "model cannot run and is refused",
            limit="recursion", value=len(chain), where=where,
        )
    if key not in cost:
        if len(chain) >= limits.MAX_ONNX_FUNCTION_DEPTH:  # before recursing any deeper
            raise limits.exceeded(
                f"model-local functions call each other {len(chain) + 1} deep (at {key[0]}.{key[1]})",
                len(chain) + 1, limits.MAX_ONNX_FUNCTION_DEPTH, "MAX_ONNX_FUNCTION_DEPTH", where=where,
            )
        chain.append(key)
        # Capped so that a 2**1000 expansion stays a small number while it is added up.
        n = min(_expanded(functions[key].nodes, functions, cost, chain, where), limits.MAX_ONNX_NODES + 1)
        chain.pop()
        callees = {(c.domain, c.op_type) for c in _all_nodes(functions[key].nodes)} & functions.keys()
        cost[key] = (n, 1 + max((cost[c][1] for c in callees if c in cost), default=0))
    # The height is kept with the count: a function first met near the top and later called
    # from deep down still nests its whole chain there.
    depth = len(chain) + cost[key][1]
    if depth > limits.MAX_ONNX_FUNCTION_DEPTH:
        raise limits.exceeded(
            f"model-local functions call each other {depth} deep (through {key[0]}.{key[1]})",
            depth, limits.MAX_ONNX_FUNCTION_DEPTH, "MAX_ONNX_FUNCTION_DEPTH", where=where,
        )
    return cost[key][0]


def check_model(model: OModel, where: str) -> int:
    """Check names and the expanded node count of ``model``; returns that count.

    Raises:
        LimitError: a name past the name limits, a recursive or too deeply nested function,
            or more layers than :data:`~paramscope.core.limits.MAX_ONNX_NODES` once functions
            are expanded at every call.
    """
    functions = {(f.domain, f.name): f for f in model.functions}
    bodies = [f.nodes for f in model.functions]
    for node in (n for body in [model.graph.nodes, *bodies] for n in _all_nodes(body)):
        check_name(node.name, "/", what="node name", where=where)
    for g in _graphs(model.graph):
        for t in g.initializers:
            check_name(t.name, ".", what="initializer name", where=where)
    total = _expanded(model.graph.nodes, functions, {}, [], where)
    if total > limits.MAX_ONNX_NODES:
        raise limits.exceeded(
            "model-local functions expanded at every call make more than "
            f"{limits.MAX_ONNX_NODES:,} layers",
            total, limits.MAX_ONNX_NODES, "MAX_ONNX_NODES", where=where,
        )
    return total
