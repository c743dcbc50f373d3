"""Turn flat tensor names (``model.layers.0.self_attn.q_proj.weight``) into a layer tree.

Checkpoint files store a flat list of named tensors. Splitting each name on the separator
gives a module path and a tensor name; every module path becomes a :class:`Layer` whose
children are the next path components, in order of first appearance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from paramscope.core import limits
from paramscope.core.anatomy import Formula, Layer, Role, Tensor

__all__ = ["FlatTensor", "build_tree", "check_name", "check_names", "Explainer"]


@dataclass(frozen=True, slots=True)
class FlatTensor:
    """A tensor known only by its full dotted name, as files store them.

    Attributes:
        name: the full name, e.g. ``"encoder.layer.0.attention.self.query.weight"``.
        shape: its shape.
        dtype: canonical dtype name.
        key: storage identity; equal keys mean one storage (tied weights).
        role: role if the file says (``None``: let the explainer decide).
        is_param: whether it counts as a parameter, if the file says.
    """

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str
    key: str = ""
    role: Role | None = None
    is_param: bool | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    """What an explainer says of one flat tensor."""

    role: Role = Role.UNKNOWN
    is_param: bool = True
    formula: Formula | None = None
    why: str = ""
    layer_type: str = ""


#: Given (module path, tensor name, shape, sibling tensor names), say what the tensor is.
Explainer = Callable[[str, str, tuple[int | None, ...] | None, frozenset[str]], Explanation]


@dataclass
class _Node:
    name: str
    path: str
    tensors: list[FlatTensor] = field(default_factory=list)
    children: dict[str, _Node] = field(default_factory=dict)


def check_name(name: str, sep: str, *, what: str = "tensor name", where: str | None = None) -> None:
    """Refuse a name longer, or split into more parts, than any real model's.

    Checked before a name is split or sorted: a 60,000-part name costs quadratic time and memory
    in every path it builds, and its nesting is what the tree's users recurse over.

    Raises:
        LimitError: past :data:`~paramscope.core.limits.MAX_NAME_CHARS` or
            :data:`~paramscope.core.limits.MAX_NAME_PARTS`.

    Example:
        >>> check_name("model.layers.0.mlp.up_proj.weight", ".")
    """
    if len(name) > limits.MAX_NAME_CHARS:
        raise limits.exceeded(
            f"{what} {name[:40]!r}... has {len(name):,} characters", len(name),
            limits.MAX_NAME_CHARS, "MAX_NAME_CHARS", where=where,
        )
    parts = name.count(sep) + 1 if sep else 1
    if parts > limits.MAX_NAME_PARTS:
        raise limits.exceeded(
            f"{what} {name[:40]!r}... has {parts:,} {sep!r}-separated parts", parts,
            limits.MAX_NAME_PARTS, "MAX_NAME_PARTS", where=where,
        )


def check_names(flat: Sequence[FlatTensor], sep: str, *, where: str | None = None) -> None:
    """:func:`check_name` for every tensor, and the tensor count against ``MAX_TENSORS``.

    Example:
        >>> check_names([FlatTensor("fc.weight", (2, 3), "float32")], ".")
    """
    limits.check("tensors in the checkpoint", len(flat), limits.MAX_TENSORS, "MAX_TENSORS", where=where)
    for ft in flat:
        check_name(ft.name, sep, where=where)


def build_tree(
    flat: Iterable[FlatTensor],
    *,
    sep: str = ".",
    explain: Explainer | None = None,
) -> tuple[Layer, ...]:
    """Group flat tensors into layers by their name prefixes.

    The tree is built and converted without recursion, and every name is checked first
    (:func:`check_names`), so its depth is bounded for the code that walks it later.

    Args:
        flat: the tensors, in file order.
        sep: the separator inside names.
        explain: gives each tensor's role, formula and why, and each layer's type.

    Returns:
        The top-level layers. Tensors with no prefix become a layer named after themselves.

    Raises:
        LimitError: a name, or the number of tensors, is past a limit of :mod:`paramscope.core.limits`.

    Example:
        >>> layers = build_tree([FlatTensor("fc.weight", (2, 3), "float32"), FlatTensor("fc.bias", (2,), "float32")])
        >>> [(l.name, [t.name for t in l.tensors]) for l in layers]
        [('fc', ['weight', 'bias'])]
    """
    tensors = flat if isinstance(flat, Sequence) else list(flat)
    check_names(tensors, sep)
    root = _Node("", "")
    for ft in tensors:
        parts = ft.name.split(sep)
        node = root
        for part in parts[:-1]:
            child = node.children.get(part)
            if child is None:
                path = f"{node.path}{sep}{part}" if node.path else part
                child = node.children[part] = _Node(part, path)
            node = child
        node.tensors.append(ft)
    return tuple(_to_layers(_top(root), sep, explain))


def _top(root: _Node) -> list[_Node]:
    nodes = list(root.children.values())
    # A tensor stored at the top level with no prefix becomes its own one-tensor layer.
    for ft in root.tensors:
        n = _Node(ft.name, ft.name)
        n.tensors.append(FlatTensor("", ft.shape, ft.dtype, ft.key, ft.role, ft.is_param))
        nodes.append(n)
    return nodes


def _to_layers(top: list[_Node], sep: str, explain: Explainer | None) -> list[Layer]:
    """Convert node trees to layers children first, with an explicit stack instead of recursion."""
    done: dict[int, Layer] = {}
    stack: list[tuple[_Node, bool]] = [(n, False) for n in reversed(top)]
    while stack:
        node, expanded = stack.pop()
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(node.children.values()))
            continue
        children = tuple(done.pop(id(c)) for c in node.children.values())
        done[id(node)] = _to_layer(node, sep, explain, children)
    return [done.pop(id(n)) for n in top]


def _to_layer(node: _Node, sep: str, explain: Explainer | None, children: tuple[Layer, ...]) -> Layer:
    siblings = frozenset(t.name.rsplit(sep, 1)[-1] for t in node.tensors)
    tensors = []
    layer_type = ""
    for ft in node.tensors:
        local = ft.name.rsplit(sep, 1)[-1] if ft.name else node.name
        ex = explain(node.path, local, ft.shape, siblings) if explain else Explanation()
        layer_type = layer_type or ex.layer_type
        role = ft.role if ft.role is not None else ex.role
        is_param = ft.is_param if ft.is_param is not None else ex.is_param
        full = ft.name if ft.name else node.path
        tensors.append(
            Tensor(
                name=local,
                shape=ft.shape,
                dtype=ft.dtype,
                role=role,
                is_param=is_param,
                key=ft.key or full,
                formula=ex.formula,
                why=ex.why,
            )
        )
    return Layer(
        name=node.name,
        type=layer_type,
        path=node.path,
        tensors=tuple(tensors),
        children=children,
    )
