"""Shapes per module from the pass without memory equal those of a real CPU forward; inputs and errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from paramscope.analysis import totals  # noqa: E402
from paramscope.trace.inputs import parse_input_spec  # noqa: E402
from paramscope.core import ModelError, TargetError  # noqa: E402
from paramscope.readers import read  # noqa: E402


def _leaf_shapes(value: Any) -> tuple[tuple[int, ...], ...]:
    from torch.utils._pytree import tree_leaves

    return tuple(tuple(x.shape) for x in tree_leaves(value) if isinstance(x, torch.Tensor))


def real_forward_shapes(model: nn.Module, *args: Any, **kwargs: Any) -> dict[str, tuple[int, dict[str, Any]]]:
    """Oracle: (calls, first-call input/output shapes) per module name from a real CPU forward."""
    seen: dict[str, list[Any]] = {}
    handles = []
    for name, mod in model.named_modules():

        def pre(m: nn.Module, a: Any, kw: Any, name: str = name) -> None:
            rec = seen.setdefault(name, [0, None, None])
            rec[0] += 1
            if rec[1] is None:
                rec[1] = _leaf_shapes((a, kw))

        def post(m: nn.Module, a: Any, kw: Any, out: Any, name: str = name) -> None:
            if seen[name][2] is None:
                seen[name][2] = _leaf_shapes(out)

        handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(mod.register_forward_hook(post, with_kwargs=True))
    model.eval()
    with torch.no_grad():
        out = model(*args, **kwargs)
    for h in handles:
        h.remove()
    result = {k: (v[0], {"in": v[1], "out": v[2]}) for k, v in seen.items()}
    result[""] = (1, {"in": _leaf_shapes((args, kwargs)), "out": _leaf_shapes(out)})
    return result


def _assert_shapes_match(model: nn.Module, anatomy: Any, oracle: dict[str, Any]) -> None:
    assert anatomy.inputs == oracle[""][1]["in"]
    assert anatomy.outputs == oracle[""][1]["out"]
    checked = 0
    for name, (calls, shapes) in oracle.items():
        if not name:
            continue
        layer = anatomy.find(name)
        assert layer is not None, name
        assert layer.calls == calls, name
        assert layer.input_shapes == shapes["in"], name
        assert layer.output_shapes == shapes["out"], name
        checked += 1
    assert checked == sum(1 for n, _ in model.named_modules() if n and n in oracle)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.ConvTranspose2d(8, 4, 3, stride=2, output_padding=1), nn.AdaptiveAvgPool2d(4),
        )
        self.rnn = nn.GRU(16, 12, batch_first=True, bidirectional=True)
        self.attn = nn.MultiheadAttention(24, 4, batch_first=True)
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        f = self.features(x).flatten(2)  # (B, 4, 16)
        seq, h = self.rnn(f)
        y, w = self.attn(seq, seq, seq)
        return self.head(y), {"hidden": h, "weights": w}


def test_hand_built_shapes_equal_real_forward() -> None:
    model = Net()
    x = torch.randn(2, 3, 16, 16)
    oracle = real_forward_shapes(model, x)
    a = read(model, input_size=(2, 3, 16, 16))
    assert not any("stopped" in n for n in a.notes)
    _assert_shapes_match(model, a, oracle)
    assert a.compute is not None and a.compute.flops and a.compute.flops > 0


@pytest.mark.parametrize("arch", ["gpt2", "bert", "llama"])
def test_transformers_shapes_equal_real_forward(arch: str) -> None:
    transformers = pytest.importorskip("transformers")
    if arch == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97))
    elif arch == "bert":
        cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=97)
        model = transformers.BertForMaskedLM(cfg)
    else:
        cfg = transformers.LlamaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, vocab_size=97,
        )
        model = transformers.LlamaForCausalLM(cfg)
    ids = torch.randint(0, 97, (2, 11))
    oracle = real_forward_shapes(model, input_ids=ids)
    a = read(model, inputs=["input_ids=int64[2,11]"])
    _assert_shapes_match(model, a, oracle)
    with torch.device("meta"):
        meta_model = type(model)(model.config)
    a_meta = read(meta_model, inputs=["input_ids=int64[2,11]"])
    _assert_shapes_match(meta_model, a_meta, oracle)


def test_example_inputs_and_kwargs() -> None:
    class TwoIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(6, 3)
            self.b = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, *, extra: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return self.a(x) * scale + self.b(extra)

    model = TwoIn()
    a = read(model, example_inputs=(torch.randn(5, 6),), example_kwargs={"extra": torch.randn(5, 4), "scale": 2.0})
    assert a.inputs == ((5, 6), (5, 4)) and a.outputs == ((5, 3),)
    assert a.find("b").input_shapes == ((5, 4),)  # type: ignore[union-attr]
    # several input sizes are several positional inputs; named specs are keyword arguments
    b = read(model, input_size=[(5, 6)], inputs=["extra=float32[5,4]"])
    assert b.outputs == ((5, 3),) and b.compute == a.compute


def test_input_dtype_follows_model() -> None:
    model = nn.Sequential(nn.Linear(8, 4)).to(torch.bfloat16)
    a = read(model, input_size=(2, 8))
    assert a.outputs == ((2, 4),) and a.compute is not None


def test_input_spec_parsing() -> None:
    assert parse_input_spec("float32[1,3,224,224]").shape == (1, 3, 224, 224)
    s = parse_input_spec(" mask = bool [ 2 , 7 ] ")
    assert (s.name, s.dtype, s.shape) == ("mask", "bool", (2, 7))
    assert parse_input_spec("x=long[3]").dtype == "int64"
    assert parse_input_spec("f16[]").shape == ()
    for bad in ["input_ids=int64(1,128)", "int64[1,x]", "int64[1,-2]", "nosuch[1]", "=int64[1]", "[1,2]", "int64[1.5]"]:
        with pytest.raises(TargetError) as e:
            parse_input_spec(bad)
        assert repr(bad) in str(e.value) and "name=dtype[d0,d1,...]" in str(e.value)


def test_bad_inputs_are_clear_errors() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(TargetError, match="int64\\(1"):
        read(model, inputs=["x=int64(1,2)"])
    with pytest.raises(TargetError, match="input_size"):
        read(model, input_size=(1, "a"))
    with pytest.raises(ModelError) as e:  # wrong rank
        read(model, input_size=(1, 3, 8))
    msg = str(e.value)
    assert "'0' (Conv2d)" in msg and "float32[1,3,8]" in msg and "\n" not in msg
    with pytest.raises(ModelError, match="'2' \\(Linear\\)"):  # wrong spatial size reaches the Linear
        read(model, input_size=(1, 3, 9, 9))
    with pytest.raises(ModelError, match="nope=int64"):  # the forward takes no such argument
        read(model, inputs=["float32[1,3,8,8]", "nope=int64[1]"])
    with pytest.raises(TargetError, match="not a PyTorch device"):
        read(model, input_size=(1, 3, 8, 8), device="nonsense")
    # the module is left usable after a failed pass
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 2)
    assert not model[0]._forward_hooks


def test_item_in_forward_gives_note_and_parameter_anatomy() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre = nn.Linear(4, 4)
            self.gate = Gate()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gate(self.pre(x))

    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.w if x.sum().item() > 0 else x

    for model in (DataDependent(), DataDependent().to("meta")):
        a = read(model, input_size=(2, 4))
        assert totals(a).params == sum(p.numel() for p in model.parameters()) == 24
        note = next(n for n in a.notes if "stopped" in n)
        assert "'gate' (Gate)" in note and ("RuntimeError" in note or "DataDependent" in note)
        assert a.compute is None and a.outputs == ()
    # a real pass works where the meta pass cannot
    a = read(DataDependent(), input_size=(2, 4), device="cpu")
    assert a.outputs == ((2, 4),) and a.metadata["forward"] == "cpu"


def test_llama_70b_shape_on_meta_allocates_no_weights() -> None:
    pytest.importorskip("transformers")
    code = textwrap.dedent(
        """
        import json, resource, torch, transformers
        from paramscope.readers import read

        def peak_mb():
            # ru_maxrss survives exec on Linux, so a child started from a large pytest process
            # would report the parent's peak; VmHWM belongs to this process's own memory map.
            try:
                with open("/proc/self/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            return int(line.split()[1]) / 1024
            except OSError:
                pass
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        from paramscope.analysis import totals
        cfg = transformers.LlamaConfig(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
            num_key_value_heads=8, intermediate_size=28672, vocab_size=32000)
        with torch.device("meta"):
            model = transformers.LlamaForCausalLM(cfg)
        a = read(model, inputs=["input_ids=int64[1,4096]"])
        c = a.compute
        print(json.dumps({
            "params": totals(a).params, "torch": sum(p.numel() for p in model.parameters()),
            "flops": c.flops, "attention": c.attention_flops, "unknown": list(c.unknown_ops),
            "out": a.outputs,
            "rss_mb": peak_mb(),
        }))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["params"] == r["torch"]
    h, layers, heads, kv, inter, vocab, seq = 8192, 80, 64, 8, 28672, 32000, 4096
    head_dim = h // heads
    proj = h * h * 2 + h * (kv * head_dim) * 2 + 3 * h * inter  # q, o, k, v, gate/up/down per layer
    assert r["flops"] == 2 * seq * (layers * proj + h * vocab)  # embedding lookup is free
    assert r["attention"] == layers * 2 * 2 * heads * seq * seq * head_dim
    assert r["unknown"] == [] and r["out"] == [[1, seq, vocab]]
    # 70B float32 weights would be 276 GB: staying far below proves none were allocated. The
    # time budget is in bench/llama70b_budget.py, not here.
    assert r["rss_mb"] < 1500


def test_meta_model_with_attention_mask_falls_back_to_fake_tensors() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=97,
    )
    with torch.device("meta"):
        meta_model = transformers.LlamaForCausalLM(cfg)
    specs = ["input_ids=int64[2,11]", "attention_mask=int64[2,11]"]
    plain = read(meta_model, inputs=specs[:1])
    assert plain.metadata["forward"] == "meta"  # the fast path when no data is needed
    a = read(meta_model, inputs=specs)  # the padding check needs data on plain meta tensors
    assert a.metadata["forward"] == "fake" and not any("stopped" in n for n in a.notes)
    cpu_model = transformers.LlamaForCausalLM(cfg)
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, :3] = 0  # with padding the real run keeps the mask, as a pass without data must
    oracle = real_forward_shapes(cpu_model, input_ids=torch.randint(0, 97, (2, 11)), attention_mask=mask)
    _assert_shapes_match(meta_model, a, oracle)
    assert a.compute is not None and plain.compute is not None
    assert a.compute.flops == plain.compute.flops and a.compute.attention_flops == plain.compute.attention_flops


def test_module_shared_between_branches_is_attributed_to_its_caller() -> None:
    class Branch(nn.Module):
        def __init__(self, emb: nn.Embedding, width: int) -> None:
            super().__init__()
            self.emb = emb
            self.proj = nn.Linear(8, width)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.proj(self.emb(ids))

    class EncDec(nn.Module):  # like T5: shared, encoder.embed_tokens, decoder.embed_tokens
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Embedding(50, 8)
            self.enc = Branch(self.shared, 4)
            self.dec = Branch(self.shared, 6)

        def forward(self, ids: torch.Tensor, dec_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.enc(ids), self.dec(dec_ids)

    model = EncDec()
    a = read(model, inputs=["int64[2,5]", "int64[2,3]"])
    assert totals(a).params == sum(p.numel() for p in model.parameters()) == 50 * 8 + 8 * 4 + 4 + 8 * 6 + 6
    enc_emb, dec_emb, shared = a.find("enc.emb"), a.find("dec.emb"), a.find("shared")
    assert enc_emb is not None and dec_emb is not None and shared is not None
    assert (enc_emb.calls, enc_emb.output_shapes) == (1, ((2, 5, 8),))
    assert (dec_emb.calls, dec_emb.output_shapes) == (1, ((2, 3, 8),))
    assert shared.calls == 0 and "enc.emb, dec.emb" in shared.note
    assert a.compute is not None
    assert a.find("dec").compute.flops == 2 * 2 * 3 * 8 * 6  # type: ignore[union-attr]


def test_input_spec_round_trip() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    from paramscope.trace.inputs import InputSpec

    @hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
    @hypothesis.given(
        name=st.one_of(st.none(), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)),
        dtype=st.sampled_from(["float32", "bfloat16", "int64", "int32", "bool", "float16", "uint8"]),
        shape=st.lists(st.integers(0, 10**6), max_size=5).map(tuple),
    )
    def check(name: str | None, dtype: str, shape: tuple[int, ...]) -> None:
        spec = InputSpec(name, dtype, shape)
        assert parse_input_spec(spec.describe()) == spec

    check()
