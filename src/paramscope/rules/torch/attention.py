"""Rules for ``nn.MultiheadAttention`` and the ``nn.Transformer`` family.

From ``torch/nn/modules/activation.py``: when query, key and value all have ``embed_dim``
features, the three input projections are packed into one ``in_proj_weight``
``(3 x embed_dim, embed_dim)``; when ``kdim`` or ``vdim`` differ they are kept apart as
``q_proj_weight``, ``k_proj_weight`` ``(embed_dim, kdim)`` and ``v_proj_weight``
``(embed_dim, vdim)``. The output projection is a child Linear, ``out_proj``. The Transformer
layers (``torch/nn/modules/transformer.py``) hold no tensors themselves; their formulas add up
their attention, feed-forward and LayerNorm children.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from paramscope.core.anatomy import Formula
from paramscope.rules.torch._common import note, plus, rule, scaled, times, value
from paramscope.rules.torch.registry import ModuleNote, TensorNote, torch_rule

__all__: list[str] = []


@rule(nn.MultiheadAttention)
def _mha(module: Any) -> ModuleNote:
    e = module.embed_dim
    tensors: dict[str, TensorNote] = {}
    terms: list[Formula] = []
    if module._qkv_same_embed_dim:
        w = Formula("3 x embed_dim x embed_dim", f"3 x {e} x {e}")
        tensors["in_proj_weight"] = TensorNote(
            w,
            "the query, key and value projections packed into one (3 x embed_dim, embed_dim) "
            "matrix: rows [0, E) project queries, [E, 2E) keys, [2E, 3E) values",
        )
        terms.append(w)
    else:
        parts = (("q", "embed_dim", e), ("k", "kdim", module.kdim), ("v", "vdim", module.vdim))
        for which, in_name, in_n in parts:
            f = times(("embed_dim", e), (in_name, in_n))
            tensors[f"{which}_proj_weight"] = TensorNote(
                f,
                f"the {dict(q='query', k='key', v='value')[which]} projection; kept separate "
                "because kdim or vdim differs from embed_dim, so the three cannot be packed",
            )
            terms.append(f)
    if module.in_proj_bias is not None:
        b = Formula("3 x embed_dim", f"3 x {e}")
        tensors["in_proj_bias"] = TensorNote(b, "the biases of the query, key and value projections, packed")
        terms.append(b)
    if module.bias_k is not None:
        for which in ("k", "v"):
            what = "key" if which == "k" else "value"
            tensors[f"bias_{which}"] = TensorNote(
                times(("embed_dim", e)),
                f"add_bias_kv: a learned {what} appended to the {what} sequence, one extra "
                "position every query can attend to",
            )
        terms.append(Formula("2 x embed_dim", f"2 x {e}"))
    out = module.out_proj
    terms.append(
        Formula("embed_dim x embed_dim + embed_dim", f"{e} x {e} + {e}")
        if out.bias is not None
        else Formula("embed_dim x embed_dim", f"{e} x {e}")
    )
    text = (
        f"{module.num_heads} heads of embed_dim / num_heads = {e // module.num_heads} features each; "
        "splitting into heads does not change the count; out_proj (a child Linear) is included "
        "in the formula"
    )
    return note(tensors, plus(*terms), text)


def _count(module: Any) -> Formula | None:
    """The formula a module's own rule gives for its parameter count."""
    found = torch_rule(module)
    return None if found is None else found(module).formula


def _uniform(layers: Any) -> bool:
    counts = {sum(int(p.numel()) for p in layer.parameters()) for layer in layers}
    return len(counts) <= 1


def _block(module: Any, attentions: int, norms: int) -> Formula:
    e = module.self_attn.embed_dim
    ff = module.linear1.out_features
    bias = module.linear1.bias is not None
    attn = (
        Formula("4 x (d_model x d_model + d_model)", f"4 x ({e} x {e} + {e})")
        if bias
        else Formula("4 x d_model x d_model", f"4 x {e} x {e}")
    )
    if attentions == 2:
        attn = scaled(("2", 2), attn)
    ffn = Formula("2 x d_model x dim_feedforward", f"2 x {e} x {ff}")
    if bias:
        ffn = plus(ffn, Formula("dim_feedforward + d_model", f"{ff} + {e}"))
    norm_each = 2 if bias else 1
    lns = Formula(f"{norms * norm_each} x d_model", f"{norms * norm_each} x {e}")
    return plus(attn, ffn, lns)


@rule(nn.TransformerEncoderLayer)
def _encoder_layer(module: Any) -> ModuleNote:
    return note(
        {},
        _block(module, 1, 2),
        "holds no tensors itself: self-attention (4 projections of d_model x d_model), a "
        "feed-forward pair linear1/linear2 through dim_feedforward, and two LayerNorms",
    )


@rule(nn.TransformerDecoderLayer)
def _decoder_layer(module: Any) -> ModuleNote:
    return note(
        {},
        _block(module, 2, 3),
        "holds no tensors itself: self-attention and cross-attention over the encoder output "
        "(4 projections of d_model x d_model each), a feed-forward pair and three LayerNorms",
    )


def _stack(module: Any, kind: str) -> ModuleNote:
    layers = module.layers
    n = len(layers)
    per = _count(layers[0]) if n and _uniform(layers) else None
    if per is None:
        body = plus(*(_count(layer) for layer in layers))
    else:
        body = scaled(("num_layers", n), per)
    norm = _count(module.norm) if module.norm is not None else None
    text = f"{n} identical {kind} layers (deep copies, each with its own tensors)"
    if module.norm is not None:
        text += " and a final LayerNorm"
    return note({}, plus(body, norm), text)


@rule(nn.TransformerEncoder)
def _encoder(module: Any) -> ModuleNote:
    return _stack(module, "encoder")


@rule(nn.TransformerDecoder)
def _decoder(module: Any) -> ModuleNote:
    return _stack(module, "decoder")


@rule(nn.Transformer)
def _transformer(module: Any) -> ModuleNote:
    enc, dec = _count(module.encoder), _count(module.decoder)
    formula = None
    if enc is not None and dec is not None:
        formula = Formula("encoder + decoder", f"{value(enc.numeric)} + {value(dec.numeric)}")
    return note(
        {},
        formula,
        f"d_model={module.d_model}, nhead={module.nhead}: an encoder stack and a decoder stack, "
        "each ending in a LayerNorm",
    )
