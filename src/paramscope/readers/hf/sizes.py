"""Sizes a Hugging Face config asks for, bounded before ``transformers`` builds anything.

``transformers`` builds one module per layer and per expert, and some configs make lists as
long as their layer count (``layer_types``), so ``num_hidden_layers: 10**9`` never ends. The
config is checked first, by its keys' names, which transformers shares across architectures
(``num_hidden_layers``, ``n_layer``, ``encoder_layers``, ``num_local_experts``, ...), in the
config and in its nested sub-configs (``text_config``, ``vision_config``):

- a layer count past :data:`~paramscope.core.limits.MAX_HF_LAYERS`, an expert count past
  :data:`~paramscope.core.limits.MAX_HF_EXPERTS`, or more expert modules (layers x experts)
  than :data:`~paramscope.core.limits.MAX_HF_EXPERT_MODULES`, is refused;
- a rough parameter estimate from the largest sizes found, ``layers x (12 x hidden**2 +
  3 x hidden x intermediate x experts) + vocab x hidden``, past
  :data:`~paramscope.core.limits.MAX_HF_PARAMS` is refused. The estimate errs high (it takes
  the largest of each size anywhere in the config); the limit is 5x the largest model known.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from paramscope.core import limits

__all__ = ["check_sizes"]

#: Keys holding a count of layers (``num_hidden_layers``, ``n_layer``, ``decoder_layers``, ...).
_LAYERS = re.compile(r"(^|_)(n_?layers?|num_\w*layers|\w*_layers|depth|num_blocks|n_blocks)$")
#: Keys holding a count of experts (``num_local_experts``, ``n_routed_experts``, ``num_experts``).
_EXPERTS = re.compile(r"(^|_)(num_\w*experts|n_\w*experts|num_experts)$")
_HIDDEN = ("hidden_size", "n_embd", "d_model", "dim", "embed_dim", "hidden_dim", "n_embed")
_INTERMEDIATE = ("intermediate_size", "n_inner", "d_ff", "ffn_dim", "moe_intermediate_size", "encoder_ffn_dim", "decoder_ffn_dim")
_VOCAB = ("vocab_size", "n_vocab")
#: Sub-configs are dicts nested in the config; real ones nest two or three deep.
_MAX_DEPTH = 8


def _ints(doc: Mapping[str, Any], depth: int = 0) -> Iterator[tuple[str, int]]:
    """(key, value) of every integer in ``doc`` and its nested dicts (lists of ints: each)."""
    for key, value in doc.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            yield str(key), value
        elif isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            yield str(key), max(value)
        elif isinstance(value, Mapping) and depth < _MAX_DEPTH:
            yield from _ints(value, depth + 1)


def check_sizes(doc: Mapping[str, Any], where: str) -> int:
    """Refuse a config that asks for more layers, experts or parameters than any real model.

    Returns:
        The parameter estimate (an upper bound for ordinary transformers).

    Raises:
        LimitError: past :data:`~paramscope.core.limits.MAX_HF_LAYERS`,
            :data:`~paramscope.core.limits.MAX_HF_EXPERTS` or
            :data:`~paramscope.core.limits.MAX_HF_PARAMS`.

    Example:
        >>> check_sizes({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 8,
        ...              "intermediate_size": 16, "vocab_size": 10}, "config.json")
        2384
        >>> check_sizes({"model_type": "llama", "num_hidden_layers": 10**9}, "config.json")
        Traceback (most recent call last):
        ...
        paramscope.core.errors.LimitError: config.json: num_hidden_layers is 1,000,000,000, over the limit MAX_HF_LAYERS = 1,000; no real model comes near it, so the file is refused as corrupt or hostile; if it is a genuine model, report it with the file's source
    """
    layers = experts = hidden = intermediate = vocab = 1
    for key, value in _ints(doc):
        if _LAYERS.search(key):
            if value > limits.MAX_HF_LAYERS:
                raise limits.exceeded(f"{key} is {value:,}", value, limits.MAX_HF_LAYERS, "MAX_HF_LAYERS", where=where)
            layers = max(layers, value)
        elif _EXPERTS.search(key):
            if value > limits.MAX_HF_EXPERTS:
                raise limits.exceeded(f"{key} is {value:,}", value, limits.MAX_HF_EXPERTS, "MAX_HF_EXPERTS", where=where)
            experts = max(experts, value)
        elif key in _HIDDEN:
            hidden = max(hidden, value)
        elif key in _INTERMEDIATE:
            intermediate = max(intermediate, value)
        elif key in _VOCAB:
            vocab = max(vocab, value)
    if layers * experts > limits.MAX_HF_EXPERT_MODULES:
        raise limits.exceeded(
            f"{layers:,} layers of {experts:,} experts make {layers * experts:,} expert modules",
            layers * experts, limits.MAX_HF_EXPERT_MODULES, "MAX_HF_EXPERT_MODULES", where=where,
        )
    estimate = layers * (12 * hidden**2 + 3 * hidden * intermediate * experts) + vocab * hidden
    if estimate > limits.MAX_HF_PARAMS:
        raise limits.exceeded(
            f"its sizes (layers {layers:,}, hidden {hidden:,}, intermediate {intermediate:,}, experts "
            f"{experts:,}, vocab {vocab:,}) describe about {estimate:.1e} parameters",
            estimate, limits.MAX_HF_PARAMS, "MAX_HF_PARAMS", where=where,
        )
    return estimate
