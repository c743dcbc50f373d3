"""Rules for transformers modules that hold tensors directly, checked on small real models."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from paramscope.core.anatomy import Role  # noqa: E402
from paramscope.rules.torch import torch_rule  # noqa: E402
from paramscope.rules.torch.hf import HF_RULES  # noqa: E402
from test_torch_rules_nn import explained, own  # noqa: E402

T = transformers
SMALL = dict(vocab_size=96)

MODELS: dict[str, Callable[[], Any]] = {
    "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(n_layer=1, n_embd=32, n_head=4, n_positions=16, **SMALL)),
    "bert-mlm": lambda: T.BertForMaskedLM(
        T.BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=16, **SMALL)
    ),
    "roberta": lambda: T.RobertaForMaskedLM(
        T.RobertaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=18, pad_token_id=1, **SMALL)
    ),
    "distilbert": lambda: T.DistilBertModel(
        T.DistilBertConfig(n_layers=1, dim=32, n_heads=4, hidden_dim=64, max_position_embeddings=16, **SMALL)
    ),
    "t5": lambda: T.T5ForConditionalGeneration(
        T.T5Config(num_layers=2, d_model=32, num_heads=4, d_kv=8, d_ff=64, **SMALL)
    ),
    "bart": lambda: T.BartForConditionalGeneration(
        T.BartConfig(encoder_layers=1, decoder_layers=1, d_model=32, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                     max_position_embeddings=16, **SMALL)
    ),
    "llama": lambda: T.LlamaForCausalLM(
        T.LlamaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, **SMALL)
    ),
    "mixtral": lambda: T.MixtralForCausalLM(
        T.MixtralConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=64, num_local_experts=4, **SMALL)
    ),
    "gemma": lambda: T.GemmaForCausalLM(
        T.GemmaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, num_key_value_heads=1,
                      head_dim=8, intermediate_size=64, **SMALL)
    ),
    "vit": lambda: T.ViTModel(
        T.ViTConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                    image_size=16, patch_size=8),
        use_mask_token=True,
    ),
    "clip": lambda: T.CLIPModel(
        T.CLIPConfig(
            text_config=dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                             max_position_embeddings=16, **SMALL),
            vision_config=dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                               image_size=16, patch_size=8),
            projection_dim=16,
        )
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_module_with_tensors_has_an_exact_rule(name: str) -> None:
    model = MODELS[name]()
    for path, module in model.named_modules():
        if own(module):
            assert torch_rule(module) is not None, (path, type(module))
            explained(module, whole=module is not model and not path.endswith(("predictions", "lm_head")))


def test_conv1d_weight_is_in_out() -> None:
    model = MODELS["gpt2"]()
    attn = model.transformer.h[0].attn.c_attn
    made = explained(attn)
    assert made.tensors["weight"].formula.numeric == f"{attn.weight.shape[0]} x {attn.weight.shape[1]}"
    assert "transpose of nn.Linear" in made.tensors["weight"].why


def test_rotary_buffers_are_explained_as_non_persistent() -> None:
    model = MODELS["llama"]()
    rotary = model.model.rotary_emb
    made = explained(rotary)
    assert made.tensors["inv_freq"].role is Role.BUFFER
    assert "non-persistent" in made.tensors["inv_freq"].why
    assert made.tensors["inv_freq"].formula.symbolic == "head_dim / 2"
    assert "inv_freq" not in rotary.state_dict()  # the claim itself, from torch


def test_bert_buffers_and_tied_decoder_bias() -> None:
    model = MODELS["bert-mlm"]()
    emb = explained(model.bert.embeddings)
    assert emb.tensors["position_ids"].role is Role.BUFFER
    assert emb.tensors["token_type_ids"].role is Role.BUFFER
    head = model.cls.predictions
    assert head.decoder.bias is head.bias  # the tie the note describes
    assert "same tensor" in explained(head, whole=False).tensors["bias"].why


def test_model_level_tensors() -> None:
    clip = MODELS["clip"]()
    assert explained(clip, whole=False).tensors["logit_scale"].formula.numeric == "1"
    bart = MODELS["bart"]()
    made = explained(bart, whole=False)
    assert made.tensors["final_logits_bias"].role is Role.BUFFER
    positions = explained(bart.model.encoder.embed_positions)
    assert "2 rows more" in positions.tensors["weight"].why


def test_t5_relative_attention_bias_is_counted_in_the_first_layer() -> None:
    model = MODELS["t5"]()
    first = model.encoder.block[0].layer[0].SelfAttention
    second = model.encoder.block[1].layer[0].SelfAttention
    assert "relative_attention_bias" in explained(first).note
    assert "relative_attention_num_buckets" in explained(first).formula.symbolic
    assert "relative_attention_num_buckets" not in explained(second).formula.symbolic


def test_gemma_norm_scale_is_an_offset() -> None:
    model = MODELS["gemma"]()
    made = explained(model.model.norm)
    assert "(1 + weight)" in made.tensors["weight"].why


def test_every_listed_class_exists_in_installed_transformers() -> None:
    importlib.import_module("paramscope.rules.torch.hf_encoders")  # files its rules in HF_RULES
    assert len(HF_RULES) > 40
    missing = []
    for module_name, qualname in HF_RULES:
        try:
            mod = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        if not isinstance(getattr(mod, qualname, None), type):
            missing.append(f"{module_name}.{qualname}")
    assert not missing, missing


# Default-size configs of many families, built on the meta device (no memory): every module
# that holds tensors has a rule, and every formula is exact against the real module.
META_TYPES = [
    "gpt2", "bert", "roberta", "xlm-roberta", "albert", "electra", "deberta-v2", "t5", "umt5", "bart",
    "whisper", "llama", "mistral", "qwen2_moe", "qwen3", "qwen3_moe", "gemma2", "phi3", "olmoe",
    "jamba", "mamba", "deepseek_v3", "smollm3", "cohere", "gptj", "gpt_neo", "gpt_bigcode", "xglm",
    "m2m_100", "deit", "dinov2", "beit", "convnext", "swin", "siglip", "blip", "wav2vec2", "hubert",
]


@pytest.mark.parametrize("model_type", META_TYPES)
def test_default_configs_on_meta_are_fully_explained(model_type: str) -> None:
    T.logging.set_verbosity_error()
    config = T.AutoConfig.for_model(model_type)
    with torch.device("meta"):
        model = T.AutoModel.from_config(config)
    for path, module in model.named_modules():
        if own(module):
            assert torch_rule(module) is not None, (model_type, path, type(module))
            explained(module, whole=module is not model)
