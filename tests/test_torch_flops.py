"""FLOPs per module against hand-worked formulas and PyTorch's own FlopCounterMode on real runs."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from paramscope.trace.flops import ELEMENTWISE_COST, attention_cost  # noqa: E402
from paramscope.core import Anatomy, Compute  # noqa: E402
from paramscope.readers import read  # noqa: E402


def torch_counter(model: nn.Module, *args: Any, **kwargs: Any) -> dict[str, int]:
    """Oracle: FlopCounterMode's per-module totals on a real CPU forward, keyed by our paths."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*args, **kwargs)
    root = type(model).__name__
    out = {}
    for key, per_op in fc.get_flop_counts().items():
        if key == "Global":
            continue
        path = "" if key == root else key.removeprefix(root + ".")
        out[path] = sum(per_op.values())
    return out


def _c(a: Anatomy, path: str) -> Compute:
    layer = a.find(path)
    assert layer is not None and layer.compute is not None, path
    return layer.compute


def test_linear_over_all_leading_dims() -> None:
    model = nn.Sequential(nn.Linear(16, 32))
    a = read(model, input_size=(2, 5, 7, 16))
    c = _c(a, "0")
    assert c.flops == 2 * 2 * 5 * 7 * 16 * 32 and c.macs == 2 * 5 * 7 * 16 * 32
    assert c.elementwise_flops == 2 * 5 * 7 * 32  # the bias add
    assert c.attention_flops == 0 and c.complete
    assert a.compute == c


def test_convolutions_match_torch_counter() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 12, 3, stride=2, padding=2, dilation=2, groups=3),
        nn.ConvTranspose2d(12, 6, kernel_size=(3, 2), stride=(2, 3), padding=1, output_padding=(1, 0), groups=2),
        nn.ConvTranspose2d(6, 5, 4, stride=2, bias=False),
    )
    x = torch.randn(2, 3, 17, 13)
    oracle = torch_counter(model, x)
    a = read(model, input_size=tuple(x.shape))
    for path in ("0", "1", "2"):
        assert _c(a, path).flops == oracle[path] > 0, path
    # a transposed convolution scatters each input element through the kernel to
    # out_channels / groups outputs: 2 x B x H_in x W_in x C_in x (C_out / groups) x kH x kW
    with torch.no_grad():
        mid = model[0](x)
        _, _, h, w = model[1](mid).shape
    assert oracle["1"] == 2 * 2 * mid.shape[2] * mid.shape[3] * 12 * (6 // 2) * 3 * 2
    assert a.compute is not None and a.compute.flops == oracle[""]
    # bias adds are elementwise work: one per output element of each convolution with a bias
    assert _c(a, "2").elementwise_flops == 0 and _c(a, "1").elementwise_flops == 2 * 6 * h * w


def test_gpt2_conv1d_is_addmm() -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(nf=32, nx=16)  # weight is (16, 32): the transpose of Linear's
    a = read(nn.Sequential(layer), input_size=(2, 5, 16))
    c = _c(a, "0")
    assert c.flops == 2 * 2 * 5 * 16 * 32 and c.elementwise_flops == 2 * 5 * 32
    assert transformers is not None


class SDPA(nn.Module):
    def __init__(self, gqa: bool = False, causal: bool = False) -> None:
        super().__init__()
        self.gqa, self.causal = gqa, causal

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, enable_gqa=self.gqa)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_sdpa_attention_flops_on_every_path(device: str) -> None:
    b, h, l, s, d, dv = 2, 4, 10, 12, 8, 6
    specs = [f"float32[{b},{h},{l},{d}]", f"float32[{b},{h},{s},{d}]", f"float32[{b},{h},{s},{dv}]"]
    expected = 2 * b * h * l * s * d + 2 * b * h * l * s * dv  # scores q k^T, then weights x v
    for model_device in ("meta", "cpu"):
        model = SDPA().to(model_device)
        a = read(model, inputs=specs, device="meta" if device == "meta" else "cpu")
        assert a.compute is not None
        assert a.compute.attention_flops == expected and a.compute.flops == 0
        assert a.compute.elementwise_flops == b * h * l * s * 6  # scale 1 + softmax 5 per score
    # grouped-query attention: 2 key/value heads serve 4 query heads
    gqa = read(SDPA(gqa=True, causal=True), inputs=[specs[0], f"float32[{b},2,{s},{d}]", f"float32[{b},2,{s},{dv}]"])
    assert gqa.compute is not None and gqa.compute.attention_flops == expected
    assert gqa.compute.elementwise_flops == b * h * l * s * 7  # + the causal mask
    assert attention_cost((b, h, l, d), (b, h, s, d), (b, h, s, dv), masked=False)[0] == expected


def test_fused_kernel_called_directly_is_attention() -> None:
    class Fused(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q)[0]

    a = read(Fused(), input_size=(1, 2, 8, 4), device="cpu")
    assert a.compute is not None and a.compute.attention_flops == 2 * 2 * (1 * 2 * 8 * 8 * 4)
    assert a.compute.flops == 0


def test_eager_attention_products_are_attention_and_match_torch_total() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 97, (2, 9))
    oracle = torch_counter(model, input_ids=ids)
    a = read(model, inputs=["input_ids=int64[2,9]"])
    assert a.compute is not None and a.compute.complete
    # PyTorch's counter does not separate attention; ours splits the same total
    assert a.compute.flops + a.compute.attention_flops == oracle[""]  # type: ignore[operator]
    # layers x (QK^T and AV) x 2 FLOPs per multiply-add x batch x heads x L x S x head_dim
    assert a.compute.attention_flops == 2 * 2 * 2 * 2 * 4 * 9 * 9 * 8
    for path in ("transformer.h.0", "transformer.h.1.attn", "transformer.h.1.mlp", "lm_head", "transformer"):
        c = _c(a, path)
        assert c.flops + c.attention_flops == oracle[path], path  # type: ignore[operator]
    # an attention block's projections are weight products: c_attn 3x, c_proj 1x of 32 x 32
    assert _c(a, "transformer.h.0.attn").flops == 2 * 2 * 9 * 32 * 32 * 4


def test_inclusive_per_module_figures() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)))
    a = read(model, input_size=(5, 4))
    oracle = torch_counter(model, torch.randn(5, 4))
    for path in ("0", "1", "1.0", "1.2"):
        assert _c(a, path).flops == oracle[path]
    inner = _c(a, "1")
    parts = [_c(a, p) for p in ("1.0", "1.1", "1.2")]
    assert inner.elementwise_flops == sum(p.elementwise_flops for p in parts)  # type: ignore[misc]
    assert _c(a, "1.1").elementwise_flops == 5 * 8  # relu: 1 per element
    assert a.compute is not None and a.compute.flops == oracle[""]


def test_elementwise_table() -> None:
    class Ops(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x.view(6, 4).t().reshape(4, 6)  # free
            y = F.gelu(y) + F.gelu(y, approximate="tanh")
            y = F.layer_norm(y, (6,))
            y = torch.softmax(y, dim=-1)
            return F.silu(y).sum()

    a = read(Ops(), input_size=(2, 3, 4))
    n = 24
    expected = n * 5 + n * 8 + n * 1 + n * ELEMENTWISE_COST["native_layer_norm"][0] + n * 5 + n * 2 + n
    assert a.compute is not None and a.compute.elementwise_flops == expected and a.compute.flops == 0
    assert ELEMENTWISE_COST["native_layer_norm"] == (5, "in")
    ln = read(nn.Sequential(nn.LayerNorm(6)), input_size=(4, 6))
    assert ln.compute is not None and ln.compute.elementwise_flops == 24 * 7  # + weight, + bias


def test_grouped_expert_matmul_is_unknown_not_zero() -> None:
    class Experts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.empty(4, 16, 32, dtype=torch.bfloat16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            offs = torch.tensor([2, 5, 7, 8], dtype=torch.int32, device=x.device)
            return torch._grouped_mm(x, self.w, offs=offs)

    class MoE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.router = nn.Linear(16, 4, dtype=torch.bfloat16)
            self.experts = Experts()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.experts(x) + self.router(x).sum()

    a = read(MoE().to("meta"), inputs=["bfloat16[8,16]"])
    assert a.compute is not None and a.compute.flops is None and "aten._grouped_mm" in a.compute.unknown_ops
    assert not a.compute.complete
    router = _c(a, "router")
    assert router.flops == 2 * 8 * 16 * 4 and router.complete  # known parts stay known
    assert _c(a, "experts").flops is None


def test_custom_op_is_unknown() -> None:
    @torch.library.custom_op("paramscope_test::mystery", mutates_args=())
    def mystery(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @mystery.register_fake
    def _(x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x)

    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return mystery(x)

    a = read(M(), input_size=(3,))
    assert a.compute is not None and a.compute.unknown_ops == ("paramscope_test.mystery",)
    assert a.compute.flops is None


def test_docs_worked_example_gpt2_small() -> None:
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    a = read(model, inputs=["input_ids=int64[1,128]"])
    t, d, layers, heads, vocab = 128, 768, 12, 12, 50257
    assert a.compute is not None and a.compute.complete
    assert a.compute.flops == layers * 2 * t * d * (3 * d + d + 4 * d + 4 * d) + 2 * t * d * vocab == 31_624_200_192
    assert a.compute.attention_flops == layers * 2 * 2 * heads * t * t * (d // heads) == 603_979_776
    assert _c(a, "transformer.h.0.ln_1").elementwise_flops == t * d * 7
    assert _c(a, "transformer.h.0.mlp.act").elementwise_flops == t * 4 * d * 8


def test_random_conv_and_linear_stacks_match_torch_counter() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=10, deadline=None, derandomize=True)
    @hypothesis.given(
        batch=st.integers(1, 3),
        c_in=st.integers(1, 4),
        size=st.integers(5, 12),
        convs=st.lists(
            st.tuples(st.sampled_from(["conv", "convT"]), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.booleans()),
            min_size=1,
            max_size=3,
        ),
        width=st.integers(1, 9),
    )
    def check(batch: int, c_in: int, size: int, convs: list[tuple[str, int, int, int, bool]], width: int) -> None:
        layers: list[nn.Module] = []
        c = c_in
        for kind, groups, kernel, stride, bias in convs:
            c_out = groups * (1 + kernel % 2)
            if c % groups:
                groups = 1
            cls = nn.Conv2d if kind == "conv" else nn.ConvTranspose2d
            padding = kernel - 1 if kind == "conv" else 0  # never shrinks below the kernel
            layers.append(cls(c, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=bias))
            c = c_out
        layers += [nn.Flatten(), nn.LazyLinear(width)]
        model = nn.Sequential(*layers)
        x = torch.randn(batch, c_in, size, size)
        model(x)  # initialise the lazy layer
        oracle = torch_counter(model, x)
        a = read(model, input_size=tuple(x.shape))
        assert a.compute is not None and a.compute.flops == oracle[""]
        for i in range(len(layers)):
            assert _c(a, str(i)).flops == oracle.get(str(i), 0)

    check()


def test_eager_and_sdpa_attention_count_the_same() -> None:
    transformers = pytest.importorskip("transformers")
    results = {}
    for impl in ("sdpa", "eager"):
        cfg = transformers.LlamaConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=97, attn_implementation=impl,
        )
        with torch.device("meta"):
            model = transformers.LlamaForCausalLM(cfg)
        results[impl] = read(model, inputs=["input_ids=int64[1,32]"])
    sdpa, eager = results["sdpa"], results["eager"]
    assert sdpa.compute is not None and eager.compute is not None
    assert (sdpa.compute.flops, sdpa.compute.attention_flops) == (eager.compute.flops, eager.compute.attention_flops)
    # the attention block itself: q k^T, scale, causal mask, softmax, x v are costed alike
    assert _c(sdpa, "model.layers.0.self_attn") == _c(eager, "model.layers.0.self_attn")
    assert sdpa.compute.attention_flops == 2 * 2 * 2 * 4 * 32 * 32 * 16  # layers x products x 2 x H x L x S x D


def test_expert_weights_gathered_by_routing_stay_weights() -> None:
    # A mixture-of-experts layer gathers each token's expert weights with data-derived indices;
    # the product with the activations is a matmul (2 * tokens * D * F FLOPs), not attention.
    import torch
    from torch import nn

    from paramscope.readers import read

    class Experts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.router = nn.Linear(8, 4, bias=False)
            self.w = nn.Parameter(torch.zeros(4, 8, 16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            idx = self.router(x).argmax(-1)  # (tokens,)
            return torch.bmm(x.unsqueeze(1), self.w[idx]).squeeze(1)  # (tokens, 16)

    c = read(Experts(), input_size=(5, 8)).compute
    assert c is not None
    assert c.attention_flops == 0
    assert c.flops == 2 * 5 * 8 * 4 + 2 * 5 * 8 * 16  # router + expert matmul
