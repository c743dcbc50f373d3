"""Mixture-of-experts layers in a pass without data: the experts kernel that can run there.

transformers runs a mixture-of-experts layer through a choice of kernels (the model's
``experts_implementation``). The default, ``grouped_mm``, has a ``meta``/fake implementation
for bfloat16 only, so an fp32 model stops in its first MoE layer. ``batched_mm`` does the same
products (each token times each of its top-k experts, gathered per token), so output shapes
and FLOPs are those of the default. The config reader builds models with it
(:data:`PASS_EXPERTS`); the live reader switches a model to it for the pass and back
afterwards (:func:`experts_for_pass`). Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PASS_EXPERTS", "experts_for_pass"]

#: The experts kernel a pass without data uses.
PASS_EXPERTS = "batched_mm"


@contextmanager
def experts_for_pass(module: Any) -> Iterator[str]:
    """Switch a transformers model to :data:`PASS_EXPERTS` while the block runs.

    Yields a sentence saying what was switched (``""`` when nothing was: not a transformers
    model, no MoE layers, or already that kernel). The model's own setting is restored after.
    """
    get = getattr(module, "get_experts_implementation", None)
    set_ = getattr(module, "set_experts_implementation", None)
    if not callable(get) or not callable(set_) or not _has_experts(module):
        yield ""
        return
    try:
        before = get()
    except Exception:  # noqa: BLE001 - a model without experts settings
        yield ""
        return
    if all(v in (None, PASS_EXPERTS) for v in before.values()):
        yield ""
        return
    try:
        set_(PASS_EXPERTS)
    except Exception:  # noqa: BLE001 - a model that refuses the switch runs as it is
        yield ""
        return
    try:
        yield (
            f"Mixture-of-experts layers ran with transformers' {PASS_EXPERTS} experts kernel for the pass "
            f"(the model's {before.get('', '')} has no implementation without data for its dtype); "
            "it does the same products, so shapes and FLOPs are those of the model's own kernel."
        )
    finally:
        set_(before)


def _has_experts(module: Any) -> bool:
    """Whether any submodule is an experts layer of transformers' experts interface (its
    ``use_experts_implementation`` decorator marks each instance with these attributes)."""
    return any("_is_expert_parallel" in vars(m) and "has_gate" in vars(m) for m in module.modules())
