"""Rules for transformers encoder, vision and encoder-decoder modules that hold tensors directly.

BERT, RoBERTa and DistilBERT embeddings and heads, ViT and CLIP embeddings, T5 attention and
BART's positions and logits bias, filed in :data:`paramscope.rules.torch.hf.HF_RULES` under
their exact defining module and class name (see :mod:`paramscope.rules.torch.hf`). Shapes
follow ``models/bert``, ``models/roberta``, ``models/distilbert``, ``models/vit``,
``models/clip``, ``models/t5`` and ``models/bart`` of transformers 5.
"""

from __future__ import annotations

from typing import Any

from paramscope.core.anatomy import Formula, Role
from paramscope.rules.torch._common import note, plus, times
from paramscope.rules.torch.hf import _child, _hf, _modeling
from paramscope.rules.torch.registry import ModuleNote, TensorNote

__all__: list[str] = []


def _ids(name: str, n: int, what: str) -> TensorNote:
    return TensorNote(
        Formula("1 x max_position_embeddings", f"1 x {n}"),
        f"{what}; a non-persistent int64 buffer, not learned and not saved in checkpoints",
        Role.BUFFER,
    )


_TEXT_EMBEDDINGS = [
    ("bert", "BertEmbeddings"), ("roberta", "RobertaEmbeddings"), ("distilbert", "Embeddings"),
    ("xlm_roberta", "XLMRobertaEmbeddings"), ("albert", "AlbertEmbeddings"),
    ("electra", "ElectraEmbeddings"), ("ernie", "ErnieEmbeddings"), ("convbert", "ConvBertEmbeddings"),
    ("deberta_v2", "DebertaV2Embeddings"), ("squeezebert", "SqueezeBertEmbeddings"),
    ("layoutlm", "LayoutLMEmbeddings"), ("mobilebert", "MobileBertEmbeddings"),
]
#: The lookup tables of BERT-style embeddings, by attribute, with the config name of their rows.
_TABLES = (
    ("word_embeddings", "vocab_size"),
    ("position_embeddings", "max_position_embeddings"),
    ("token_type_embeddings", "type_vocab_size"),
)


@_hf(
    [(_modeling(family), name) for family, name in _TEXT_EMBEDDINGS]
    + [("transformers.models.blip.modeling_blip_text", "BlipTextEmbeddings")]
)
def _text_embeddings(module: Any) -> ModuleNote:
    import torch.nn as nn

    tensors: dict[str, TensorNote] = {}
    if getattr(module, "position_ids", None) is not None:
        n = int(module.position_ids.shape[-1])
        tensors["position_ids"] = _ids(
            "position_ids", n, "the positions 0 .. max_position_embeddings - 1, precomputed so forward can slice them"
        )
    if getattr(module, "token_type_ids", None) is not None:
        n = int(module.token_type_ids.shape[-1])
        tensors["token_type_ids"] = _ids("token_type_ids", n, "zeros used as the segment ids when none are given")
    tables = [(attr, rows, getattr(module, attr, None)) for attr, rows in _TABLES]
    present = [(attr, rows, t) for attr, rows, t in tables if isinstance(t, nn.Embedding)]
    dims = {t.embedding_dim for _, _, t in present}
    terms: list[Formula | None] = []
    if len(dims) == 1:
        (dim,) = dims
        terms.append(
            Formula(
                f"({' + '.join(rows for _, rows, _ in present)}) x embedding_size",
                f"({' + '.join(str(t.num_embeddings) for _, _, t in present)}) x {dim}",
            )
        )
        counted = {attr for attr, _, _ in present}
    else:
        counted = set()
    terms += [_child(module, name) for name in module._modules if name not in counted]
    return note(
        tensors, plus(*terms),
        "word, position and segment tables looked up and summed per token, then normalised",
    )


@_hf(
    [(_modeling("bert"), "BertLMPredictionHead"), (_modeling("roberta"), "RobertaLMHead")],
    module_formula=False,
)
def _lm_head_bias(module: Any) -> ModuleNote:
    tensors = {
        "bias": TensorNote(
            times(("vocab_size", int(module.bias.shape[0]))),
            "an output bias per vocabulary entry; decoder.bias is this same tensor, so it is "
            "counted once",
        )
    }
    return note(tensors, None, "decoder.weight is usually tied to the input word embeddings")


@_hf([(_modeling("vit"), "ViTEmbeddings")])
def _vit_embeddings(module: Any) -> ModuleNote:
    h = int(module.cls_token.shape[-1])
    n_pos = int(module.position_embeddings.shape[1])
    tensors = {
        "cls_token": TensorNote(
            Formula("1 x 1 x hidden_size", f"1 x 1 x {h}"),
            "the learned [CLS] token prepended to the patch sequence; its final state feeds the classifier",
        ),
        "position_embeddings": TensorNote(
            Formula("1 x (num_patches + 1) x hidden_size", f"1 x ({n_pos - 1} + 1) x {h}"),
            "one learned position vector per patch plus one for [CLS]; num_patches = (image_size / patch_size)^2",
        ),
    }
    terms = [tensors["cls_token"].formula, tensors["position_embeddings"].formula]
    if getattr(module, "mask_token", None) is not None:
        tensors["mask_token"] = TensorNote(
            Formula("1 x 1 x hidden_size", f"1 x 1 x {h}"),
            "replaces masked patches (use_mask_token=True, for masked image modelling)",
        )
        terms.append(tensors["mask_token"].formula)
    return note(tensors, plus(*terms, _child(module, "patch_embeddings")))


@_hf([(_modeling("clip"), "CLIPVisionEmbeddings")])
def _clip_vision_embeddings(module: Any) -> ModuleNote:
    h = int(module.class_embedding.shape[0])
    n_pos = int(module.position_ids.shape[-1])
    tensors = {
        "class_embedding": TensorNote(
            times(("hidden_size", h)), "the learned class token prepended to the patch sequence"
        ),
        "position_ids": TensorNote(
            Formula("1 x (num_patches + 1)", f"1 x ({n_pos - 1} + 1)"),
            "the positions 0 .. num_patches, precomputed; a non-persistent int64 buffer",
            Role.BUFFER,
        ),
    }
    return note(
        tensors,
        plus(tensors["class_embedding"].formula, _child(module, "patch_embedding"),
             _child(module, "position_embedding")),
    )


@_hf([(_modeling("clip"), "CLIPTextEmbeddings")])
def _clip_text_embeddings(module: Any) -> ModuleNote:
    n = int(module.position_ids.shape[-1])
    tensors = {"position_ids": _ids("position_ids", n, "the positions 0 .. max_position_embeddings - 1, precomputed")}
    return note(tensors, plus(_child(module, "token_embedding"), _child(module, "position_embedding")))


@_hf([(_modeling("clip"), "CLIPModel")], module_formula=False)
def _clip_model(module: Any) -> ModuleNote:
    tensors = {
        "logit_scale": TensorNote(
            Formula("a single value", " x ".join(str(int(d)) for d in module.logit_scale.shape) or "1"),
            "a single learned number: the log of the temperature that scales image-text similarities",
        )
    }
    return note(tensors, None)


@_hf([(_modeling("bart"), "BartForConditionalGeneration")], module_formula=False)
def _bart_lm(module: Any) -> ModuleNote:
    tensors = {
        "final_logits_bias": TensorNote(
            Formula("1 x vocab_size", f"1 x {int(module.final_logits_bias.shape[-1])}"),
            "a fixed bias added to the output logits: a persistent buffer (saved in checkpoints), "
            "not trained",
            Role.BUFFER,
        )
    }
    return note(tensors, None)


@_hf([(_modeling("bart"), "BartLearnedPositionalEmbedding")])
def _bart_positions(module: Any) -> ModuleNote:
    d = module.embedding_dim
    offset = getattr(module, "offset", 2)
    w = Formula("(max_position_embeddings + 2) x d_model", f"({module.num_embeddings - offset} + {offset}) x {d}")
    why = (
        "one learned vector per position; BART shifts position ids by 2 (a fairseq legacy), "
        "so the table has 2 rows more than max_position_embeddings"
    )
    return note({"weight": TensorNote(w, why)}, w)


@_hf([(_modeling("t5"), "T5Attention"), (_modeling("mt5"), "MT5Attention")])
def _t5_attention(module: Any) -> ModuleNote:
    d, inner = module.d_model, module.inner_dim
    proj = Formula("4 x d_model x (num_heads x d_kv)", f"4 x {d} x {inner}")
    text = "four bias-free projections q, k, v, o; T5 does not scale the query-key product"
    rel = None
    if module.has_relative_attention_bias:
        rel = Formula(
            "relative_attention_num_buckets x num_heads",
            f"{module.relative_attention_num_buckets} x {module.n_heads}",
        )
        text += (
            "; relative_attention_bias is an Embedding with one learned bias per (distance bucket, "
            "head), added to the attention scores; only the first layer of each stack has it and "
            "the other layers reuse its output"
        )
    return note({}, plus(proj, rel), text)
