"""KV cache bytes from a model's config: what inference keeps per sequence between tokens.

Per layer and per token of context (bytes = elements x the cache dtype's size):

- full attention: ``2 x kv_heads x head_dim`` (keys and values); grouped- and multi-query
  attention store ``num_key_value_heads`` heads, not ``num_attention_heads``
  (Ainslie et al. 2023);
- sliding-window attention: the same per token, for at most ``sliding_window`` tokens
  (Mistral; Gemma 2's and Qwen 2's sliding layers, per ``layer_types``);
- multi-head latent attention (DeepSeek-V2, Liu et al. 2024, section 2.1.2): the compressed
  latent ``kv_lora_rank + qk_rope_head_dim`` per token, shared by all heads;
- Mamba (Gu & Dao 2023): no per-token cache but a fixed state per sequence,
  ``intermediate_size x (state_size + conv_kernel)``; Mamba-2 keeps
  ``num_heads x head_dim x state_size`` plus the convolution window.

Tensor parallelism gives each device ``kv_heads / T`` heads (a whole head each when
``T > kv_heads``: heads are replicated, not split); pipeline stages hold ``layers / P`` layers.
This module reads configs as plain attributes and never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["KVCache", "kv_cache"]


@dataclass(frozen=True, slots=True)
class KVCache:
    """The cache of one device for ``batch`` sequences of ``seq`` tokens.

    Attributes:
        n_bytes: bytes, ``None`` when the architecture's cache is not known.
        formula: how it follows from the config.
        note: what was assumed, or why it is unknown.
    """

    n_bytes: int | None
    formula: str
    note: str = ""


class _Config:
    """Attribute access over a dict or a config object, following ``text_config``."""

    def __init__(self, source: Any) -> None:
        self.doc = source

    def get(self, *names: str) -> Any:
        for name in names:
            v = self.doc.get(name) if isinstance(self.doc, Mapping) else getattr(self.doc, name, None)
            if v is not None:
                return v
        return None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def kv_cache(config: Any, *, batch: int, seq: int, dtype_bytes: int, tp: int = 1, pp: int = 1) -> KVCache:
    """KV cache bytes per device for ``batch`` sequences holding ``seq`` tokens each.

    Args:
        config: a Hugging Face config (dict or object).
        batch: sequences.
        seq: tokens of context per sequence.
        dtype_bytes: bytes per cached element.
        tp: tensor-parallel size.
        pp: pipeline stages.

    Example:
        >>> cfg = {"model_type": "llama", "num_hidden_layers": 80, "num_attention_heads": 64,
        ...        "num_key_value_heads": 8, "hidden_size": 8192}
        >>> kv_cache(cfg, batch=8, seq=4096, dtype_bytes=2).n_bytes
        10737418240
    """
    c = _Config(config)
    text = c.get("text_config")
    if text is not None:
        c = _Config(text)
    model_type = str(c.get("model_type") or "")
    layers = _int(c.get("num_hidden_layers", "n_layer", "num_layers"))
    if layers is None:
        return KVCache(None, "?", "the config does not give the number of layers")
    per_stage = -(-layers // pp)
    if model_type in ("mamba", "falcon_mamba", "mamba2"):
        return _mamba(c, model_type, per_stage, batch, dtype_bytes, tp)
    if c.get("is_encoder_decoder") is not True and model_type in ("bert", "roberta", "deberta", "deberta-v2", "distilbert", "electra", "vit", "clip_vision_model"):
        return KVCache(0, "0", f"{model_type} is an encoder: it keeps no cache between tokens")
    heads = _int(c.get("num_attention_heads", "n_head", "num_heads"))
    hidden = _int(c.get("hidden_size", "n_embd", "d_model"))
    if heads is None or hidden is None:
        return KVCache(None, "?", "the config does not give the attention heads and hidden size")
    rank = _int(c.get("kv_lora_rank"))
    if rank is not None:
        rope = _int(c.get("qk_rope_head_dim")) or 0
        per_token = rank + rope
        total = per_stage * per_token * seq * batch * dtype_bytes
        formula = f"{per_stage} layers x ({rank} latent + {rope} rope) x {seq:,} tokens x {batch} seqs x {dtype_bytes} B"
        note = ("multi-head latent attention: the compressed latent is cached, replicated over tensor-parallel "
                "devices (transformers' own eager code caches the decompressed keys and values instead)")
        return KVCache(total, formula, note)
    kv_heads = _int(c.get("num_key_value_heads", "multi_query_group_num")) or heads
    if c.get("multi_query") is True:
        kv_heads = 1
    head_dim = _int(c.get("head_dim")) or hidden // heads
    kv_per_device = max(1, -(-kv_heads // tp))
    kinds = _layer_kinds(c, layers)[:per_stage]
    window = _int(c.get("sliding_window"))
    tokens = 0
    n_sliding = 0
    for kind in kinds:
        if kind == "sliding_attention" and window is not None:
            tokens += min(seq, window)
            n_sliding += 1
        else:
            tokens += seq
    total = 2 * kv_per_device * head_dim * tokens * batch * dtype_bytes
    tp_text = f" ({kv_heads} / TP {tp})" if tp > 1 else ""
    if n_sliding:
        span = f"({len(kinds) - n_sliding} x {seq:,} + {n_sliding} x {min(seq, window or seq):,} window) tokens"
    else:
        span = f"{len(kinds)} layers x {seq:,} tokens"
    formula = f"2 x {kv_per_device} kv heads{tp_text} x {head_dim} x {span} x {batch} seqs x {dtype_bytes} B"
    note = ""
    if tp > kv_heads:
        note = f"{kv_heads} kv heads over {tp} tensor-parallel devices: each device keeps a whole head (replicated)"
    return KVCache(total, formula, note)


def _layer_kinds(c: _Config, layers: int) -> list[str]:
    """Each layer's attention kind: ``full_attention`` or ``sliding_attention``."""
    kinds = c.get("layer_types")
    if isinstance(kinds, (list, tuple)) and len(kinds) == layers and all(isinstance(k, str) for k in kinds):
        return list(kinds)
    window = _int(c.get("sliding_window"))
    if window is None or c.get("use_sliding_window") is False:
        return ["full_attention"] * layers
    first_sliding = _int(c.get("max_window_layers"))
    if c.get("use_sliding_window") is True and first_sliding is not None:  # Qwen 2: the top layers slide
        return ["full_attention" if i < first_sliding else "sliding_attention" for i in range(layers)]
    return ["sliding_attention"] * layers  # Mistral: every layer


def _mamba(c: _Config, model_type: str, layers: int, batch: int, dtype_bytes: int, tp: int) -> KVCache:
    inner = _int(c.get("intermediate_size"))
    state = _int(c.get("state_size"))
    conv = _int(c.get("conv_kernel"))
    if inner is None or state is None or conv is None:
        return KVCache(None, "?", "the config does not give intermediate_size, state_size and conv_kernel")
    if model_type == "mamba2":
        heads = _int(c.get("num_heads")) or 1
        head_dim = _int(c.get("head_dim")) or inner // heads
        groups = _int(c.get("n_groups")) or 1
        ssm = heads * head_dim * state
        conv_elems = (inner + 2 * groups * state) * conv
        per_layer = (ssm + conv_elems) // tp
        formula = (f"{layers} layers x ({heads} x {head_dim} x {state} ssm + ({inner} + 2 x {groups} x {state}) x {conv} conv)"
                   f"{f' / TP {tp}' if tp > 1 else ''} x {batch} seqs x {dtype_bytes} B")
    else:
        per_layer = inner * (state + conv) // tp
        formula = f"{layers} layers x {inner} x ({state} ssm + {conv} conv){f' / TP {tp}' if tp > 1 else ''} x {batch} seqs x {dtype_bytes} B"
    return KVCache(layers * per_layer * batch * dtype_bytes, formula,
                   "recurrent state: fixed per sequence, independent of the context length")
