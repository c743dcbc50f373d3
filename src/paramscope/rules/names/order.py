"""Order of flat tensors: numbers in numeric order, modules in the order data flows."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["natural_key", "data_flow_key"]

_NUM = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting ``layers.2`` before ``layers.10``.

    Example:
        >>> sorted(["l.10.w", "l.2.w", "emb"], key=natural_key)
        ['emb', 'l.2.w', 'l.10.w']
    """
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in _NUM.split(name) if p)


#: Tensor names put first within their module when sorting, in PyTorch's registration order.
_FIRST = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}


#: Module names in the order data flows through a block, for files that do not keep the
#: model's order (a safetensors header is sorted by dtype). Names not listed sort between
#: the early and the late ones, numbers in numeric order.
_EARLY = (
    "embeddings embed_tokens wte wpe word_embeddings position_embeddings "
    "token_type_embeddings tok_embeddings shared embed_positions token_embd pos_embd "
    "input_layernorm ln_1 attn_norm norm1 self_attn attn attention self "
    "q_proj k_proj v_proj qkv_proj o_proj out_proj query key value c_attn c_fc c_proj "
    "attn_q attn_k attn_v attn_qkv attn_output post_attention_layernorm ln_2 ffn_norm norm2 "
    "mlp feed_forward block_sparse_moe gate gate_proj up_proj down_proj w1 w3 w2 "
    "ffn_gate ffn_up ffn_down fc1 fc2"
).split()
_LATE = "LayerNorm layernorm layer_norm final_layer_norm norm ln_f output_norm pooler lm_head output classifier score".split()
_RANK = {n: i for i, n in enumerate(_EARLY)} | {n: 2000 + i for i, n in enumerate(_LATE)}


def data_flow_key(name: str, sep: str) -> tuple[object, ...]:
    """Sort key for a full tensor name: module path in data-flow order, then ``weight`` before ``bias``.

    Example:
        >>> sorted(["lm_head.weight", "h.1.mlp.bias", "h.1.attn.weight", "wte.weight"], key=lambda n: data_flow_key(n, "."))
        ['wte.weight', 'h.1.attn.weight', 'h.1.mlp.bias', 'lm_head.weight']
    """
    module, _, local = name.rpartition(sep)
    path = tuple(_component_key(c) for c in module.split(sep)) if module else ()
    return (path, _FIRST.get(local, len(_FIRST)), _component_key(local)[1])


@lru_cache(maxsize=1 << 16)
def _component_key(component: str) -> tuple[object, ...]:
    # Components repeat across a checkpoint ("model", "layers", "0", ...): a header of a
    # million tensors has a few thousand distinct ones, so each is keyed once.
    return (_RANK.get(component, 1000), natural_key(component))

