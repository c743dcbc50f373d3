"""What a module is for, from its last name component (HF, GGUF and common code conventions)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["PURPOSE"]

#: What a module's last name component is for, by convention (HF, GGUF and common code).
PURPOSE: Mapping[str, str] = MappingProxyType(
    {
        "q_proj": "query projection",
        "k_proj": "key projection",
        "v_proj": "value projection",
        "o_proj": "attention output projection",
        "out_proj": "attention output projection",
        "qkv_proj": "fused query/key/value projection",
        "query": "query projection",
        "key": "key projection",
        "value": "value projection",
        "c_attn": "fused query/key/value projection",
        "c_fc": "MLP up projection",
        "gate_proj": "MLP gate projection (SwiGLU)",
        "up_proj": "MLP up projection",
        "down_proj": "MLP down projection",
        "fc1": "MLP first linear layer",
        "fc2": "MLP second linear layer",
        "lm_head": "output head: hidden state to vocabulary logits",
        "token_embd": "token embedding table",
        "pos_embd": "position embedding table",
        "output": "output head: hidden state to vocabulary logits",
        "output_norm": "final normalisation",
        "attn_norm": "normalisation before attention",
        "ffn_norm": "normalisation before the feed-forward block",
        "attn_q": "query projection",
        "attn_k": "key projection",
        "attn_v": "value projection",
        "attn_qkv": "fused query/key/value projection",
        "attn_output": "attention output projection",
        "attn_q_norm": "query normalisation",
        "attn_k_norm": "key normalisation",
        "ffn_gate": "feed-forward gate projection (SwiGLU)",
        "ffn_up": "feed-forward up projection",
        "ffn_down": "feed-forward down projection",
        "ffn_gate_inp": "mixture-of-experts router",
        "ffn_gate_exps": "mixture-of-experts gate projections",
        "ffn_up_exps": "mixture-of-experts up projections",
        "ffn_down_exps": "mixture-of-experts down projections",
        "rope_freqs": "rotary embedding frequency factors",
        "lora_A": "LoRA down projection to the adapter rank",
        "lora_B": "LoRA up projection from the adapter rank",
    }
)
