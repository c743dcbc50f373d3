"""Deep models measured through two- and three-block copies give the bytes of the whole model."""

from __future__ import annotations

import pytest

from paramscope.planner import activations as acts
from paramscope.planner.setup import make_setup
from paramscope.planner.sources import prepare

LLAMA8 = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256,
    "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 2,
    "intermediate_size": 688, "vocab_size": 1000, "max_position_embeddings": 512,
}


@pytest.mark.parametrize("checkpointing", ["none", "full"])
def test_extrapolated_equals_whole_measurement(checkpointing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    setup = make_setup(train=True, seq=64, batch=2, precision="bf16-mixed", checkpointing=checkpointing)
    prep = prepare(LLAMA8, setup)
    short = acts.activations(prep, setup, "float32")
    assert short.extrapolated_from == 2
    monkeypatch.setattr(acts, "_SHORTEN_ABOVE", 10**9)
    whole = acts.activations(prep, setup, "float32")
    assert whole.extrapolated_from == 0
    assert (short.forward_peak, short.forward_end, short.grad_bytes) == (
        whole.forward_peak, whole.forward_end, whole.grad_bytes)
    assert max(a + g for a, g in short.backward) == max(a + g for a, g in whole.backward)
    assert sorted(short.by_module) == sorted(whole.by_module)
