"""Rules for transformers vision and speech modules that hold tensors directly.

Patch-embedding front ends with learned special tokens and positions (DeiT, DINOv2, BEiT,
BLIP, SigLIP), layer-scale vectors (DINOv2, BEiT, ConvNeXt), Swin's relative position bias
table, the contrastive models' learned temperature, and wav2vec 2.0 / HuBERT's mask vector.
Filed in :data:`paramscope.rules.torch.hf.HF_RULES` under their exact defining module and
class name. Shapes follow ``models/deit``, ``models/dinov2``, ``models/beit``,
``models/convnext``, ``models/swin``, ``models/siglip``, ``models/blip``,
``models/wav2vec2`` and ``models/hubert`` of transformers 5.
"""

from __future__ import annotations

from typing import Any

from paramscope.core.anatomy import Formula, Role
from paramscope.rules.torch._common import note, plus, times
from paramscope.rules.torch.hf import _children, _hf, _modeling, _own_and_children
from paramscope.rules.torch.registry import ModuleNote, TensorNote

__all__: list[str] = []

_TOKENS = {
    "cls_token": "the learned [CLS] token prepended to the patch sequence; its final state feeds the classifier",
    "class_embedding": "the learned class token prepended to the patch sequence",
    "distillation_token": (
        "DeiT's second learned token, trained to match a teacher network's prediction "
        "(distillation through attention)"
    ),
    "mask_token": "replaces the patches hidden in masked image modelling",
}
_POSITIONS = ("position_embeddings", "position_embedding")


def _num_patches(module: Any) -> int | None:
    for child in ("patch_embeddings", "patch_embedding"):
        n = getattr(getattr(module, child, None), "num_patches", None)
        if isinstance(n, int):
            return n
    n = getattr(module, "num_patches", None)
    return n if isinstance(n, int) else None


def _token_formula(shape: tuple[int, ...]) -> Formula:
    if len(shape) == 1:
        return times(("hidden_size", shape[0]))
    ones = " x ".join("1" for _ in shape[:-1])
    return Formula(f"{ones} x hidden_size", f"{ones} x {shape[-1]}")


def _positions_formula(module: Any, shape: tuple[int, ...]) -> Formula:
    n_pos, hidden = shape[-2], shape[-1]
    lead = " x ".join("1" for _ in shape[:-2])
    lead_s = f"{lead} x " if lead else ""
    patches = _num_patches(module)
    if patches is not None and 0 <= n_pos - patches <= 4:
        extra = n_pos - patches
        rows_s, rows_n = ("num_patches", str(patches)) if extra == 0 else (
            f"(num_patches + {extra})", f"({patches} + {extra})"
        )
        return Formula(f"{lead_s}{rows_s} x hidden_size", f"{lead_s}{rows_n} x {hidden}")
    return Formula(f"{lead_s}num_positions x hidden_size", f"{lead_s}{n_pos} x {hidden}")


@_hf(
    [
        (_modeling("deit"), "DeiTEmbeddings"),
        (_modeling("dinov2"), "Dinov2Embeddings"),
        (_modeling("beit"), "BeitEmbeddings"),
        (_modeling("blip"), "BlipVisionEmbeddings"),
    ]
)
def _patch_embeddings(module: Any) -> ModuleNote:
    tensors: dict[str, TensorNote] = {}
    for name, t in module._parameters.items():
        if t is None:
            continue
        shape = tuple(int(d) for d in t.shape)
        if name in _TOKENS:
            tensors[name] = TensorNote(_token_formula(shape), _TOKENS[name])
        elif name in _POSITIONS:
            tensors[name] = TensorNote(
                _positions_formula(module, shape),
                "one learned vector per position: every patch, plus the special tokens in front",
            )
    return _own_and_children(module, tensors, "patches projected to vectors, special tokens prepended, positions added")


@_hf([(_modeling("dinov2"), "Dinov2LayerScale")])
def _layer_scale(module: Any) -> ModuleNote:
    f = times(("hidden_size", int(module.lambda1.shape[0])))
    why = "layer scale: a learned per-channel factor on the residual branch, initialised small so deep stacks train stably"
    return note({"lambda1": TensorNote(f, why)}, f)


@_hf([(_modeling("beit"), "BeitLayer")])
def _beit_layer(module: Any) -> ModuleNote:
    tensors: dict[str, TensorNote] = {}
    for name, branch in (("lambda_1", "attention"), ("lambda_2", "feed-forward")):
        t = getattr(module, name, None)
        if t is not None:
            tensors[name] = TensorNote(
                times(("hidden_size", int(t.shape[0]))),
                f"layer scale of the {branch} branch: a learned per-channel factor, initialised small",
            )
    return _own_and_children(module, tensors)


@_hf([(_modeling("convnext"), "ConvNextLayer")])
def _convnext_layer(module: Any) -> ModuleNote:
    tensors: dict[str, TensorNote] = {}
    t = getattr(module, "layer_scale_parameter", None)
    if t is not None:
        tensors["layer_scale_parameter"] = TensorNote(
            times(("dim", int(t.shape[0]))),
            "layer scale: a learned per-channel factor on the block's output, initialised to 1e-6",
        )
    return _own_and_children(module, tensors)


@_hf([(_modeling("swin"), "SwinRelativePositionBias")])
def _swin_bias(module: Any) -> ModuleNote:
    rows, heads = (int(d) for d in module.relative_position_bias_table.shape)
    wh, ww = (int(d) for d in module.window_size)
    table = Formula(
        "(2 x window_h - 1) x (2 x window_w - 1) x num_heads", f"(2 x {wh} - 1) x (2 x {ww} - 1) x {heads}"
    )
    tensors = {
        "relative_position_bias_table": TensorNote(
            table, "one learned bias per head for every relative offset between two tokens of a window"
        ),
        "relative_position_index": TensorNote(
            Formula("(window_h x window_w) x (window_h x window_w)", f"({wh} x {ww}) x ({wh} x {ww})"),
            "for each pair of tokens in a window, the row of the bias table it uses; computed once, "
            "a non-persistent int64 buffer",
            Role.BUFFER,
        ),
    }
    return note(tensors, table)


def _single(t: Any) -> Formula:
    return Formula("a single value", " x ".join(str(int(d)) for d in t.shape) or "1")


@_hf(
    [(_modeling("siglip"), "SiglipModel"), (_modeling("blip"), "BlipModel")], module_formula=False
)
def _contrastive_model(module: Any) -> ModuleNote:
    tensors: dict[str, TensorNote] = {}
    if getattr(module, "logit_scale", None) is not None:
        tensors["logit_scale"] = TensorNote(
            _single(module.logit_scale),
            "a single learned number: the log of the temperature that scales image-text similarities",
        )
    if getattr(module, "logit_bias", None) is not None:
        tensors["logit_bias"] = TensorNote(
            _single(module.logit_bias), "SigLIP's learned bias added to every image-text logit before the sigmoid"
        )
    return note(tensors, None)


@_hf([(_modeling("siglip"), "SiglipTextEmbeddings"), (_modeling("siglip"), "SiglipVisionEmbeddings")])
def _siglip_embeddings(module: Any) -> ModuleNote:
    n = int(module.position_ids.shape[-1])
    tensors = {
        "position_ids": TensorNote(
            Formula("1 x num_positions", f"1 x {n}"),
            "the positions 0 .. num_positions - 1, precomputed; a non-persistent int64 buffer",
            Role.BUFFER,
        )
    }
    return note(tensors, plus(*_children(module)))


@_hf([(_modeling("siglip"), "SiglipMultiheadAttentionPoolingHead")])
def _siglip_pooling(module: Any) -> ModuleNote:
    f = _token_formula(tuple(int(d) for d in module.probe.shape))
    tensors = {"probe": TensorNote(f, "a learned query that attends over all patches to pool them into one vector")}
    return _own_and_children(module, tensors)


@_hf([(_modeling("wav2vec2"), "Wav2Vec2Model"), (_modeling("hubert"), "HubertModel")], module_formula=False)
def _speech_model(module: Any) -> ModuleNote:
    tensors: dict[str, TensorNote] = {}
    t = getattr(module, "masked_spec_embed", None)
    if t is not None:
        tensors["masked_spec_embed"] = TensorNote(
            times(("hidden_size", int(t.shape[0]))),
            "the learned vector that replaces masked time steps (SpecAugment-style masking in pre-training)",
        )
    return note(tensors, None)
