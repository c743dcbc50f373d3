"""Rules for Hugging Face ``transformers`` modules that hold tensors directly.

Nothing here imports ``transformers``. Each rule is filed under the exact module and class
name that defines it; a resolver matches a class when it is first met, and only after
checking that the name really resolves to that class object in the already imported module.
A model built by ``transformers`` has necessarily imported its modeling module, so reading a
plain ``torch.nn`` model never pays for importing ``transformers``.

This module holds the resolver and the decoder-side rules: GPT-2's ``Conv1D``
(``pytorch_utils.py``), the RMSNorms and rotary embeddings of ``models/llama`` and the
families generated from it, and Mixtral's router and experts. Encoder, vision and
encoder-decoder rules are in :mod:`paramscope.rules.torch.hf_encoders`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paramscope.core.anatomy import Formula, Role
from paramscope.rules.torch._common import NO_PARAMS, guarded, note, plus, times
from paramscope.rules.torch.registry import ModuleNote, TensorNote, TorchRule, register_torch_resolver, resolver_by_name

__all__ = ["HF_RULES"]

#: (defining module, class name) -> rule.
HF_RULES: dict[tuple[str, str], TorchRule] = {}

# Decoder-only families whose RMSNorm and rotary embedding share Llama's layout.
_LLAMA_LIKE = {
    "llama": "Llama", "mistral": "Mistral", "mixtral": "Mixtral", "qwen2": "Qwen2",
    "qwen2_moe": "Qwen2Moe", "qwen3": "Qwen3", "qwen3_moe": "Qwen3Moe", "phi3": "Phi3",
    "olmo2": "Olmo2", "granite": "Granite", "deepseek_v3": "DeepseekV3", "smollm3": "SmolLM3",
    "olmoe": "Olmoe",
}
_GEMMA = {"gemma": "Gemma", "gemma2": "Gemma2", "gemma3": "Gemma3"}
_ROTARY_ONLY = {
    "starcoder2": "Starcoder2", "phi": "Phi", "falcon": "Falcon", "gpt_neox": "GPTNeoX",
    "cohere": "Cohere", "mllama": "Mllama",
}
_MOE = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "jamba", "deepseek_v3"]
_MOE_PREFIX = {"mixtral": "Mixtral", "qwen2_moe": "Qwen2Moe", "qwen3_moe": "Qwen3Moe", "olmoe": "Olmoe",
               "jamba": "Jamba", "deepseek_v3": "DeepseekV3"}


def _modeling(family: str) -> str:
    return f"transformers.models.{family}.modeling_{family}"


def _hf(
    pairs: list[tuple[str, str]], *, module_formula: bool = True
) -> Callable[[TorchRule], TorchRule]:
    def deco(fn: TorchRule) -> TorchRule:
        for pair in pairs:
            HF_RULES[pair] = guarded(fn, module_formula=module_formula)
        return fn

    return deco


register_torch_resolver(resolver_by_name(HF_RULES))


def _params(module: Any) -> int:
    return sum(int(p.numel()) for p in module.parameters())


def _child(module: Any, name: str) -> Formula | None:
    """A term for a child's parameters, by name, or ``None`` when it has none."""
    child = getattr(module, name, None)
    if child is None or not _params(child):
        return None
    return Formula(name, str(_params(child)))


def _children(module: Any) -> list[Formula | None]:
    """A term per child module, in order (see :func:`_child`)."""
    return [_child(module, name) for name in module._modules]


def _own_and_children(module: Any, tensors: dict[str, TensorNote], text: str = "") -> ModuleNote:
    """A module counted as its own ``tensors`` plus each child's parameters."""
    return note(tensors, plus(*(n.formula for n in tensors.values()), *_children(module)), text)


@_hf([("transformers.pytorch_utils", "Conv1D")])
def _conv1d(module: Any) -> ModuleNote:
    w = times(("in_features (nx)", module.nx), ("out_features (nf)", module.nf))
    tensors = {
        "weight": TensorNote(
            w,
            "stored (in, out), the transpose of nn.Linear's (out, in): GPT-2 computes x W + b; "
            "despite the name this is a dense layer, not a convolution",
        ),
        "bias": TensorNote(times(("out_features (nf)", module.nf)), "one offset per output feature"),
    }
    return note(tensors, plus(w, tensors["bias"].formula), "GPT-2's dense layer (transformers Conv1D)")


def _norm_size(module: Any) -> Formula:
    return times(("hidden_size", int(module.weight.shape[0])))


@_hf(
    [(_modeling(f), f"{p}RMSNorm") for f, p in _LLAMA_LIKE.items()]
    + [(_modeling("t5"), "T5LayerNorm"), (_modeling("mt5"), "MT5LayerNorm"),
       (_modeling("umt5"), "UMT5LayerNorm"), (_modeling("longt5"), "LongT5LayerNorm"),
       (_modeling("switch_transformers"), "SwitchTransformersLayerNorm"),
       (_modeling("jamba"), "JambaRMSNorm"), (_modeling("mamba"), "MambaRMSNorm"),
       (_modeling("mllama"), "MllamaTextRMSNorm")]
)
def _rms_norm(module: Any) -> ModuleNote:
    w = _norm_size(module)
    return note(
        {"weight": TensorNote(w, "a learned scale per feature (RMSNorm has no bias)")},
        w,
        "RMSNorm: divides by the root mean square without subtracting the mean, then scales; "
        "no bias, so half the tensors of nn.LayerNorm",
    )


@_hf([(_modeling(f), f"{p}RMSNorm") for f, p in _GEMMA.items()])
def _gemma_norm(module: Any) -> ModuleNote:
    w = _norm_size(module)
    return note(
        {
            "weight": TensorNote(
                w, "a learned scale per feature, stored as an offset: the output is multiplied by "
                "(1 + weight), so it starts at zero"
            )
        },
        w,
        "RMSNorm (Gemma's form): no bias, and the scale is 1 + weight",
    )


def _rotary_dim(module: Any, n: int) -> Formula:
    cfg = getattr(module, "config", None)
    head_dim = None
    try:
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads  # type: ignore[union-attr]
    except (AttributeError, TypeError, ZeroDivisionError):
        head_dim = None
    if isinstance(head_dim, int) and head_dim == 2 * n:
        return Formula("head_dim / 2", f"{head_dim} / 2")
    return Formula("rotary_dim / 2", f"{2 * n} / 2")


@_hf(
    [(_modeling(f), f"{p}RotaryEmbedding") for f, p in {**_LLAMA_LIKE, **_GEMMA, **_ROTARY_ONLY}.items()]
)
def _rotary(module: Any) -> ModuleNote:
    tensors: dict[str, TensorNote] = {}
    n = int(module.inv_freq.shape[0])
    f = _rotary_dim(module, n)
    tensors["inv_freq"] = TensorNote(
        f,
        "the rotary position frequencies 1 / base^(2i / d), one per pair of head features, "
        "computed from the config; a non-persistent buffer, so checkpoints do not store it",
        Role.BUFFER,
    )
    if getattr(module, "original_inv_freq", None) is not None:
        tensors["original_inv_freq"] = TensorNote(
            f,
            "a copy of inv_freq kept so dynamic RoPE scaling can restore the original "
            "frequencies; also non-persistent",
            Role.BUFFER,
        )
    return note(tensors, NO_PARAMS, "rotary position embedding: no parameters, only frequency buffers")


@_hf([(_modeling(f), f"{_MOE_PREFIX[f]}Experts") for f in _MOE])
def _experts(module: Any) -> ModuleNote:
    e, two_i, h = (int(d) for d in module.gate_up_proj.shape)
    i = two_i // 2
    gate_up = Formula("num_experts x 2 x intermediate_size x hidden_size", f"{e} x 2 x {i} x {h}")
    down = Formula("num_experts x hidden_size x intermediate_size", f"{e} x {h} x {i}")
    tensors = {
        "gate_up_proj": TensorNote(
            gate_up, "every expert's gate and up projections, stacked into one 3-D tensor"
        ),
        "down_proj": TensorNote(down, "every expert's down projection, stacked"),
    }
    return note(
        tensors, plus(gate_up, down),
        f"{e} experts stored together; each token uses only the top-k of them, so the "
        "parameters used per token are a fraction of these",
    )


@_hf([(_modeling(f), f"{_MOE_PREFIX[f]}TopKRouter") for f in _MOE if f != "deepseek_v3"])
def _router(module: Any) -> ModuleNote:
    w = times(("num_experts", int(module.weight.shape[0])), ("hidden_size", int(module.weight.shape[1])))
    return note({"weight": TensorNote(w, "scores every expert for each token; the top-k are used")}, w)


@_hf([(_modeling("deepseek_v3"), "DeepseekV3TopkRouter")])
def _deepseek_router(module: Any) -> ModuleNote:
    e, h = (int(d) for d in module.weight.shape)
    w = times(("n_routed_experts", e), ("hidden_size", h))
    tensors = {"weight": TensorNote(w, "scores every routed expert for each token; the top-k are used")}
    if getattr(module, "e_score_correction_bias", None) is not None:
        tensors["e_score_correction_bias"] = TensorNote(
            times(("n_routed_experts", e)),
            "a per-expert bias added to the scores only when choosing experts, adjusted during "
            "training to balance the load (not by gradient); saved in checkpoints",
            Role.BUFFER,
        )
    return note(tensors, w)


@_hf([(_modeling("cohere"), "CohereLayerNorm")])
def _bias_free_layer_norm(module: Any) -> ModuleNote:
    w = _norm_size(module)
    return note(
        {"weight": TensorNote(w, "a learned scale per feature")},
        w,
        "a LayerNorm without bias: it subtracts the mean and divides by the standard deviation, then scales",
    )


@_hf([(_modeling("gptj"), "GPTJRotaryEmbedding"), (_modeling("codegen"), "CodeGenRotaryEmbedding")])
def _sincos_table(module: Any) -> ModuleNote:
    n, d = (int(x) for x in module.embed_positions.shape)
    tensors = {
        "embed_positions": TensorNote(
            Formula("max_position_embeddings x rotary_dim", f"{n} x {d}"),
            "the sin and cos of every position for rotary embeddings, precomputed; a "
            "non-persistent buffer, not learned and not saved in checkpoints",
            Role.BUFFER,
        )
    }
    return note(tensors, NO_PARAMS)


@_hf(
    [
        (_modeling("xglm"), "XGLMSinusoidalPositionalEmbedding"),
        (_modeling("m2m_100"), "M2M100SinusoidalPositionalEmbedding"),
        (_modeling("nllb_moe"), "NllbMoeSinusoidalPositionalEmbedding"),
    ]
)
def _sinusoidal(module: Any) -> ModuleNote:
    rows, d = (int(x) for x in module.weights.shape)
    offset = int(getattr(module, "offset", 0))
    rows_s, rows_n = ("(num_positions + offset)", f"({rows - offset} + {offset})") if offset else (
        "num_positions", str(rows)
    )
    tensors = {
        "weights": TensorNote(
            Formula(f"{rows_s} x embedding_dim", f"{rows_n} x {d}"),
            "fixed sinusoidal position vectors, computed from sin and cos, not learned; a "
            "non-persistent buffer",
            Role.BUFFER,
        )
    }
    return note(tensors, NO_PARAMS)


def _causal_mask(t: Any) -> TensorNote:
    n = int(t.shape[-1])
    lead = " x ".join("1" for _ in t.shape[:-2])
    lead = f"{lead} x " if lead else ""
    return TensorNote(
        Formula(f"{lead}max_position_embeddings x max_position_embeddings", f"{lead}{n} x {n}"),
        "the causal mask: a lower-triangular boolean matrix over all positions, precomputed; a "
        "non-persistent buffer",
        Role.BUFFER,
    )


@_hf([(_modeling("gpt_neo"), "GPTNeoSelfAttention")])
def _gpt_neo_attention(module: Any) -> ModuleNote:
    return note({"bias": _causal_mask(module.bias)}, plus(*_children(module)))


@_hf([(_modeling("gpt_bigcode"), "GPTBigCodeModel")], module_formula=False)
def _gpt_bigcode_model(module: Any) -> ModuleNote:
    return note({"bias": _causal_mask(module.bias)}, None)


@_hf([(_modeling("mamba"), "MambaMixer"), (_modeling("jamba"), "JambaMambaMixer")])
def _mamba_mixer(module: Any) -> ModuleNote:
    inner, state = (int(d) for d in module.A_log.shape)
    a = times(("intermediate_size", inner), ("state_size", state))
    d = times(("intermediate_size", inner))
    tensors = {
        "A_log": TensorNote(
            a, "the state-space transition rates, stored as log(-A) so that A stays negative; one per "
            "channel and state dimension",
        ),
        "D": TensorNote(d, "the skip term: a learned per-channel scale of the input added to the scan's output"),
    }
    return _own_and_children(module, tensors, "a selective state-space (Mamba) block")
