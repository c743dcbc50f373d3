"""Stand-ins for the CUDA kernels whose saved tensors differ from the CPU and meta paths.

The memory pass runs on the meta device, where ``scaled_dot_product_attention`` decomposes into
the math path (keeping the L x S scores) and dropout multiplies by a mask in the activation's
dtype. On a GPU the flash and memory-efficient attention kernels keep only q, k, v, the output
and the log-sum-exp, and fused dropout keeps a 1-byte mask. These functions call the ATen ops
those kernels are registered under, whose meta implementations give the same outputs and saved
tensors.
"""

from __future__ import annotations

import torch

__all__ = ["flash_sdpa", "fused_dropout"]


def flash_sdpa(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False,
) -> torch.Tensor:
    """scaled_dot_product_attention as the CUDA flash and memory-efficient kernels run it.

    Example:
        >>> q = torch.empty(1, 2, 8, 4, device="meta")
        >>> flash_sdpa(q, q, q, is_causal=True).shape
        torch.Size([1, 2, 8, 4])
    """
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(rep, dim=-3)
        value = value.repeat_interleave(rep, dim=-3)
    if attn_mask is None:
        out = torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, dropout_p, is_causal, False, scale=scale)
        flash: torch.Tensor = out[0]
        return flash
    if attn_mask.dtype == torch.bool:  # the kernel takes an additive bias, as torch converts it
        attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device).masked_fill(
            attn_mask.logical_not(), float("-inf")
        )
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, attn_mask.expand(*query.shape[:-1], key.shape[-2]), True, dropout_p, is_causal, scale=scale
    )
    efficient: torch.Tensor = out[0]
    return efficient


def fused_dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """Dropout as CUDA runs it: the fused kernel keeps a 1-byte mask (the CPU path keeps a float one).

    Example:
        >>> fused_dropout(torch.empty(3, 5, device="meta"), 0.1).shape
        torch.Size([3, 5])
    """
    if not training or p == 0.0:
        return input
    return torch.native_dropout(input, p, True)[0]
