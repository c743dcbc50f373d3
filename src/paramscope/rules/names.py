"""What a tensor stored under a flat name is, from the name alone: the explainer for checkpoints.

Checkpoint files (safetensors, GGUF, PyTorch state dicts, Keras weight files) keep a flat list
of named tensors and nothing else. The naming conventions of the frameworks say a lot: a 2-D
``weight`` beside a ``bias`` is a linear map stored ``(out, in)``, a ``running_mean`` is a
BatchNorm statistic kept as a buffer, ``blk.3.attn_q.weight`` is a GGUF query projection.

The rules are data (:data:`RULES`): each matches the tensor's own name exactly, optionally the
*tokens* of its module's name (``post_attention_layernorm`` has the tokens ``post``,
``attention``, ``layernorm``), its rank and its siblings. The first rule that matches explains
the tensor. A name no rule knows gets :attr:`Role.UNKNOWN`; its count stays exact, because a
checkpoint lists every stored element.

:func:`anatomy_from_flat` turns a reader's flat tensors into a whole :class:`Anatomy`, with
shared storage (tied weights) detected and explained; every file reader calls it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from types import MappingProxyType

from paramscope.core.anatomy import Anatomy, Formula, Layer, Role, Tensor
from paramscope.core.tree import Explanation, FlatTensor, build_tree, check_names

__all__ = [
    "NameRule",
    "RULES",
    "PURPOSE",
    "explain_name",
    "name_tokens",
    "natural_key",
    "anatomy_from_flat",
    "CHECKPOINT_NOTE",
    "map_tensors",
]

Shape = tuple[int | None, ...]
FormulaFn = Callable[[Shape], Formula | None]


def _dims(shape: Shape, names: Sequence[str]) -> Formula | None:
    if len(shape) != len(names) or any(d is None for d in shape):
        return None
    return Formula(" x ".join(names), " x ".join(str(d) for d in shape))


def _f(*names: str) -> FormulaFn:
    """A formula naming each dimension of the shape, e.g. ``out_features x in_features``."""
    return lambda shape: _dims(shape, names)


def _conv(shape: Shape) -> Formula | None:
    # PyTorch stores a convolution kernel (out_channels, in_channels / groups, *kernel_size).
    spatial = ("kernel_h", "kernel_w", "kernel_d")[: max(len(shape) - 2, 0)]
    if len(shape) == 3:
        spatial = ("kernel_size",)
    return _dims(shape, ("out_channels", "in_channels/groups", *spatial))


def _keras_kernel(shape: Shape) -> Formula | None:
    # Keras stores Dense kernels (input_dim, units) and Conv kernels (*kernel_size, in, filters).
    if len(shape) == 2:
        return _dims(shape, ("input_dim", "units"))
    spatial = ("kernel_h", "kernel_w", "kernel_d")[: max(len(shape) - 2, 0)]
    if len(shape) == 3:
        spatial = ("kernel_size",)
    return _dims(shape, (*spatial, "in_channels", "filters"))


@dataclass(frozen=True, slots=True)
class NameRule:
    """One pattern of the name table.

    Attributes:
        tensors: the tensor's own (last) name component, matched exactly.
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
    )


#: Tokens of a module name that mark a normalisation layer (``input_layernorm``, ``ln_f``, ``bn1``).
NORM_TOKENS = "norm layernorm rmsnorm groupnorm batchnorm instancenorm ln bn gn"

#: Last module components that hold a token-embedding table.
TOKEN_TABLES = frozenset(
    "embed_tokens wte word_embeddings tok_embeddings token_embd shared embed_in "
    "embeddings embedding emb token_embedding".split()
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
       layer_type="BatchNorm", formula=_f("num_features")),
    _r("num_batches_tracked", _B, "count of training batches seen by BatchNorm; a buffer",
       is_param=False, layer_type="BatchNorm"),
    _r("inv_freq", _B, "rotary position embedding frequencies, computed from the config; a buffer",
       is_param=False, formula=_f("head_dim/2")),
    _r("position_ids token_type_ids", _B, "constant index table kept with the model; a buffer",
       is_param=False),
    _r("masked_bias", _B, "constant fill value of the causal attention mask; a buffer", is_param=False),
    _r("bias", _B, "GPT-2's causal attention mask (a lower-triangular constant); a buffer",
       is_param=False, module="attn attention", ndim=(4,)),
    _r("cos_cached sin_cached freqs_cis relative_position_index", _B,
       "precomputed position table kept with the model; a buffer", is_param=False),
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
       layer_type="BatchNormalization", formula=_f("features")),
    _r("gamma", _T, "normalisation scale, one per feature", layer_type="Normalization",
       formula=_f("features")),
    _r("beta", _T, "normalisation shift, one per feature", layer_type="Normalization",
       formula=_f("features")),
    # BatchNorm in PyTorch: affine weight and bias beside running statistics.
    _r("weight", _T, "BatchNorm scale (gamma), one per channel", layer_type="BatchNorm",
       ndim=(1,), siblings="running_mean running_var", formula=_f("num_features")),
    _r("bias", _T, "BatchNorm shift (beta), one per channel", layer_type="BatchNorm",
       ndim=(1,), siblings="running_mean running_var", formula=_f("num_features")),
    # Normalisation layers named as such.
    _r("weight scale", _T, "normalisation scale, one per feature", layer_type="LayerNorm",
       module=NORM_TOKENS, ndim=(1,), siblings="bias", formula=_f("normalized_shape")),
    _r("weight scale", _T, "normalisation scale, one per feature (no shift: RMSNorm style)",
       layer_type="RMSNorm", module=NORM_TOKENS, ndim=(1,), formula=_f("normalized_shape")),
    _r("bias", _T, "normalisation shift, one per feature", layer_type="LayerNorm",
       module=NORM_TOKENS, ndim=(1,), formula=_f("normalized_shape")),
    # Embedding tables.
    _r("weight embeddings", _T, "token embedding table: one learned vector per vocabulary entry",
       layer_type="Embedding", module_names=TOKEN_TABLES, ndim=(2,),
       formula=_f("num_embeddings", "embedding_dim")),
    _r("weight embeddings", _T, "learned position (or segment) embedding table: one vector per "
       "position", layer_type="Embedding", module_names=POSITION_TABLES, ndim=(2,),
       formula=_f("num_embeddings", "embedding_dim")),
    # GPT-2 Conv1D: a linear layer whose weight is stored transposed.
    _r("weight", _T, "linear map stored (in, out) by GPT-2's Conv1D, transposed from nn.Linear",
       layer_type="Conv1D", module_names=GPT2_CONV1D, ndim=(2,),
       formula=_f("in_features", "out_features")),
    _r("bias", _T, "bias of GPT-2's Conv1D, one per output feature", layer_type="Conv1D",
       module_names=GPT2_CONV1D, ndim=(1,), formula=_f("out_features")),
    # Mixture-of-experts weights: every expert's matrix stacked in one tensor.
    _r("weight", _T, "the experts' linear maps stacked in one tensor, one (out, in) matrix each",
       layer_type="Experts", module_names=frozenset("ffn_gate_exps ffn_up_exps ffn_down_exps".split()),
       ndim=(3,), formula=_f("n_experts", "out_features", "in_features")),
    # PyTorch nn.Linear / nn.ConvNd.
    _r("weight", _T, "linear map, stored (out, in)", layer_type="Linear", ndim=(2,),
       formula=_f("out_features", "in_features")),
    _r("weight", _T, "convolution kernel, stored (out, in/groups, *kernel)", layer_type="Conv",
       ndim=(3, 4, 5), formula=_conv),
    _r("bias", _T, "bias, one per output feature or channel", ndim=(1,),
       formula=_f("out_features")),
    # Keras names.
    _r("kernel", _T, "Dense kernel, stored (in, out) by Keras", layer_type="Dense", ndim=(2,),
       formula=_keras_kernel),
    _r("kernel", _T, "convolution kernel, stored (*kernel, in, out) by Keras", layer_type="Conv",
       ndim=(3, 4, 5), formula=_keras_kernel),
    _r("recurrent_kernel", _T, "recurrent kernel: maps the previous state into the gates",
       formula=_f("units", "gates x units")),
    _r("depthwise_kernel", _T, "depthwise convolution kernel, one filter per input channel"),
    _r("pointwise_kernel", _T, "pointwise (1x1) convolution kernel mixing channels"),
    # Parameters held directly by a module rather than by a Linear/Embedding inside it.
    _r("cls_token class_embedding mask_token dist_token register_tokens", _T,
       "learned token vector(s) added to the sequence (class, mask or register token)"),
    _r("position_embeddings position_embedding pos_embed absolute_pos_embed", _T,
       "learned position embeddings, one vector per position"),
    _r("gate_up_proj gate_proj up_proj down_proj w1 w2 w3", _T,
       "the experts' linear maps stacked in one tensor, one matrix each", layer_type="Experts",
       ndim=(3,), formula=_f("n_experts", "out_features", "in_features")),
    _r("A_log D dt_bias", _T, "state-space parameter of a Mamba mixer (A as log, skip D, "
       "time-step bias)"),
    _r("logit_scale logit_bias", _T, "learned temperature (or bias) of contrastive similarity logits"),
    # Anything else called weight or bias is a learned parameter in every framework's convention.
    _r("weight bias kernel", _T, "a learned tensor"),
)


def _index(rules: Sequence[NameRule]) -> dict[str, tuple[NameRule, ...]]:
    """Rules by the tensor names they match, in table order: one lookup instead of a scan."""
    out: dict[str, list[NameRule]] = {}
    for rule in rules:
        for name in rule.tensors:
            out.setdefault(name, []).append(rule)
    return {k: tuple(v) for k, v in out.items()}


_BY_TENSOR = _index(RULES)

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

_TOKEN = re.compile(r"[A-Za-z]+|\d+")


def name_tokens(component: str) -> frozenset[str]:
    """The lower-case word and number tokens of one name component.

    Example:
        >>> sorted(name_tokens("post_attention_layernorm"))
        ['attention', 'layernorm', 'post']
        >>> sorted(name_tokens("bn1"))
        ['1', 'bn']
    """
    return frozenset(t.lower() for t in _TOKEN.findall(component))


def _matches(rule: NameRule, module: str, tensor: str, shape: Shape | None, siblings: frozenset[str]) -> bool:
    if tensor not in rule.tensors:
        return False
    if rule.ndim and (shape is None or len(shape) not in rule.ndim):
        return False
    if rule.module and not (rule.module & name_tokens(module)):
        return False
    if rule.module_names and module not in rule.module_names:
        return False
    return not rule.siblings or bool(rule.siblings & siblings)


def explain_name(
    path: str, tensor: str, shape: Shape | None, siblings: frozenset[str], *, sep: str = "."
) -> Explanation:
    """Explain one flat tensor by the conventions of its name (a :data:`core.tree.Explainer`).

    Args:
        path: the owning module's path (``"model.layers.0.self_attn.q_proj"``).
        tensor: the tensor's own name (``"weight"``).
        shape: its shape, in PyTorch (row-major) order.
        siblings: names of the other tensors of the same module.
        sep: the separator inside ``path``.

    Returns:
        Role, whether it counts as a parameter, formula, a sentence and the layer type; role
        :attr:`Role.UNKNOWN` when no rule matches.

    Example:
        >>> e = explain_name("model.layers.0.mlp.up_proj", "weight", (11008, 4096), frozenset({"weight"}))
        >>> e.layer_type, e.formula.numeric, e.why
        ('Linear', '11008 x 4096', 'MLP up projection: linear map, stored (out, in)')
    """
    module = path.rsplit(sep, 1)[-1]
    for rule in _BY_TENSOR.get(tensor, ()):
        if _matches(rule, module, tensor, shape, siblings):
            formula = rule.formula(shape) if rule.formula is not None and shape is not None else None
            purpose = PURPOSE.get(module)
            why = f"{purpose}: {rule.why}" if purpose else rule.why
            return Explanation(rule.role, rule.is_param, formula, why, rule.layer_type)
    return Explanation(Role.UNKNOWN, True, None, "no naming convention explains this tensor", "")


_NUM = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting ``layers.2`` before ``layers.10``.

    Example:
        >>> sorted(["l.10.w", "l.2.w", "emb"], key=natural_key)
        ['emb', 'l.2.w', 'l.10.w']
    """
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in _NUM.split(name) if p)


#: The note file readers add: a checkpoint records tensors, not how training treated them.
CHECKPOINT_NOTE = (
    "A checkpoint does not record which weights were frozen in training: weights are counted "
    "as trainable, running statistics and constants as not."
)

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


@lru_cache(maxsize=1 << 16)
def _component_key(component: str) -> tuple[object, ...]:
    # Components repeat across a checkpoint ("model", "layers", "0", ...): a header of a
    # million tensors has a few thousand distinct ones, so each is keyed once.
    return (_RANK.get(component, 1000), natural_key(component))


def _sort_key(name: str, sep: str) -> tuple[object, ...]:
    module, _, local = name.rpartition(sep)
    path = tuple(_component_key(c) for c in module.split(sep)) if module else ()
    return (path, _FIRST.get(local, len(_FIRST)), _component_key(local)[1])


def map_tensors(layer: Layer, fn: Callable[[Layer, Tensor], Tensor]) -> Layer:
    """A copy of ``layer`` and its descendants with every tensor replaced by ``fn(owner, tensor)``.

    Built children first with an explicit stack, so a deep tree needs no recursion.
    """
    done: dict[int, Layer] = {}
    stack: list[tuple[Layer, bool]] = [(layer, False)]
    while stack:
        node, expanded = stack.pop()
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in node.children)
            continue
        done[id(node)] = replace(
            node,
            tensors=tuple(fn(node, t) for t in node.tensors),
            children=tuple(done[id(c)] for c in node.children),
        )
    return done[id(layer)]


def anatomy_from_flat(
    flat: Iterable[FlatTensor],
    *,
    name: str,
    framework: str,
    source: str = "",
    sep: str = ".",
    explain: Callable[[str, str, Shape | None, frozenset[str]], Explanation] | None = None,
    metadata: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    tied: Mapping[str, str] | None = None,
    tie_reason: str = "",
    sort: bool = False,
) -> Anatomy:
    """Build a whole anatomy from the flat tensors a file reader found.

    Tensors with equal ``key`` are one storage: they are counted once, and each says with
    whom it shares. ``tied`` names ties the file does not store (``{"lm_head.weight":
    "model.embed_tokens.weight"}`` from ``tie_word_embeddings``): a present alias gets its
    target's key; an absent one gets a note.

    Args:
        flat: the tensors in file order.
        name: the model's name (usually the file name).
        framework: the format (``"safetensors"``, ``"gguf"``, ...).
        source: where it was read from.
        sep: separator inside names.
        explain: the explainer (default: :func:`explain_name` with ``sep``).
        metadata: facts read from the file, as strings.
        notes: sentences for the user.
        tied: alias full name -> target full name for ties declared outside the tensors.
        tie_reason: where ``tied`` comes from, for the note (``"tie_word_embeddings: true"``).
        sort: order modules by the usual data flow (embeddings, attention, MLP, final norm,
            head), then by :func:`natural_key`, then ``weight`` before ``bias``, instead of
            file order (safetensors headers are sorted by dtype, not by model).

    Returns:
        The anatomy; every tensor is known, so its totals are complete.

    Example:
        >>> a = anatomy_from_flat([FlatTensor("fc.weight", (2, 3), "float32")], name="m", framework="safetensors")
        >>> a.layers[0].type, a.layers[0].tensors[0].count
        ('Linear', 6)
    """
    tensors = list(flat)
    # Names are checked before they are sorted or split: sorting splits every name.
    check_names(tensors, sep, where=source or None)
    if sort:
        tensors.sort(key=lambda ft: _sort_key(ft.name, sep))
    out_notes = list(notes)
    keys = {ft.name: (ft.key or ft.name) for ft in tensors}
    for alias, target in (tied or {}).items():
        if target not in keys:
            continue
        if alias in keys:
            tensors = [replace(ft, key=keys[target]) if ft.name == alias else ft for ft in tensors]
            keys[alias] = keys[target]
        else:
            why = f"{tie_reason}; " if tie_reason else ""
            out_notes.append(f"{alias} is not stored: it is tied to {target} ({why}one tensor, counted once).")
    owners: dict[str, list[str]] = {}
    for ft in tensors:
        owners.setdefault(keys[ft.name], []).append(ft.name)
    shared = {k: v for k, v in owners.items() if len(v) > 1}
    for group in shared.values():
        out_notes.append(f"{' and '.join(group)} share one storage (tied weights), counted once.")

    def _default(p: str, t: str, s: Shape | None, sib: frozenset[str]) -> Explanation:
        return explain_name(p, t, s, sib, sep=sep)

    layers = build_tree(tensors, sep=sep, explain=explain or _default)
    if shared:
        def _mark(layer: Layer, t: Tensor) -> Tensor:
            group = shared.get(t.key)
            if not group:
                return t
            me = f"{layer.path}{sep}{t.name}"
            me = me if me in group else t.name
            others = ", ".join(g for g in group if g != me)
            return replace(t, why=f"{t.why}; shares one storage with {others}, counted once")

        layers = tuple(map_tensors(la, _mark) for la in layers)
    return Anatomy(
        name=name,
        framework=framework,
        layers=layers,
        source=source,
        metadata=MappingProxyType(dict(metadata or {})),
        notes=tuple(out_notes),
    )
