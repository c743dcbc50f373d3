"""Layers from a whole pickled model (``torch.save(model)``) made only of ``torch.nn`` modules.

Such a pickle creates each module with ``NEWOBJ`` and fills its ``__dict__`` with ``BUILD``.
:mod:`paramscope.readers._torch_pickle` records these as :class:`ModuleRecord` objects
(nothing is imported or called); this module reads their ``_parameters``, ``_buffers`` and
``_modules`` dicts, which is exactly what ``nn.Module.state_dict`` walks. A model containing
any class outside ``torch.nn.modules`` (a user's ``__main__.Net``) is refused earlier, when
the pickle names that class.
"""

from __future__ import annotations

from typing import Any

from paramscope.core.anatomy import Layer, Role, Tensor
from paramscope.core.errors import CorruptFileError
from paramscope.readers._torch_pickle import ModuleRecord, TensorRef
from paramscope.rules.names import explain_name

__all__ = ["module_layers"]

_MAX_DEPTH = 64


def module_layers(root: ModuleRecord, where: str) -> tuple[Layer, ...]:
    """The root module's children as layers (its own tensors, if any, as a first layer).

    Args:
        root: the record of the pickled model.
        where: the file, for messages.

    Returns:
        Layers whose types are the modules' class names and whose tensors carry the roles the
        module says: parameters trainable or frozen by ``requires_grad``, buffers not parameters.
    """
    top = _layer(root, root.cls.name, "", 0, where, ())
    own = (top.with_(children=()),) if top.tensors else ()
    return own + top.children


def _layer(rec: ModuleRecord, name: str, path: str, depth: int, where: str, stack: tuple[int, ...]) -> Layer:
    if depth > _MAX_DEPTH:
        raise CorruptFileError(f"modules nested deeper than {_MAX_DEPTH} at {path!r}", where=where)
    params = _dict(rec.state.get("_parameters"))
    buffers = _dict(rec.state.get("_buffers"))
    transient = rec.state.get("_non_persistent_buffers_set")
    transient = transient if isinstance(transient, frozenset) else frozenset()
    siblings = frozenset(k for k in (*params, *buffers) if isinstance(k, str))
    tensors: list[Tensor] = []
    for pname, t in params.items():
        if isinstance(t, TensorRef) and isinstance(pname, str):
            ex = explain_name(path, pname, t.shape, siblings)
            role = Role.TRAINABLE if t.requires_grad else Role.FROZEN
            why = ex.why if ex.role is not Role.UNKNOWN else "a parameter of the module"
            tensors.append(Tensor(pname, t.shape, t.dtype, role, True, t.key, ex.formula, why))
    for bname, t in buffers.items():
        if isinstance(t, TensorRef) and isinstance(bname, str):
            ex = explain_name(path, bname, t.shape, siblings)
            role = ex.role if ex.role in (Role.STATISTIC, Role.BUFFER) else Role.BUFFER
            why = ex.why if ex.role is not Role.UNKNOWN else "a buffer of the module"
            if bname in transient:
                why += "; non-persistent: saved with the pickled module but not in its state dict"
            tensors.append(Tensor(bname, t.shape, t.dtype, role, False, t.key, ex.formula, why))
    children = []
    here = stack + (id(rec),)
    for cname, child in _dict(rec.state.get("_modules")).items():
        if isinstance(child, ModuleRecord) and isinstance(cname, str) and id(child) not in here:
            cpath = f"{path}.{cname}" if path else cname
            children.append(_layer(child, cname, cpath, depth + 1, where, here))
    return Layer(
        name=name,
        type=rec.cls.name,
        path=path or name,
        tensors=tuple(tensors),
        children=tuple(children),
        origin=rec.cls.module,
    )


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}
