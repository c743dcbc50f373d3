"""Layers from a whole pickled model (``torch.save(model)``) made only of ``torch.nn`` modules.

Such a pickle creates each module with ``NEWOBJ`` and fills its ``__dict__`` with ``BUILD``.
:mod:`paramscope.readers.torch.tensor_pickle` records these as :class:`ModuleRecord` objects
(nothing is imported or called); this module reads their ``_parameters``, ``_buffers`` and
``_modules`` dicts, which is exactly what ``nn.Module.state_dict`` walks. A model containing
any class outside ``torch.nn.modules`` (a user's ``__main__.Net``) is refused earlier, when
the pickle names that class.

TorchScript archives (``torch.jit.save``) store each module's attributes flat (``weight``,
``bias``, submodules) and declare which are parameters and buffers in the compiled code,
``code/__torch__/...py``: ``__parameters__ = ["weight", "bias", ]``. Those two lines are read
as text (:func:`script_declarations`); the code is never run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from paramscope.core.anatomy import Layer, Role, Tensor
from paramscope.core.errors import UnsafeFileError
from paramscope.readers.torch.tensor_pickle import ModuleRecord, TensorRef
from paramscope.rules.names import explain_name

__all__ = ["module_layers", "script_declarations", "Declarations"]

_MAX_DEPTH = 64
_CLASS = re.compile(r"^class (\w+)\(Module\):", re.M)
_LIST = re.compile(r"^  (__parameters__|__buffers__) = \[(.*)\]\s*$", re.M)
_NAME = re.compile(r'"([^"]*)"')

#: TorchScript class (``__torch__.torch.nn.modules.linear.Linear``) -> (parameter names, buffer names).
Declarations = Mapping[str, tuple[frozenset[str], frozenset[str]]]


def script_declarations(files: Mapping[str, str]) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """The parameter and buffer names each TorchScript class declares, read from its code as text.

    Args:
        files: path below ``code/`` (``__torch__/torch/nn/modules/linear.py``) -> file text.

    Returns:
        Qualified class name -> (parameters, buffers).

    Example:
        >>> code = chr(10).join(["class Linear(Module):", '  __parameters__ = ["weight", "bias", ]',
        ...                      "  __buffers__ = []", ""])
        >>> params, buffers = script_declarations({"__torch__/torch/nn/modules/linear.py": code})[
        ...     "__torch__.torch.nn.modules.linear.Linear"]
        >>> sorted(params), sorted(buffers)
        (['bias', 'weight'], [])
    """
    out: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for name, text in files.items():
        module = name.removesuffix(".py").replace("/", ".")
        heads = list(_CLASS.finditer(text))
        for i, head in enumerate(heads):
            body = text[head.end() : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
            lists = {m.group(1): frozenset(_NAME.findall(m.group(2))) for m in _LIST.finditer(body)}
            out[f"{module}.{head.group(1)}"] = (lists.get("__parameters__", frozenset()), lists.get("__buffers__", frozenset()))
    return out


def module_layers(root: ModuleRecord, where: str, declarations: Declarations | None = None,
                  shared: list[tuple[str, str]] | None = None) -> tuple[Layer, ...]:  # fmt: skip
    """The root module's children as layers (its own tensors, if any, as a first layer).

    A module reached a second time (one submodule object under two names) is listed once, under
    its first name, as ``torch.nn.Module.named_modules`` lists it; so a pickle whose ``_modules``
    point to one child twice at each of 40 levels is read in 40 steps, not 2**40.

    Args:
        root: the record of the pickled model.
        where: the file, for messages.
        declarations: for TorchScript archives, what each class declares (see :func:`script_declarations`).
        shared: if given, receives (second name, first name) for each module reached twice.

    Returns:
        Layers whose types are the modules' class names and whose tensors carry the roles the
        module says: parameters trainable or frozen by ``requires_grad``, buffers not parameters.
    """
    seen: dict[int, str] = {}
    top = _layer(root, root.cls.name, "", 0, where, seen, declarations or {}, shared if shared is not None else [])
    own = (top.with_(children=()),) if top.tensors else ()
    return own + top.children


def _members(rec: ModuleRecord, decls: Declarations) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any], str]:
    """(parameters, buffers, submodules, why for undeclared tensors) of a module record."""
    if not rec.cls.scripted:
        return _dict(rec.state.get("_parameters")), _dict(rec.state.get("_buffers")), _dict(rec.state.get("_modules")), ""
    declared = decls.get(f"{rec.cls.module}.{rec.cls.name}")
    params: dict[Any, Any] = {}
    buffers: dict[Any, Any] = {}
    for key, value in rec.state.items():
        if not isinstance(value, TensorRef):
            continue
        if declared is None:
            (params if value.requires_grad else buffers)[key] = value
        elif key in declared[0]:
            params[key] = value
        elif key in declared[1]:
            buffers[key] = value
        else:
            buffers[key] = value
    mods = {k: v for k, v in rec.state.items() if isinstance(v, ModuleRecord)}
    why = "" if declared is not None else "; the archive's code does not declare this class, so requires_grad decides"
    return params, buffers, mods, why


def _layer(rec: ModuleRecord, name: str, path: str, depth: int, where: str, seen: dict[int, str],
           decls: Declarations, shared: list[tuple[str, str]]) -> Layer:  # fmt: skip
    seen[id(rec)] = path
    if depth > _MAX_DEPTH:
        raise UnsafeFileError(
            f"modules nested deeper than {_MAX_DEPTH} levels at {path[:120]!r}, paramscope's limit for a pickled "
            "model (real models nest a handful of levels); refused",
            where=where,
        )
    params, buffers, modules, undeclared = _members(rec, decls)
    transient = rec.state.get("_non_persistent_buffers_set")
    transient = transient if isinstance(transient, frozenset) else frozenset()
    siblings = frozenset(k for k in (*params, *buffers) if isinstance(k, str))
    tensors: list[Tensor] = []
    for pname, t in params.items():
        if isinstance(t, TensorRef) and isinstance(pname, str):
            ex = explain_name(path, pname, t.shape, siblings)
            role = Role.TRAINABLE if t.requires_grad else Role.FROZEN
            why = (ex.why if ex.role is not Role.UNKNOWN else "a parameter of the module") + undeclared
            tensors.append(Tensor(pname, t.shape, t.dtype, role, True, t.key, ex.formula, why))
    for bname, t in buffers.items():
        if isinstance(t, TensorRef) and isinstance(bname, str):
            ex = explain_name(path, bname, t.shape, siblings)
            role = ex.role if ex.role in (Role.STATISTIC, Role.BUFFER) else Role.BUFFER
            why = (ex.why if ex.role is not Role.UNKNOWN else "a buffer of the module") + undeclared
            if bname in transient:
                why += "; non-persistent: saved with the pickled module but not in its state dict"
            tensors.append(Tensor(bname, t.shape, t.dtype, role, False, t.key, ex.formula, why))
    children = []
    for cname, child in modules.items():
        if isinstance(child, ModuleRecord) and isinstance(cname, str):
            cpath = f"{path}.{cname}" if path else cname
            if id(child) in seen:
                shared.append((cpath, seen[id(child)] or "the model itself"))
                continue
            children.append(_layer(child, cname, cpath, depth + 1, where, seen, decls, shared))
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
