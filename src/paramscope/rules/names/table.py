"""The name table: which stored tensor names mean what, most specific first.

Each :class:`NameRule` matches the tensor's own name exactly, optionally the *tokens* of its
module's name (``post_attention_layernorm`` has the tokens ``post``, ``attention``,
``layernorm``), its rank and its siblings; :func:`~paramscope.rules.names.explain_name` uses
the first rule that matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from paramscope.core.anatomy import Role
from paramscope.rules.names.formulas import FormulaFn, keras_kernel, named, torch_conv

__all__ = ["NameRule", "RULES", "NORM_TOKENS", "TOKEN_TABLES", "POSITION_TABLES", "GPT2_CONV1D"]


@dataclass(frozen=True, slots=True)
class NameRule:
    """One pattern of the name table.

    Attributes:
        tensors: the tensor's own (last) name component, matched exactly.
        pattern: or a regular expression the whole component must match (``None``: no pattern).
        role: the role it gives.
        is_param: whether the framework the name comes from counts it as a parameter.
        why: one sentence saying what the tensor is.
        layer_type: the type of the owning layer it reveals (``""``: says nothing).
        module: tokens of which at least one must be in the owning module's last name
            component (empty: any module).
        module_names: exact last module components, one of which must match (empty: any).
        ndim: accepted ranks (empty: any).
        siblings: names of which at least one must be stored beside it (empty: no condition).
        formula: gives the count's formula from the shape.
    """

    tensors: frozenset[str]
    role: Role
    is_param: bool
    why: str
    layer_type: str = ""
    module: frozenset[str] = frozenset()
    module_names: frozenset[str] = frozenset()
    ndim: frozenset[int] = frozenset()
    siblings: frozenset[str] = frozenset()
    formula: FormulaFn | None = None
    pattern: re.Pattern[str] | None = None


def _r(
    tensors: str,
    role: Role,
    why: str,
    *,
    is_param: bool = True,
    layer_type: str = "",
    module: str = "",
    module_names: frozenset[str] = frozenset(),
    ndim: Iterable[int] = (),
    siblings: str = "",
    formula: FormulaFn | None = None,
    pattern: str = "",
) -> NameRule:
    return NameRule(
        frozenset(tensors.split()),
        role,
        is_param,
        why,
        layer_type,
        frozenset(module.split()),
        module_names,
        frozenset(ndim),
        frozenset(siblings.split()),
        formula,
        re.compile(pattern) if pattern else None,
    )


#: PyTorch's recurrent layers name their weights ``weight_ih_l{k}`` (layer k), with
#: ``_reverse`` for the backward direction of a bidirectional layer; the cells (``LSTMCell``)
#: drop the layer suffix. Each holds ``gates x hidden_size`` rows: 4 gates for LSTM (input,
#: forget, cell, output), 3 for GRU (reset, update, new), 1 for a plain RNN.
_RNN_SUFFIX = r"(_l\d+(_reverse)?)?"
_RNN_GATES = (("lstm", "LSTM", "4"), ("gru", "GRU", "3"), ("rnn", "RNN", "1"), ("", "", "gates"))


def _recurrent_rules() -> tuple[NameRule, ...]:
    rules: list[NameRule] = []
    for token, layer_type, gates in _RNN_GATES:
        rows = f"{gates} x hidden_size"
        rules += [
            _r("", _T, "input-to-hidden weights of a recurrent layer, one row block per gate",
               layer_type=layer_type, module=token, ndim=(2,), pattern="weight_ih" + _RNN_SUFFIX,
               formula=named(rows, "input_size")),
            _r("", _T, "hidden-to-hidden (recurrent) weights: map the previous state into the gates",
               layer_type=layer_type, module=token, ndim=(2,), pattern="weight_hh" + _RNN_SUFFIX,
               formula=named(rows, "hidden_size (or proj_size)")),
            _r("", _T, "bias of the input-to-hidden product, one per gate unit", layer_type=layer_type,
               module=token, ndim=(1,), pattern="bias_ih" + _RNN_SUFFIX, formula=named(rows)),
            _r("", _T, "bias of the hidden-to-hidden product, one per gate unit", layer_type=layer_type,
               module=token, ndim=(1,), pattern="bias_hh" + _RNN_SUFFIX, formula=named(rows)),
            _r("", _T, "projection of the LSTM hidden state to proj_size (LSTM with proj_size > 0)",
               layer_type=layer_type, module=token, ndim=(2,), pattern="weight_hr" + _RNN_SUFFIX,
               formula=named("proj_size", "hidden_size")),
        ]
    return tuple(rules)


#: Tokens of a module name that mark a normalisation layer (``input_layernorm``, ``ln_f``, ``bn1``).
NORM_TOKENS = "norm layernorm rmsnorm groupnorm batchnorm instancenorm ln bn gn"

#: Last module components that hold a token-embedding table.
TOKEN_TABLES = frozenset(
    "embed_tokens wte word_embeddings tok_embeddings token_embd shared embed_in "
    "embeddings embedding emb token_embedding embed embedder tok_emb".split()
)
#: Last module components that hold a learned position or segment table.
POSITION_TABLES = frozenset(
    "wpe position_embeddings embed_positions pos_embd position_embedding "
    "token_type_embeddings token_types relative_attention_bias".split()
)
#: GPT-2's ``Conv1D`` modules, which store their weight ``(in, out)``, transposed from ``nn.Linear``.
GPT2_CONV1D = frozenset("c_attn c_proj c_fc q_attn".split())

_T, _S, _B, _F = Role.TRAINABLE, Role.STATISTIC, Role.BUFFER, Role.FROZEN

#: The name table, most specific first; :func:`explain_name` uses the first match.
RULES: tuple[NameRule, ...] = (
    # PyTorch buffers: stored in state dicts, never counted by ``parameters()``.
    _r("running_mean running_var", _S, "running average of the batch statistics, updated in "
       "training without gradient; a buffer, not a parameter", is_param=False,
       layer_type="BatchNorm", formula=named("num_features")),
    _r("num_batches_tracked", _B, "count of training batches seen by BatchNorm; a buffer",
       is_param=False, layer_type="BatchNorm"),
    _r("inv_freq", _B, "rotary position embedding frequencies, computed from the config; a buffer",
       is_param=False, formula=named("head_dim/2")),
    _r("position_ids token_type_ids", _B, "constant index table kept with the model; a buffer",
       is_param=False),
    _r("masked_bias", _B, "constant fill value of the causal attention mask; a buffer", is_param=False),
    _r("bias", _B, "GPT-2's causal attention mask (a lower-triangular constant); a buffer",
       is_param=False, module="attn attention", ndim=(4,)),
    _r("cos_cached sin_cached freqs_cis relative_position_index", _B,
       "precomputed position table kept with the model; a buffer", is_param=False),
    # BART, Marian, Pegasus: a registered buffer of zeros added to the logits, not a parameter.
    _r("final_logits_bias", _B, "constant bias added to the output logits (registered as a buffer, "
       "not trained)", is_param=False),
    # Reparametrised weights (torch.nn.utils). weight_norm stores weight = g * v / ||v||: g (the
    # magnitude, one per output row) and v (the direction) are the parameters, the weight is
    # recomputed. spectral_norm keeps the original weight as a parameter and the power-iteration
    # vectors u and v as buffers; weight_v means v of weight_norm beside weight_g, u's partner
    # beside weight_orig.
    _r("weight_g", _T, "weight_norm magnitude g (one per output row); the weight is g * v / ||v||"),
    _r("weight_v", _T, "weight_norm direction v; the weight is g * v / ||v||", siblings="weight_g"),
    _r("weight_orig", _T, "spectral_norm's original weight; the used weight is it divided by its "
       "largest singular value"),
    _r("weight_u weight_v", _B, "spectral_norm power-iteration vector, updated without gradient; "
       "a buffer", is_param=False, siblings="weight_orig"),
    _r("original0", _T, "weight_norm magnitude g (parametrizations.<name>.original0); the weight "
       "is g * v / ||v||", siblings="original1"),
    _r("original1", _T, "weight_norm direction v (parametrizations.<name>.original1); the weight "
       "is g * v / ||v||", siblings="original0"),
    _r("original", _T, "original tensor of a parametrization (torch.nn.utils.parametrize), from "
       "which the used tensor is computed"),
    _r("_u _v", _B, "spectral_norm power-iteration vector (parametrizations), updated without "
       "gradient; a buffer", is_param=False),
    # PyTorch recurrent layers (nn.LSTM, nn.GRU, nn.RNN and their cells).
    *_recurrent_rules(),
    # Quantised checkpoints. GPTQ and AWQ keep packed weights as buffers of their QuantLinear
    # (not parameters); FP8 scales are frozen parameters; bitsandbytes 4-bit keeps its
    # quantisation state beside the packed weight, outside named_parameters().
    _r("qweight", _F, "packed quantised weight (GPTQ/AWQ): each int32 holds 32/bits values, so "
       "the logical weight count is larger than the stored elements; a buffer", is_param=False,
       layer_type="QuantLinear"),
    _r("qzeros scales g_idx", _F, "quantisation zero points, scales or group index of the packed "
       "weight (GPTQ/AWQ); a buffer", is_param=False, siblings="qweight", layer_type="QuantLinear"),
    _r("weight_scale weight_scale_inv input_scale", _F, "scale of an FP8-quantised weight or "
       "activation, fixed after quantisation"),
    _r("absmax quant_map nested_absmax nested_quant_map bitsandbytes__nf4 bitsandbytes__fp4 SCB",
       _F, "bitsandbytes quantisation state of the weight beside it; not a parameter",
       is_param=False),
    # llama.cpp's rotary frequency factors: constants from the config, stored as a tensor.
    _r("weight", _B, "rotary embedding frequency factors, fixed by the config; not learned",
       is_param=False, module_names=frozenset("rope_freqs rope_factors_long rope_factors_short".split())),
    # Keras BatchNormalization: moving statistics are non-trainable *parameters* in Keras.
    _r("moving_mean moving_variance", _S, "running average of the batch statistics, updated in "
       "training without gradient; Keras counts it as a non-trainable parameter",
       layer_type="BatchNormalization", formula=named("features")),
    _r("gamma", _T, "normalisation scale, one per feature", layer_type="Normalization",
       formula=named("features")),
    _r("beta", _T, "normalisation shift, one per feature", layer_type="Normalization",
       formula=named("features")),
    # BatchNorm in PyTorch: affine weight and bias beside running statistics.
    _r("weight", _T, "BatchNorm scale (gamma), one per channel", layer_type="BatchNorm",
       ndim=(1,), siblings="running_mean running_var", formula=named("num_features")),
    _r("bias", _T, "BatchNorm shift (beta), one per channel", layer_type="BatchNorm",
       ndim=(1,), siblings="running_mean running_var", formula=named("num_features")),
    # Normalisation layers named as such.
    _r("weight scale", _T, "normalisation scale, one per feature", layer_type="LayerNorm",
       module=NORM_TOKENS, ndim=(1,), siblings="bias", formula=named("normalized_shape")),
    _r("weight scale", _T, "normalisation scale, one per feature (no shift: RMSNorm style)",
       layer_type="RMSNorm", module=NORM_TOKENS, ndim=(1,), formula=named("normalized_shape")),
    _r("bias", _T, "normalisation shift, one per feature", layer_type="LayerNorm",
       module=NORM_TOKENS, ndim=(1,), formula=named("normalized_shape")),
    # Transformer Engine's LayerNormLinear / LayerNormMLP (Megatron-core's fused linear_qkv and
    # linear_fc1) keep the preceding norm's parameters on the linear module.
    _r("layer_norm_weight", _T, "scale of the layer norm fused into this linear layer (Transformer Engine's "
       "LayerNormLinear), one per input feature", ndim=(1,), formula=named("normalized_shape")),
    _r("layer_norm_bias", _T, "shift of the layer norm fused into this linear layer (Transformer Engine's "
       "LayerNormLinear), one per input feature", ndim=(1,), formula=named("normalized_shape")),
    # Embedding tables.
    _r("weight embeddings", _T, "token embedding table: one learned vector per vocabulary entry",
       layer_type="Embedding", module_names=TOKEN_TABLES, ndim=(2,),
       formula=named("num_embeddings", "embedding_dim")),
    _r("weight embeddings", _T, "learned position (or segment) embedding table: one vector per "
       "position", layer_type="Embedding", module_names=POSITION_TABLES, ndim=(2,),
       formula=named("num_embeddings", "embedding_dim")),
    # GPT-2 Conv1D: a linear layer whose weight is stored transposed.
    _r("weight", _T, "linear map stored (in, out) by GPT-2's Conv1D, transposed from nn.Linear",
       layer_type="Conv1D", module_names=GPT2_CONV1D, ndim=(2,),
       formula=named("in_features", "out_features")),
    _r("bias", _T, "bias of GPT-2's Conv1D, one per output feature", layer_type="Conv1D",
       module_names=GPT2_CONV1D, ndim=(1,), formula=named("out_features")),
    # Mixture-of-experts weights: every expert's matrix stacked in one tensor.
    _r("weight", _T, "the experts' linear maps stacked in one tensor, one (out, in) matrix each",
       layer_type="Experts", module_names=frozenset("ffn_gate_exps ffn_up_exps ffn_down_exps".split()),
       ndim=(3,), formula=named("n_experts", "out_features", "in_features")),
    # PyTorch nn.Linear / nn.ConvNd.
    _r("weight", _T, "linear map, stored (out, in)", layer_type="Linear", ndim=(2,),
       formula=named("out_features", "in_features")),
    _r("weight", _T, "convolution kernel, stored (out, in/groups, *kernel)", layer_type="Conv",
       ndim=(3, 4, 5), formula=torch_conv),
    _r("bias", _T, "bias, one per output feature or channel", ndim=(1,),
       formula=named("out_features")),
    # Keras names.
    _r("kernel", _T, "Dense kernel, stored (in, out) by Keras", layer_type="Dense", ndim=(2,),
       formula=keras_kernel),
    _r("kernel", _T, "convolution kernel, stored (*kernel, in, out) by Keras", layer_type="Conv",
       ndim=(3, 4, 5), formula=keras_kernel),
    _r("recurrent_kernel", _T, "recurrent kernel: maps the previous state into the gates",
       formula=named("units", "gates x units")),
    _r("depthwise_kernel", _T, "depthwise convolution kernel, one filter per input channel"),
    _r("pointwise_kernel", _T, "pointwise (1x1) convolution kernel mixing channels"),
    # Parameters held directly by a module rather than by a Linear/Embedding inside it.
    _r("cls_token class_embedding mask_token dist_token register_tokens", _T,
       "learned token vector(s) added to the sequence (class, mask or register token)"),
    _r("position_embeddings position_embedding pos_embed absolute_pos_embed", _T,
       "learned position embeddings, one vector per position"),
    _r("gate_up_proj gate_proj up_proj down_proj w1 w2 w3", _T,
       "the experts' linear maps stacked in one tensor, one matrix each", layer_type="Experts",
       ndim=(3,), formula=named("n_experts", "out_features", "in_features")),
    _r("A_log D dt_bias", _T, "state-space parameter of a Mamba mixer (A as log, skip D, "
       "time-step bias)"),
    _r("logit_scale logit_bias", _T, "learned temperature (or bias) of contrastive similarity logits"),
    # Anything else called weight or bias is a learned parameter in every framework's convention.
    _r("weight bias kernel", _T, "a learned tensor"),
)
