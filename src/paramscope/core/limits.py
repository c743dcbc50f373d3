"""Limits no real model reaches, checked before anything is built from a file.

A file is untrusted: every count, length and nesting in it is chosen by whoever wrote it. Where
the work paramscope does grows with such a number, the number is checked against a limit here
first, and a file past it is refused with one line that names the limit, its value and what to
do (:class:`~paramscope.core.errors.LimitError`). Each limit is far above the largest real
model known (stated beside it), so a genuine file never meets one; ``docs/security.md`` lists
them all with where they are enforced.
"""

from __future__ import annotations

from paramscope.core.errors import LimitError

__all__ = [
    "MAX_NAME_CHARS",
    "MAX_NAME_PARTS",
    "MAX_TENSORS",
    "MAX_ONNX_NODES",
    "MAX_ONNX_FUNCTION_DEPTH",
    "MAX_KERAS_LAYERS",
    "MAX_INBOUND",
    "MAX_KERAS_CONFIG_BYTES",
    "MAX_HF_LAYERS",
    "MAX_HF_EXPERTS",
    "MAX_HF_EXPERT_MODULES",
    "MAX_HF_PARAMS",
    "exceeded",
    "check",
]

#: Characters in one tensor, node or layer name. The longest names of real checkpoints
#: (diffusers UNets, nested timm models) are under 200 characters.
MAX_NAME_CHARS = 4096
#: Dot- or slash-separated parts of one name, i.e. nesting depth of the layer tree. Real
#: names have under 15 (``down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight``
#: has 9); the renderers and analyses walk the tree by recursion, which this bounds.
MAX_NAME_PARTS = 128
#: Tensors in one checkpoint (all shards together). The largest real checkpoints hold about
#: 100,000; a safetensors header of 100 MB (the format's own limit) holds about 2 million.
MAX_TENSORS = 2_000_000
#: ONNX nodes, counting every subgraph node and every node of every model-local function
#: call (a function called twice counts its nodes twice). Exported graphs have up to tens of
#: thousands (an LLM: a few hundred nodes per block); each node costs ~2 KB while read, so
#: this also keeps a hostile graph under 1 GiB.
MAX_ONNX_NODES = 250_000
#: Model-local ONNX functions calling each other, deepest chain. The ONNX spec forbids
#: recursion; exporters nest functions a few levels deep.
MAX_ONNX_FUNCTION_DEPTH = 16
#: Layers in one Keras config (all nested models together). Real models have under 10,000.
MAX_KERAS_LAYERS = 1_000_000
#: Inbound references of one Keras layer call (a Concatenate of N tensors has N). Real
#: models concatenate at most a few hundred tensors.
MAX_INBOUND = 65_536
#: Bytes of a Keras ``config.json`` (inside a ``.keras`` archive, in an ``.h5``'s
#: ``model_config`` attribute or a ``.json`` file), checked while inflating or reading. The
#: largest ``keras.applications`` config, NASNetLarge (1,041 layers), is 1,033,217 bytes as
#: JSON (measured). JSON of small objects takes ~25x its size in memory (16 MiB of ``{},``:
#: about 400 MB), which is what keeps this cap well under 1 GiB.
MAX_KERAS_CONFIG_BYTES = 16 * 1024 * 1024
#: Hidden layers (``num_hidden_layers`` and its aliases) of a Hugging Face config. The
#: deepest real transformers have under 200 (Llama-3.1-405B: 126). Building on the meta device
#: costs ~30 ms and ~130 KB per layer here (10,000 tiny layers: over 300 s, 1.3 GB), so the
#: limit keeps a hostile config's build bounded too.
MAX_HF_LAYERS = 1_000
#: Experts per layer of a Hugging Face config (``num_local_experts``, ``n_routed_experts``).
#: The most in a released model is a few hundred (DeepSeek-V3: 256).
MAX_HF_EXPERTS = 16_384
#: Layers times experts per layer: the expert modules built. Real: DeepSeek-V3 61 x 256 =
#: 15,616; Kimi-K2 61 x 384 = 23,424.
MAX_HF_EXPERT_MODULES = 100_000
#: Parameters a Hugging Face config may describe, estimated from its sizes before anything
#: is built (10**13: 10 trillion, about 5x the largest model announced).
MAX_HF_PARAMS = 10**13

_ADVICE = (
    "no real model comes near it, so the file is refused as corrupt or hostile; if it is a "
    "genuine model, report it with the file's source"
)


def exceeded(what: str, value: int, limit: int, name: str, *, where: str | None = None) -> LimitError:
    """The error for ``what`` (of ``value``) being past ``limit`` (the constant ``name``).

    Example:
        >>> str(exceeded("a tensor name has 9,000 parts", 9000, 128, "MAX_NAME_PARTS"))[:66]
        'a tensor name has 9,000 parts, over the limit MAX_NAME_PARTS = 128'
    """
    return LimitError(f"{what}, over the limit {name} = {limit:,}; {_ADVICE}", limit=name, value=value, where=where)


def check(what: str, value: int, limit: int, name: str, *, where: str | None = None) -> None:
    """Raise :func:`exceeded` when ``value > limit``.

    Example:
        >>> check("tensors", 3, 4, "MAX_TENSORS")
    """
    if value > limit:
        raise exceeded(f"{what}: {value:,}", value, limit, name, where=where)
