"""transformers models the pass used to give up on: speech models left partly on meta, and live
fp32 mixture-of-experts models. Shapes and FLOPs are checked against the same model built on
the CPU and run for real, with PyTorch's ``FlopCounterMode`` counting its products.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.readers import read  # noqa: E402

SPEECH = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=[8, 8],
    conv_stride=[5, 2], conv_kernel=[10, 3], num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
    vocab_size=12,
)  # fmt: skip


def weight_products(model: Any, **inputs: Any) -> tuple[int, Any]:
    """Oracle: FlopCounterMode's products with a weight (all but bmm and baddbmm, which in these
    models are attention alone), and the output, of a real CPU forward."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = model(**inputs)
    counts = fc.get_flop_counts()["Global"]
    return sum(v for k, v in counts.items() if str(k) not in ("aten.bmm", "aten.baddbmm")), out


@pytest.mark.parametrize("name", ["Wav2Vec2", "Hubert", "WavLM"])
def test_speech_model_partly_on_meta_gets_shapes_and_flops(name: str) -> None:
    config = getattr(transformers, f"{name}Config")(**SPEECH)
    cls = getattr(transformers, f"{name}Model")
    with torch.device("meta"):
        meta = cls(config)
    assert {t.device.type for t in meta.parameters()} == {"meta", "cpu"}  # what transformers leaves
    a = read(meta, inputs=["input_values=float32[1,400]"])
    torch.manual_seed(0)
    real = cls(config)
    flops, out = weight_products(real, input_values=torch.randn(1, 400))
    assert a.outputs == tuple(tuple(t.shape) for t in out.values() if isinstance(t, torch.Tensor))
    assert a.compute is not None and a.compute.flops == flops
    assert a.compute.elementwise_flops is not None and not a.compute.unknown_ops
    assert totals(a).params == sum(p.numel() for p in real.parameters())


MOE = {
    "Mixtral": dict(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=32,
    ),
    "Qwen2Moe": dict(
        vocab_size=64, hidden_size=16, intermediate_size=32, moe_intermediate_size=8,
        shared_expert_intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, num_experts=4, num_experts_per_tok=2, max_position_embeddings=32,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MOE))
def test_live_fp32_mixture_of_experts_gets_shapes_and_flops(name: str) -> None:
    config = getattr(transformers, f"{name}Config")(**MOE[name])
    torch.manual_seed(0)
    model = getattr(transformers, f"{name}ForCausalLM")(config).eval()
    before = model.get_experts_implementation()
    a = read(model, inputs=["input_ids=int64[1,8]"])
    assert model.get_experts_implementation() == before  # restored
    assert a.outputs and a.outputs[0] == (1, 8, 64)
    # the oracle runs the products the pass ran: every token times its top-k experts
    model.set_experts_implementation("batched_mm")
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = model(input_ids=torch.zeros(1, 8, dtype=torch.long))
    assert a.outputs[0] == tuple(out.logits.shape)
    assert a.compute is not None and a.compute.flops == fc.get_total_flops()
    assert any("batched_mm" in n for n in a.notes)
