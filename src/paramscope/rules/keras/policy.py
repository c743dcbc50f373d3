"""Keras dtype policies read from a layer config: variable dtype and quantization mode.

Keras 3 serialises a layer's policy as a plain name (``"mixed_float16"``) or as a
``DTypePolicy`` / ``QuantizedDTypePolicy`` / ``Int4DTypePolicy`` /
``QuantizedFloat8DTypePolicy`` / ``DTypePolicyMap`` object. Only the facts that decide which
variables a layer creates, and in which dtype, are kept here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paramscope.core.dtypes import canonical_dtype

__all__ = ["Policy", "parse_policy", "DEFAULT_POLICY"]

# keras/src/dtype_policies/dtype_policy.py: QuantizedFloat8DTypePolicy.default_amax_history_length
_DEFAULT_AMAX_HISTORY = 1024
_QUANTIZED_MODES = ("int8", "int4", "float8", "gptq", "awq")


@dataclass(frozen=True, slots=True)
class Policy:
    """What a Keras dtype policy says about a layer's variables.

    Attributes:
        name: the policy's name as Keras writes it (``"mixed_float16"``, ``"int8_from_float32"``).
        variable_dtype: canonical dtype of the float variables (``float32`` under mixed precision).
        compute_dtype: canonical dtype of the computation.
        quantization: ``"int8"``, ``"int4"``, ``"float8"``, ``"gptq"``, ``"awq"`` or ``None``.
        block_size: int4 block size from the policy name (``"int4/128"``); ``None`` or ``-1``
            means one scale per output channel.
        amax_history_length: float8 amax history length.
    """

    name: str = "float32"
    variable_dtype: str = "float32"
    compute_dtype: str = "float32"
    quantization: str | None = None
    block_size: int | None = None
    amax_history_length: int = _DEFAULT_AMAX_HISTORY


DEFAULT_POLICY = Policy()


def _from_name(name: str) -> Policy:
    # keras/src/dtype_policies/dtype_policy.py: "mixed_float16" and "mixed_bfloat16" keep
    # float32 variables and compute in the half type; any other name is one dtype for both.
    if name.startswith("mixed_"):
        return Policy(name, "float32", canonical_dtype(name.removeprefix("mixed_")))
    dt = canonical_dtype(name)
    return Policy(name, dt, dt)


def _quantized(config: Mapping[str, Any], default_mode: str, fallback: Policy = DEFAULT_POLICY) -> Policy:
    mode = str(config.get("mode", default_mode))
    source_name = config.get("source_name")
    # A DTypePolicyMap without a default policy stores its entries with no source name:
    # Keras then takes the global policy, here the enclosing one.
    source = source_name if isinstance(source_name, str) else fallback.name
    base = _from_name(source)
    block_size: int | None = None
    head, _, tail = mode.partition("/")
    if tail:
        try:
            block_size = int(tail)
        except ValueError:
            block_size = None
    amax = config.get("amax_history_length", _DEFAULT_AMAX_HISTORY)
    return Policy(
        name=f"{head}_from_{source}",
        variable_dtype=base.variable_dtype,
        compute_dtype=base.compute_dtype,
        quantization=head,
        block_size=block_size,
        amax_history_length=amax if isinstance(amax, int) else _DEFAULT_AMAX_HISTORY,
    )


def _map_entry(policy_map: Any, path: str) -> Any:
    """The ``DTypePolicyMap`` entry for ``path``: an exact key, else a ``prefix.*`` key.

    Keras matches other keys as regular expressions (``re.fullmatch``). Patterns from a file
    are not compiled here (a crafted one can take exponential time), so only the literal
    ``prefix.*`` form Keras documents is honoured; other patterns are ignored.
    """
    if not isinstance(policy_map, Mapping):
        return None
    if path in policy_map:
        return policy_map[path]
    if isinstance(policy_map.get("config"), Mapping) and policy_map.get("class_name") == "__dict__":
        return _map_entry(policy_map["config"], path)
    for key, value in policy_map.items():
        if isinstance(key, str) and key.endswith(".*"):
            prefix = key[:-2]
            if not any(ch in prefix for ch in "\\^$.|?*+()[]{}") and path.startswith(prefix):
                return value
    return None


def parse_policy(value: Any, parent: Policy | None = None, *, path: str = "") -> Policy:
    """The policy a layer's ``dtype`` config entry describes.

    Args:
        value: the ``dtype`` entry: ``None``, a name, or a serialised policy object.
        parent: the enclosing model's policy, used when ``value`` is absent.
        path: the layer's path inside the model, to pick its entry of a ``DTypePolicyMap``.

    Returns:
        The parsed policy; unknown forms fall back to ``parent`` (or float32).

    Example:
        >>> parse_policy("mixed_float16").variable_dtype
        'float32'
        >>> parse_policy({"class_name": "QuantizedDTypePolicy",
        ...               "config": {"mode": "int8", "source_name": "float32"}}).quantization
        'int8'
    """
    fallback = parent or DEFAULT_POLICY
    if value is None:
        return fallback
    if isinstance(value, str):
        for mode in _QUANTIZED_MODES:
            if value.startswith(f"{mode}_from_") or value.startswith(f"{mode}/"):
                if "_from_" in value:
                    mode_part, _, source = value.partition("_from_")
                else:
                    mode_part, source = value, "float32"
                return _quantized({"mode": mode_part, "source_name": source}, mode)
        return _from_name(value)
    if not isinstance(value, Mapping):
        return fallback
    cls = value.get("class_name")
    config = value.get("config")
    if not isinstance(config, Mapping):
        config = {}
    if cls == "DTypePolicyMap":
        default = parse_policy(config.get("default_policy"), fallback, path=path)
        entry = _map_entry(config.get("policy_map"), path)
        return default if entry is None else parse_policy(entry, default, path=path)
    if cls in ("QuantizedDTypePolicy", "Int4DTypePolicy", "GPTQDTypePolicy", "AWQDTypePolicy"):
        return _quantized(config, "int8", fallback)
    if cls == "QuantizedFloat8DTypePolicy":
        return _quantized(config, "float8", fallback)
    name = config.get("name")
    if isinstance(name, str):
        return parse_policy(name, fallback)
    return fallback
