"""The longest sequence a transformer config allows, and a note when inputs ask for more.

GPT-2 learns a table of ``n_positions`` = 1,024 position embeddings: at 4,096 tokens the real
model fails with an index error, while a meta-device pass (which never reads the table) runs and
reports FLOPs for a model that cannot exist. Rotary models (Llama) do run past
``max_position_embeddings``, but beyond the length they were trained for. Either way the user
should hear it. The check reads only the config's numbers, so any reader can call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = ["position_limit", "positions_note"]

#: Config keys that name the longest sequence, in the order transformers' configs use them.
LIMIT_KEYS = ("max_position_embeddings", "n_positions")
#: Inputs whose second dimension (or only one) counts positions.
SEQUENCE_INPUTS = frozenset({
    "input_ids", "attention_mask", "token_type_ids", "position_ids", "decoder_input_ids",
    "decoder_attention_mask", "inputs_embeds",
})


class _Spec(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...


def _get(config: Any, key: str) -> Any:
    if isinstance(config, Mapping):
        return config.get(key)
    return getattr(config, key, None)


def position_limit(config: Any) -> tuple[str, int] | None:
    """``(key, limit)`` from a config (a dict or a transformers config object), or ``None``.

    A multimodal config keeps it in ``text_config``; that one is used when the top level has none.

    Example:
        >>> position_limit({"model_type": "gpt2", "n_positions": 1024})
        ('n_positions', 1024)
        >>> position_limit({"hidden_size": 8}) is None
        True
    """
    for where in (config, _get(config, "text_config")):
        if where is None:
            continue
        for key in LIMIT_KEYS:
            value = _get(where, key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return key, value
    return None


def _length(spec: _Spec) -> int | None:
    if not spec.shape:
        return None
    if spec.name in SEQUENCE_INPUTS or (spec.name is None and spec.dtype.startswith(("int", "uint"))):
        # (batch, positions) for ids and masks; (batch, positions, hidden) for embeddings.
        return spec.shape[1] if len(spec.shape) >= 2 else spec.shape[0]
    return None


def positions_note(config: Any, specs: Iterable[_Spec]) -> str | None:
    """A note when an input is longer than the config allows, else ``None``.

    Args:
        config: a config dict or object with ``max_position_embeddings`` or ``n_positions``.
        specs: the inputs, each with ``name``, ``dtype`` and ``shape``
            (:class:`paramscope.trace.inputs.InputSpec`).

    Example:
        >>> from types import SimpleNamespace as S
        >>> print(positions_note({"n_positions": 1024}, [S(name="input_ids", dtype="int64", shape=(1, 4096))]))
        input_ids has 4,096 positions but this config allows at most 1,024 (n_positions): the real model fails or runs past its trained length; shapes and FLOPs here are for 4,096 positions.
    """
    limit = position_limit(config)
    if limit is None:
        return None
    key, most = limit
    for spec in specs:
        length = _length(spec)
        if length is not None and length > most:
            name = spec.name or "the first input"
            return (
                f"{name} has {length:,} positions but this config allows at most {most:,} ({key}): "
                f"the real model fails or runs past its trained length; shapes and FLOPs here are "
                f"for {length:,} positions."
            )
    return None
