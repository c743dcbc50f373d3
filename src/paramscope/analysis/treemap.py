"""What a treemap of the model shows: per module, its tensors' parameters and bytes and its FLOPs.

The tree follows the layer tree. Its leaves are the model's tensors, each storage once, drawn
where it is first owned (a tied ``lm_head.weight`` is drawn under ``wte``, and ``lm_head`` is
marked as sharing it), so the leaves add up to the model's totals exactly. FLOPs are a
module's own: its measured figure less its children's (a module's FLOPs include those of the
modules it calls), so they too add up to the model's figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from paramscope.analysis.view import ReportView
from paramscope.core.anatomy import Role
from paramscope.core.dtypes import n_bytes as dtype_bytes

__all__ = ["METRICS", "Leaf", "Node", "TreemapView", "build_treemap"]

#: The metrics a treemap can show: key -> what the area means.
METRICS = {
    "params": "parameters",
    "bytes": "bytes of parameters and buffers",
    "flops": "FLOPs of one forward pass (matmul and convolution)",
}


@dataclass(frozen=True, slots=True)
class Leaf:
    """One tensor (or a module's own FLOPs): the smallest rectangle.

    Attributes:
        name: the tensor's name, or ``""`` for a module's own FLOPs.
        params: elements if it is a parameter, else 0.
        n_bytes: bytes of storage (``None`` when unknown).
        flops: the module's own FLOPs, on the FLOPs leaf only.
        role: the tensor's role (colour), ``None`` on a FLOPs leaf.
        dtype: its dtype (colour by dtype).
    """

    name: str
    params: int | None
    n_bytes: int | None
    flops: int | None
    role: Role | None
    dtype: str


@dataclass(frozen=True, slots=True)
class Node:
    """One module: its leaves, its children (indices into :attr:`TreemapView.nodes`) and sums.

    Attributes:
        index: the layer's position in the report view's layers (for its explanation).
        shares: ``(tensor, drawn at)`` for each tensor drawn under an earlier module.
        called: ``False`` for a module that no forward pass reached (``calls == 0``).
    """

    index: int
    path: str
    label: str
    type: str
    depth: int
    leaves: tuple[Leaf, ...]
    children: tuple[int, ...]
    params: int | None
    n_bytes: int | None
    flops: int | None
    shares: tuple[tuple[str, str], ...]
    called: bool


@dataclass(frozen=True, slots=True)
class TreemapView:
    """The module tree with every figure a treemap needs; ``roots`` index into ``nodes``.

    Attributes:
        has_flops: every module's own FLOPs are known (the FLOPs metric can be drawn).
        top_flops: FLOPs of the model's forward outside every top-level module (a mask built
            by the model itself), so that the FLOPs add up to the model's figure.
    """

    nodes: tuple[Node, ...]
    roots: tuple[int, ...]
    params: int | None
    n_bytes: int | None
    flops: int | None
    has_flops: bool
    top_flops: int = 0


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def build_treemap(view: ReportView) -> TreemapView:
    """The treemap's tree, from a report view (every layer, depth first, with ``end`` indices).

    Example:
        >>> from paramscope.analysis.view import build_view
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> w = Tensor("weight", (4, 4), key="wte")
        >>> a = Anatomy("m", "torch", (Layer("wte", "Embedding", "wte", (w,)), Layer("head", "Linear", "head", (w,))))
        >>> tm = build_treemap(build_view(a))
        >>> tm.params, [n.params for n in tm.nodes], tm.nodes[1].shares
        (16, [16, 0], (('weight', 'wte/weight'),))
    """
    layers = view.layers
    first_owner: dict[str, str] = {}
    own: list[tuple[tuple[Leaf, ...], tuple[tuple[str, str], ...]]] = []
    for lv in layers:
        leaves: list[Leaf] = []
        shares: list[tuple[str, str]] = []
        owner_prefix = f"{lv.path}/" if lv.path else ""
        for tv in lv.tensors:
            key = tv.raw.key
            if key and key in first_owner:
                shares.append((tv.name, first_owner[key]))
                continue
            if key:
                first_owner[key] = owner_prefix + tv.name
            elements, size = tv.count, tv.n_bytes
            overlap = tv.raw.overlap
            if overlap is None:  # a view whose overlap with another cannot be computed
                elements = size = None
            elif overlap and elements is not None:  # drawn once, with the view listed first
                elements -= overlap
                size = dtype_bytes(tv.dtype, elements)
            leaves.append(Leaf(tv.name, elements if tv.raw.is_param else 0, size, None, tv.role, tv.dtype))
        own.append((tuple(leaves), tuple(shares)))

    def flops_of(i: int) -> int | None:
        c = layers[i].compute
        if c is None:
            return 0 if layers[i].calls == 0 else None  # a module no forward reached does no work
        return c.flops

    has_flops = bool(layers) and all(flops_of(i) is not None for i in range(len(layers)))
    nodes: list[Node | None] = [None] * len(layers)
    # Children before parents: walk the depth-first order backwards.
    for i in range(len(layers) - 1, -1, -1):
        lv = layers[i]
        children: list[int] = []
        j = i + 1
        while j < lv.end:
            children.append(j)
            j = layers[j].end
        node_leaves, node_shares = own[i]
        flops: int | None = None
        if has_flops:
            inner = sum(flops_of(c) or 0 for c in children)
            total = flops_of(i)
            own_flops = max(0, (total or 0) - inner)
            if own_flops:
                node_leaves = (*node_leaves, Leaf("", 0, 0, own_flops, None, ""))
            flops = total
        params: int | None = 0
        n_bytes: int | None = 0
        for leaf in node_leaves:
            params = _add(params, leaf.params)
            n_bytes = _add(n_bytes, leaf.n_bytes)
        for c in children:
            child = nodes[c]
            assert child is not None
            params = _add(params, child.params)
            n_bytes = _add(n_bytes, child.n_bytes)
        nodes[i] = Node(
            index=i, path=lv.path, label=lv.name, type=lv.type, depth=lv.depth, leaves=node_leaves,
            children=tuple(children), params=params, n_bytes=n_bytes, flops=flops, shares=node_shares,
            called=lv.calls != 0,
        )  # fmt: skip
    done = tuple(n for n in nodes if n is not None)
    roots: list[int] = []
    i = 0
    while i < len(layers):
        roots.append(i)
        i = layers[i].end
    params_total: int | None = 0
    bytes_total: int | None = 0
    flops_total: int | None = 0 if has_flops else None
    for r in roots:
        params_total = _add(params_total, done[r].params)
        bytes_total = _add(bytes_total, done[r].n_bytes)
        flops_total = _add(flops_total, done[r].flops) if has_flops else None
    top = 0
    if has_flops and flops_total is not None and view.compute is not None and view.compute.flops is not None:
        top = max(0, view.compute.flops - flops_total)
        flops_total += top
    return TreemapView(done, tuple(roots), params_total, bytes_total, flops_total, has_flops, top)
