"""Reader for live PyTorch modules: parameters, buffers, tied weights, shapes and FLOPs.

The module tree is read from the module itself (its children, in registration order, under the
same dotted paths ``state_dict`` uses). Each module lists its *own* parameters and buffers.
A tensor reachable under several names (a tied embedding and output head) is one storage and
gets one :attr:`Tensor.key`, so totals count it once, as ``sum(p.numel() for p in
model.parameters())`` does. Shapes and FLOPs come from one forward pass without memory, see
:mod:`paramscope.trace.meta_pass`; without an example input only the parameter anatomy is
built. Importing this module does not import torch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Layer, Role, Tensor
from paramscope.core.compute import sum_compute
from paramscope.core.dtypes import canonical_dtype
from paramscope.rules.torch.packed import packed_tensors
from paramscope.readers.torch.storage import StorageKeys

__all__ = ["can_read", "read"]

_NO_INPUT_NOTE = (
    "Shapes and FLOPs need an example input: pass input_size=(1, 3, 224, 224) or "
    "inputs=['input_ids=int64[1,128]'] (command line: --input-size, --input)."
)
_NON_PERSISTENT = "A non-persistent buffer: kept on the module but not saved in its state_dict."


def can_read(source: Any) -> bool:
    """Whether ``source`` is a ``torch.nn.Module`` (never imports torch to find out)."""
    torch = sys.modules.get("torch")
    nn = getattr(torch, "nn", None) if torch is not None else None
    module_cls = getattr(nn, "Module", None) if nn is not None else None
    return module_cls is not None and isinstance(source, module_cls)


@dataclass
class _Node:
    name: str
    path: str
    module: Any
    children: list[_Node] = field(default_factory=list)


def _walk(name: str, path: str, module: Any, ancestors: frozenset[int], paths: dict[int, list[str]]) -> _Node:
    node = _Node(name, path, module)
    paths.setdefault(id(module), []).append(path)
    inner = ancestors | {id(module)}
    for child_name, child in module._modules.items():
        if child is None or id(child) in inner:  # a module holding its own ancestor would loop
            continue
        child_path = f"{path}.{child_name}" if path else child_name
        node.children.append(_walk(child_name, child_path, child, inner, paths))
    return node


def _register_parameters(node: _Node, keys: StorageKeys) -> None:
    """Give every parameter its key first: a buffer over a parameter's storage then shares the
    parameter's key (and is counted as it), whatever the order the tree lists them in."""
    for name, t in node.module._parameters.items():
        if t is not None:
            full = f"{node.path}.{name}" if node.path else name
            keys.params.add(full)
            keys.key(t, full)
    for child in node.children:
        _register_parameters(child, keys)


def _rule_note(module: Any) -> tuple[Any, str]:
    from paramscope.rules.torch import torch_rule

    rule = torch_rule(module)
    if rule is None:
        return None, ""
    try:
        return rule(module), ""
    except Exception as exc:  # noqa: BLE001 - a rule failing on an unusual subclass must not stop the read
        return None, f"The rule for {type(module).__name__} failed ({type(exc).__name__}: {exc}); tensors are listed as stored."


def _is_lazy(t: Any) -> bool:
    from torch.nn import parameter

    mixin = getattr(parameter, "UninitializedTensorMixin", None)
    return mixin is not None and isinstance(t, mixin)


def _tensors(node: _Node, keys: StorageKeys, note: Any) -> tuple[Tensor, ...]:
    m = node.module
    notes = note.tensors if note is not None else {}
    out: list[Tensor] = []
    non_persistent: set[str] = getattr(m, "_non_persistent_buffers_set", set())
    for is_param, store in ((True, m._parameters), (False, m._buffers)):
        for name, t in store.items():
            if t is None:
                continue
            full = f"{node.path}.{name}" if node.path else name
            tn = notes.get(name)
            if is_param:
                role = Role.TRAINABLE if t.requires_grad else Role.FROZEN
            else:
                role = tn.role if tn is not None and tn.role is not None else Role.BUFFER
            why = tn.why if tn is not None else ""
            if not is_param and name in non_persistent:
                why = f"{why} {_NON_PERSISTENT}".strip()
            key = keys.key(t, full)
            if not is_param and key in keys.params:
                why = f"{why} Shares its storage with the parameter {key}: counted once, as that parameter.".strip()
            overlap = keys.overlap.get(key, 0)
            if overlap:
                why = f"{why} A view overlapping another view of its storage in {overlap:,} elements, counted once.".strip()
            elif overlap is None:
                why = f"{why} A strided view of a storage other tensors also view: the elements they share are not computed.".strip()
            lazy = _is_lazy(t)
            out.append(
                Tensor(
                    name=name,
                    shape=None if lazy else tuple(int(d) for d in t.shape),
                    dtype=canonical_dtype(str(t.dtype)),
                    role=role,
                    is_param=is_param,
                    key=key,
                    formula=tn.formula if tn is not None else None,
                    why=why if not lazy else f"{why} Not initialised yet (lazy module): its size is unknown.".strip(),
                    persistent=is_param or name not in non_persistent,
                    overlap=overlap,
                )
            )
    for packed in packed_tensors(m):
        tn = notes.get(packed.name)
        full = f"{node.path}.{packed.name}" if node.path else packed.name
        keys.keep.append(packed.tensor)
        out.append(
            Tensor(
                name=packed.name,
                shape=tuple(int(d) for d in packed.tensor.shape),
                dtype=canonical_dtype(str(packed.tensor.dtype)),
                role=Role.FROZEN if packed.is_param else Role.BUFFER,
                is_param=packed.is_param,
                key=full,
                formula=tn.formula if tn is not None else None,
                why=packed.why,
            )
        )
    return tuple(out)


def _layer(node: _Node, keys: StorageKeys, trace: Any, paths: dict[int, list[str]]) -> Layer:
    m = node.module
    note, rule_error = _rule_note(m)
    tensors = _tensors(node, keys, note)
    children = tuple(_layer(c, keys, trace, paths) for c in node.children)
    parts = [note.note] if note is not None and note.note else []
    if rule_error:
        parts.append(rule_error)
    elif note is None and tensors:
        parts.append(f"No rule explains {type(m).__name__}; its tensors are listed as stored.")
    run = compute = None
    calls = 1
    if trace is not None and not trace.failure:
        run = trace.runs.get(node.path)
        compute = trace.compute.get(node.path) if run is not None else None
        calls = run.calls if run is not None else 0
        if run is None:
            elsewhere = [p for p in paths.get(id(m), ()) if p != node.path and p in trace.runs]
            twin = _twin(node, trace, paths)
            if twin:
                # one object under two names in one parent: hooks cannot tell which name a
                # call used, so both names show the object's calls, shapes and FLOPs (counted
                # once in the model's total, and once in a container summing its children)
                run = trace.runs[twin]
                calls, compute = run.calls, trace.compute.get(twin)
                parts.append(
                    f"The same module object as {twin}: its calls, shapes and FLOPs are those of "
                    "the object, counted once."
                )
            else:
                # A container never called itself does what its children do; a child with no
                # compute was not called either, so it adds nothing.
                compute = sum_compute(
                    [c.compute for c, n in zip(children, node.children) if not _twin(n, trace, paths) and c.compute is not None]
                )
                if elsewhere:
                    parts.append(f"The same module object as {', '.join(elsewhere)}, where its calls are counted.")
                elif tensors:
                    parts.append("Not called through its __call__ in the forward pass.")
    elif trace is not None:
        run = trace.runs.get(node.path)
        calls = run.calls if run is not None else 1
    return Layer(
        name=node.name,
        type=type(m).__name__,
        path=node.path,
        tensors=tensors,
        children=children,
        input_shapes=run.input_shapes if run is not None else None,
        output_shapes=run.output_shapes if run is not None else None,
        formula=note.formula if note is not None else None,
        note=" ".join(parts),
        known=True,
        calls=calls,
        compute=compute,
        origin=type(m).__module__,
    )


def _twin(node: _Node, trace: Any, paths: dict[int, list[str]]) -> str:
    """Another name of this node's module object in the same parent, where the pass counted
    its calls (``""`` if none). Names under different parents (T5's ``shared`` and
    ``encoder.embed_tokens``) are told apart by the caller, and keep their own counts."""
    if node.path in trace.runs:
        return ""
    parent = node.path.rpartition(".")[0]
    for p in paths.get(id(node.module), ()):
        if p != node.path and p in trace.runs and p.rpartition(".")[0] == parent:
            return p
    return ""


def _root_tensor_layers(root: _Node, keys: StorageKeys) -> list[Layer]:
    """Tensors owned by the model itself, each as a one-tensor layer (as flat files show them)."""
    note, _ = _rule_note(root.module)
    return [Layer(name=t.name, type="", path=t.name, tensors=(t,), origin=type(root.module).__module__) for t in _tensors(root, keys, note)]


def read(
    module: Any,
    *,
    input_size: Any = None,
    inputs: Any = None,
    example_inputs: Any = None,
    example_kwargs: Any = None,
    device: str = "meta",
    depth: int | None = None,
    **_: Any,
) -> Anatomy:
    """Read a live ``torch.nn.Module`` into an anatomy.

    Args:
        module: the model; it is not changed (see :mod:`paramscope.trace.meta_pass`).
        input_size: shape(s) of positional float inputs for a forward pass, e.g. ``(1, 3, 224, 224)``.
        inputs: spec strings such as ``["input_ids=int64[1,128]"]``.
        example_inputs: positional example tensors. A pass without data uses their shapes and
            dtypes; a real pass (``device="cpu"``, or the fallback for a model on the CPU whose
            shapes depend on input values) runs on them as given.
        example_kwargs: keyword example tensors.
        device: ``"meta"`` (default) runs without memory; another device runs for real.
        depth: accepted for symmetry with the renderers, which fold the tree; the full tree is built.

    Returns:
        The anatomy; shapes and FLOPs only when an input was given and the forward pass ran.

    Raises:
        TargetError: an input spec cannot be read.
        ModelError: the forward pass failed because of the inputs (wrong rank, unknown name).

    Example:
        >>> import torch
        >>> anatomy = read(torch.nn.Linear(4, 2), input_size=(1, 4))
        >>> anatomy.outputs, anatomy.compute.flops  # 4 x 2 multiply-adds = 16 FLOPs
        (((1, 2),), 16)
    """
    from paramscope.trace.inputs import input_specs

    specs = input_specs(input_size, inputs)
    paths: dict[int, list[str]] = {}
    root = _walk("", "", module, frozenset(), paths)
    keys = StorageKeys()
    _register_parameters(root, keys)
    notes: list[str] = []
    lazy = any(_is_lazy(t) for t in module.parameters())
    trace = None
    wants_forward = bool(specs) or example_inputs is not None or bool(example_kwargs)
    if wants_forward and lazy:
        notes.append("Shapes and FLOPs are not computed: lazy modules must first be initialised by a real forward pass.")
    elif wants_forward:
        from paramscope.trace.meta_pass import trace as run_trace

        trace = run_trace(module, paths, specs, example_inputs=example_inputs, example_kwargs=example_kwargs, device=device)
        notes.extend(trace.notes)
        if trace.failure:
            notes.append(trace.failure)
    else:
        notes.append(_NO_INPUT_NOTE)
    layers = tuple(_root_tensor_layers(root, keys)) + tuple(_layer(c, keys, trace, paths) for c in root.children)
    for name, first in keys.aliases:
        if name in keys.params:
            notes.append(
                f"{name} and {first} are distinct Parameter objects over one storage; counted once "
                "(model.parameters() would count both)."
            )
        else:
            notes.append(f"The buffer {name} shares its storage with the parameter {first}; counted once, as the parameter.")
    cls = type(module)
    ok = trace is not None and not trace.failure
    meta = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    first_tensor = next(iter([*module.parameters(), *module.buffers()]), None)
    if first_tensor is not None:
        meta["device"] = str(first_tensor.device)
    if trace is not None:
        meta["forward"] = trace.mode
    return Anatomy(
        name=cls.__name__,
        framework="torch",
        layers=layers,
        source="live torch module",
        inputs=trace.inputs if trace is not None else (),
        outputs=trace.outputs if ok and trace is not None else (),
        metadata=MappingProxyType(meta),
        notes=tuple(notes),
        compute=trace.total if ok and trace is not None else None,
    )
