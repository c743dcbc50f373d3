"""Formulas against their sources: Korthikanti et al. 2022, and the KV cache transformers really keeps."""

from __future__ import annotations

from typing import Any

import pytest

from paramscope.core.errors import TargetError
from paramscope.planner.devices import device_bytes
from paramscope.planner.kv_cache import kv_cache
from paramscope.planner.parallel import check_tensor_parallel, layer_activation_bytes, tp_activation_factor


def test_korthikanti_attention_term_and_savings() -> None:
    # Section 4.2/5: for GPT-3 (a=96, s=2048, h=12288) 5as/h = 80, and selective recomputation
    # saves 70% of the activation memory; for MT-NLG (a=128, s=2048, h=20480) 5as/h = 64 and 65%.
    for a, h, term, saving in ((96, 12288, 80, 0.70), (128, 20480, 64, 0.65)):
        s, b = 2048, 1
        full = layer_activation_bytes(s, b, h, a)
        assert full == s * b * h * (34 + term)
        selective = layer_activation_bytes(s, b, h, a, recompute="selective")
        assert round(1 - selective / full, 2) == saving


def test_korthikanti_table_2_variants() -> None:
    s, b, h, a, t = 2048, 4, 12288, 96, 8
    sbh = s * b * h
    assert layer_activation_bytes(s, b, h, a, t=t) == sbh * (10 + 24 / t + 5 * a * s / (h * t))
    assert layer_activation_bytes(s, b, h, a, t=t, sp=True) == sbh / t * (34 + 5 * a * s / h)
    assert layer_activation_bytes(s, b, h, a, t=t, recompute="selective") == sbh * (10 + 24 / t)
    assert layer_activation_bytes(s, b, h, a, t=t, sp=True, recompute="selective") == sbh * 34 / t
    assert layer_activation_bytes(s, b, h, a, recompute="full") == 2 * sbh
    # The share one device keeps is the ratio of the formulas.
    ratio = tp_activation_factor(t, False, "math", a, s, h)
    assert ratio == pytest.approx(layer_activation_bytes(s, b, h, a, t=t) / layer_activation_bytes(s, b, h, a))


def test_tensor_parallel_must_divide_heads() -> None:
    with pytest.raises(TargetError, match="--tp 3 does not divide the model's 32 attention heads"):
        check_tensor_parallel(3, 32, 8)
    check_tensor_parallel(16, 32, 8)  # 8 kv heads over 16 devices: replicated, allowed


def test_devices_and_sizes() -> None:
    assert device_bytes("80GB") == (80 * 10**9, "80GB")
    assert device_bytes("h100-80gb")[0] == 81_559 * 2**20
    with pytest.raises(TargetError):
        device_bytes("a potato")


def _hf_cache_bytes(config: Any, batch: int, seq: int) -> int:
    """Bytes of the cache transformers itself builds in a forward pass (fake tensors, no memory)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float16)
        out = model(input_ids=torch.zeros(batch, seq, dtype=torch.int64), use_cache=True)
        cache = out.past_key_values
        tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize(
    "doc",
    [
        {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 3, "num_attention_heads": 8,
         "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 500},
        {"model_type": "gpt2", "n_embd": 128, "n_layer": 2, "n_head": 4, "vocab_size": 500},
        {"model_type": "mistral", "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 1, "intermediate_size": 256, "vocab_size": 500, "sliding_window": None},
    ],
)
def test_kv_cache_matches_transformers_cache(doc: dict[str, Any]) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(**doc)
    ours = kv_cache(config, batch=3, seq=40, dtype_bytes=2)
    assert ours.n_bytes == _hf_cache_bytes(config, 3, 40), ours.formula


def test_kv_cache_variants_hand_worked() -> None:
    base = {"model_type": "mistral", "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "hidden_size": 4096}
    # Mistral 7B at 32k tokens with a 4,096 window: every layer keeps 4,096 tokens.
    sliding = kv_cache({**base, "sliding_window": 4096}, batch=1, seq=32768, dtype_bytes=2)
    assert sliding.n_bytes == 2 * 8 * 128 * 32 * 4096 * 2
    # DeepSeek-V2 latent: 512 + 64 per token per layer.
    mla = kv_cache({"model_type": "deepseek_v2", "num_hidden_layers": 60, "num_attention_heads": 128,
                    "hidden_size": 5120, "kv_lora_rank": 512, "qk_rope_head_dim": 64}, batch=1, seq=1000, dtype_bytes=2)
    assert mla.n_bytes == 60 * 576 * 1000 * 2
    # Mamba: fixed state per sequence, whatever the context.
    mamba = {"model_type": "mamba", "num_hidden_layers": 24, "intermediate_size": 1536, "state_size": 16, "conv_kernel": 4}
    assert kv_cache(mamba, batch=2, seq=10, dtype_bytes=4).n_bytes == kv_cache(mamba, batch=2, seq=9999, dtype_bytes=4).n_bytes
    # Tensor parallel beyond the kv heads: one whole head per device.
    tp = kv_cache(base, batch=1, seq=100, dtype_bytes=2, tp=16)
    assert tp.n_bytes == 2 * 1 * 128 * 32 * 100 * 2 and "replicated" in tp.note
