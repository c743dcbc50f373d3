"""The registry of PyTorch module rules and the notes they return."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Formula, Role
from paramscope.rules._families import Families

__all__ = [
    "TensorNote",
    "ModuleNote",
    "TorchRule",
    "TorchResolver",
    "register_torch_rule",
    "register_torch_resolver",
    "resolver_by_name",
    "torch_rule",
]

#: Modules holding the built-in rules; imported on the first lookup.
_FAMILIES = Families(
    "paramscope.rules.torch", ("nn", "norm", "recurrent", "attention", "hf", "hf_encoders", "hf_vision", "quantized")
)


@dataclass(frozen=True, slots=True)
class TensorNote:
    """What a rule says about one of a module's own tensors.

    Attributes:
        formula: how its size follows from the module's constructor arguments.
        why: one sentence for a non-obvious role.
        role: the role, when it is not simply "parameter with requires_grad" (e.g.
            :attr:`Role.STATISTIC` for ``running_mean``); ``None`` lets the reader decide.
    """

    formula: Formula | None = None
    why: str = ""
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class ModuleNote:
    """What a rule says about a module: its tensors by local name, and its own count."""

    tensors: Mapping[str, TensorNote] = field(default_factory=lambda: MappingProxyType({}))
    formula: Formula | None = None
    note: str = ""


TorchRule = Callable[[Any], ModuleNote]

#: Given a class that has no registered rule, the rule for exactly that class, or ``None``.
TorchResolver = Callable[[type], "TorchRule | None"]

_RULES: dict[type, TorchRule] = {}
_FALLBACK: set[type] = set()
_RESOLVERS: list[TorchResolver] = []
_UNRESOLVED: set[type] = set()


def register_torch_rule(*types: type, fallback: bool = False) -> Callable[[TorchRule], TorchRule]:
    """Register a rule for module classes; subclasses inherit it unless they have their own.

    A ``fallback`` rule never replaces one already registered, and is replaced by any later
    one, so that the order in which rule modules are imported does not matter.

    Example:
        >>> import torch  # doctest: +SKIP
        >>> @register_torch_rule(MyScale)  # doctest: +SKIP
        ... def _scale(m):
        ...     return ModuleNote({"scale": TensorNote(Formula("features", str(m.n)))})
    """

    def deco(fn: TorchRule) -> TorchRule:
        for t in types:
            if fallback and t in _RULES and t not in _FALLBACK:
                continue
            _RULES[t] = fn
            if fallback:
                _FALLBACK.add(t)
            else:
                _FALLBACK.discard(t)
            _UNRESOLVED.discard(t)
        return fn

    return deco


def register_torch_resolver(resolver: TorchResolver) -> TorchResolver:
    """Register a function that finds rules for classes that cannot be imported up front.

    Classes from optional libraries (``transformers``) are matched when first seen, so that
    reading a plain ``torch.nn`` model never imports those libraries. A resolver must match
    one exact class (for instance by its module and qualified name, checked for identity),
    never a family of names.

    Example:
        >>> @register_torch_resolver  # doctest: +SKIP
        ... def _mine(cls):
        ...     mod = sys.modules.get("mylib.layers")
        ...     return _scale_rule if mod is not None and cls is mod.Scale else None
    """
    _RESOLVERS.append(resolver)
    _UNRESOLVED.clear()
    return resolver


def resolver_by_name(table: Mapping[tuple[str, str], TorchRule]) -> TorchResolver:
    """A resolver for rules keyed by ``(module, qualified name)``, matching one exact class.

    The class must be the one its module defines under that name (checked for identity), so a
    user's class that reuses a library's name is not mistaken for it.

    Example:
        >>> import torch
        >>> find = resolver_by_name({("torch.nn.modules.linear", "Identity"): "identity rule"})
        >>> find(torch.nn.Identity), find(torch.nn.Linear)
        ('identity rule', None)
    """

    def resolve(cls: type) -> TorchRule | None:
        found = table.get((cls.__module__, cls.__qualname__))
        if found is None:
            return None
        defining = sys.modules.get(cls.__module__)
        if defining is None or getattr(defining, cls.__qualname__, None) is not cls:
            return None
        return found

    return resolve


def _resolve(cls: type) -> TorchRule | None:
    rule = _RULES.get(cls)
    if rule is not None or cls in _UNRESOLVED:
        return rule
    for resolver in _RESOLVERS:
        rule = resolver(cls)
        if rule is not None:
            _RULES[cls] = rule
            return rule
    _UNRESOLVED.add(cls)
    return None


def torch_rule(module: Any) -> TorchRule | None:
    """The rule for a module: the one registered for the nearest class in its MRO, or ``None``."""
    _FAMILIES.load()
    for cls in type(module).__mro__:
        rule = _resolve(cls)
        if rule is not None:
            return rule
    return None
