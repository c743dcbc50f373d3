"""Shared pieces of the torch rules: formula arithmetic, lazy modules and the exactness guard.

Every rule is registered through :func:`rule`, which checks what the rule says against the
module it describes: each formula must evaluate to the element count of the tensor it
explains, and the module formula to the module's parameter count. When a module was changed
after construction (a weight replaced by one of another shape) the constructor formula no
longer holds; the guard then falls back to the shape actually stored, so a number shown is
never one the framework disagrees with.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Formula
from paramscope.rules.torch.registry import ModuleNote, TensorNote, TorchRule, register_torch_rule

__all__ = [
    "rule",
    "guard",
    "guarded",
    "times",
    "plus",
    "scaled",
    "value",
    "own_tensors",
    "note",
    "stored",
    "NO_PARAMS",
]

#: The module formula of a module without parameters.
NO_PARAMS = Formula("no parameters", "0")


def value(numeric: str) -> int:
    """The integer a formula's numeric side evaluates to.

    Only integers, ``+``, ``-``, ``x`` (product), ``/`` (exact division) and parentheses are
    allowed; nothing is executed.

    Example:
        >>> value("4 x (3 + 1) - 16 / 2")
        8
    """
    tree = ast.parse(numeric.replace(" x ", " * ").replace(",", ""), mode="eval")
    return _eval(tree.body)


def _eval(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div) and right and left % right == 0:
            return left // right
    raise ValueError(f"not a count formula: {ast.unparse(node)}")


def times(*factors: tuple[str, int]) -> Formula:
    """The product of named factors.

    Example:
        >>> times(("out_features", 4), ("in_features", 3))
        Formula(symbolic='out_features x in_features', numeric='4 x 3')
    """
    return Formula(" x ".join(n for n, _ in factors), " x ".join(str(v) for _, v in factors))


def _wrap(text: str) -> str:
    return f"({text})" if (" + " in text or " - " in text) else text


def scaled(count: tuple[str, int], formula: Formula) -> Formula:
    """``count x formula``, with parentheses when the formula is a sum.

    Example:
        >>> scaled(("num_layers", 2), Formula("a + b", "3 + 4"))
        Formula(symbolic='num_layers x (a + b)', numeric='2 x (3 + 4)')
    """
    name, n = count
    return Formula(f"{name} x {_wrap(formula.symbolic)}", f"{n} x {_wrap(formula.numeric)}")


def plus(*terms: Formula | None) -> Formula:
    """The sum of formulas (``None`` terms are skipped; no terms give ``0``).

    Example:
        >>> plus(Formula("a", "1"), None, Formula("b", "2"))
        Formula(symbolic='a + b', numeric='1 + 2')
    """
    present = [t for t in terms if t is not None]
    if not present:
        return NO_PARAMS
    return Formula(" + ".join(t.symbolic for t in present), " + ".join(t.numeric for t in present))


def stored(tensor: Any) -> Formula:
    """A formula that only restates a tensor's stored shape (``1`` for a scalar)."""
    dims = [int(d) for d in tensor.shape]
    if not dims:
        return Formula("scalar", "1")
    return Formula("stored shape " + " x ".join(str(d) for d in dims), " x ".join(str(d) for d in dims))


def own_tensors(module: Any) -> dict[str, Any]:
    """The module's own parameters and buffers by local name (``None`` placeholders left out)."""
    found: dict[str, Any] = {}
    for name, t in module._parameters.items():
        if t is not None:
            found[name] = t
    for name, t in module._buffers.items():
        if t is not None:
            found[name] = t
    return found


def note(
    tensors: Mapping[str, TensorNote] | None = None, formula: Formula | None = None, text: str = ""
) -> ModuleNote:
    """A :class:`ModuleNote` with its mapping made read-only."""
    return ModuleNote(MappingProxyType(dict(tensors or {})), formula, text)


def _is_uninitialized(t: Any) -> bool:
    import torch.nn.parameter as p

    return isinstance(t, (p.UninitializedParameter, p.UninitializedBuffer))


def _lazy_note(module: Any, tensors: dict[str, Any]) -> ModuleNote:
    why = "shape not set yet: a lazy module infers its input size on the first forward pass"
    return note(
        {name: TensorNote(None, why) for name in tensors},
        None,
        f"{type(module).__name__} is uninitialized: its tensor shapes, and so its parameter count, "
        "are unknown until it sees an input.",
    )


def _n_params(module: Any) -> int:
    return sum(int(p.numel()) for p in module.parameters())


def guard(module: Any, made: ModuleNote, *, module_formula: bool = True) -> ModuleNote:
    """Check a rule's note against the module and repair what does not match.

    Args:
        module: the module described.
        made: what the rule said.
        module_formula: whether ``made.formula`` claims the module's total parameter count.

    Returns:
        The note, with every tensor explained by a formula equal to its element count, and a
        module formula equal to the parameter count (``None`` when that cannot be known, and
        for a module without parameters).
    """
    tensors = own_tensors(module)
    if any(_is_uninitialized(t) for t in tensors.values()):
        return _lazy_note(module, tensors)
    notes: dict[str, TensorNote] = {}
    for name, t in tensors.items():
        given = made.tensors.get(name)
        numel = int(t.numel())
        if given is None:
            notes[name] = TensorNote(
                stored(t), f"not created by {type(module).__name__}'s constructor; attached later"
            )
        elif given.formula is None or value(given.formula.numeric) != numel:
            why = "its shape differs from what the module's settings give, so the stored shape is shown"
            notes[name] = TensorNote(stored(t), f"{given.why} ({why})" if given.why else why, given.role)
        else:
            notes[name] = given
    formula = made.formula
    if formula is not None and value(formula.numeric) == 0 and _n_params(module) == 0:
        formula = None  # nothing to explain; a column of zeros would only be noise
    text = made.note
    if module_formula and formula is not None and value(formula.numeric) != _n_params(module):
        candidate, said = _parametrized(module, notes, made.note)
        if candidate is not None:
            formula, text = candidate, said
    if module_formula and formula is not None and value(formula.numeric) != _n_params(module):
        formula = Formula("parameters of the module and its submodules", str(_n_params(module)))
    return note(notes, formula, _sentence(text))


def _parametrized(module: Any, notes: Mapping[str, TensorNote], text: str) -> tuple[Formula | None, str]:
    """For a module with parametrizations (weight_norm, spectral_norm, ...): its own stored
    parameters plus the tensors each parametrized name is computed from."""
    lists = getattr(module, "parametrizations", None)
    if lists is None:
        return None, text
    own = [notes[n].formula for n, t in module._parameters.items() if t is not None and n in notes]
    terms = [
        Formula(f"parametrizations.{name}", str(_n_params(plist))) for name, plist in lists.items()
    ]
    names = ", ".join(lists.keys())
    said = (
        f"{names} is computed at each call by a parametrization; the tensors it is computed "
        f"from are stored under parametrizations.{'/'.join(lists.keys())}"
    )
    return plus(*own, *terms), f"{text}; {said}" if text else said


def _sentence(text: str) -> str:
    """Notes read as sentences, like the reader's own: a capital first letter, a final stop."""
    text = text.strip()
    if not text:
        return ""
    if text.split(" ", 1)[0].isalpha():  # never capitalise an identifier (affine=False, ...)
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def rule(
    *types: type, module_formula: bool = True, fallback: bool = False
) -> Callable[[TorchRule], TorchRule]:
    """Register a rule for exact module classes, wrapped in :func:`guard`.

    Example:
        >>> @rule(MyScale)  # doctest: +SKIP
        ... def _scale(m):
        ...     return note({"scale": TensorNote(times(("features", m.n)))}, times(("features", m.n)))
    """

    def deco(fn: TorchRule) -> TorchRule:
        register_torch_rule(*types, fallback=fallback)(guarded(fn, module_formula=module_formula))
        return fn

    return deco


def guarded(fn: TorchRule, *, module_formula: bool = True) -> TorchRule:
    """``fn`` with its result passed through :func:`guard`."""

    def checked(module: Any) -> ModuleNote:
        return guard(module, fn(module), module_formula=module_formula)

    checked.__name__ = getattr(fn, "__name__", "rule")
    checked.__doc__ = fn.__doc__
    return checked


def classes_in(modules: Iterable[Any], exclude: Iterable[type] = ()) -> list[type]:
    """The ``torch.nn.Module`` subclasses listed in each module's ``__all__``."""
    import torch.nn as nn

    skip = set(exclude)
    found: list[type] = []
    for mod in modules:
        for name in getattr(mod, "__all__", ()):
            cls = getattr(mod, name, None)
            if isinstance(cls, type) and issubclass(cls, nn.Module) and cls not in skip:
                found.append(cls)
    return found
