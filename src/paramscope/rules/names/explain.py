"""Explain one flat tensor from its name, its module's name, its rank and its siblings."""

from __future__ import annotations

import re
from functools import lru_cache

from paramscope.core.anatomy import Role
from paramscope.core.tree import Explanation
from paramscope.rules.names.formulas import Shape
from paramscope.rules.names.purpose import PURPOSE
from paramscope.rules.names.table import RULES, NameRule


@lru_cache(maxsize=1 << 14)
def _candidates(tensor: str) -> tuple[NameRule, ...]:
    """The rules that may match a tensor name, in table order: those that list the name, and
    those with a pattern. One lookup per distinct name instead of a scan of the whole table
    per tensor (a header of a million tensors has a few hundred distinct last names)."""
    return tuple(r for r in RULES if tensor in r.tensors or r.pattern is not None)

__all__ = ["name_tokens", "explain_name"]

_TOKEN = re.compile(r"[A-Za-z]+|\d+")


def name_tokens(component: str) -> frozenset[str]:
    """The lower-case word and number tokens of one name component.

    Example:
        >>> sorted(name_tokens("post_attention_layernorm"))
        ['attention', 'layernorm', 'post']
        >>> sorted(name_tokens("bn1"))
        ['1', 'bn']
    """
    return frozenset(t.lower() for t in _TOKEN.findall(component))


def _matches(rule: NameRule, module: str, tensor: str, shape: Shape | None, siblings: frozenset[str]) -> bool:
    if tensor not in rule.tensors and (rule.pattern is None or not rule.pattern.fullmatch(tensor)):
        return False
    if rule.ndim and (shape is None or len(shape) not in rule.ndim):
        return False
    if rule.module and not (rule.module & name_tokens(module)):
        return False
    if rule.module_names and module not in rule.module_names:
        return False
    return not rule.siblings or bool(rule.siblings & siblings)


def explain_name(
    path: str, tensor: str, shape: Shape | None, siblings: frozenset[str], *, sep: str = "."
) -> Explanation:
    """Explain one flat tensor by the conventions of its name (a :data:`core.tree.Explainer`).

    Args:
        path: the owning module's path (``"model.layers.0.self_attn.q_proj"``).
        tensor: the tensor's own name (``"weight"``).
        shape: its shape, in PyTorch (row-major) order.
        siblings: names of the other tensors of the same module.
        sep: the separator inside ``path``.

    Returns:
        Role, whether it counts as a parameter, formula, a sentence and the layer type; role
        :attr:`Role.UNKNOWN` when no rule matches.

    Example:
        >>> e = explain_name("model.layers.0.mlp.up_proj", "weight", (11008, 4096), frozenset({"weight"}))
        >>> e.layer_type, e.formula.numeric, e.why
        ('Linear', '11008 x 4096', 'MLP up projection: linear map, stored (out, in)')
    """
    module = path.rsplit(sep, 1)[-1]
    for rule in _candidates(tensor):
        if _matches(rule, module, tensor, shape, siblings):
            formula = rule.formula(shape) if rule.formula is not None and shape is not None else None
            purpose = PURPOSE.get(module)
            why = f"{purpose}: {rule.why}" if purpose else rule.why
            return Explanation(rule.role, rule.is_param, formula, why, rule.layer_type)
    return Explanation(Role.UNKNOWN, True, None, "no naming convention explains this tensor", "")
