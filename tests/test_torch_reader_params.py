"""The live torch reader: parameters, buffers, roles and tied weights against torch's own counts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from paramscope.analysis import layer_totals, shared_tensors, totals  # noqa: E402
from paramscope.analysis.repeats import collapse  # noqa: E402
from paramscope.core import Formula, Role  # noqa: E402
from paramscope.readers import read  # noqa: E402
from paramscope.readers.torch import module as torch_module
from paramscope.rules.torch import ModuleNote, TensorNote, register_torch_rule  # noqa: E402


def _torch_counts(model: nn.Module) -> tuple[int, int, int]:
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers())
    return params, trainable, buffers


def _assert_parity(model: nn.Module) -> None:
    a = read(model)
    t = totals(a)
    params, trainable, buffers = _torch_counts(model)
    assert (t.params, t.trainable, t.non_trainable, t.buffers) == (params, trainable, params - trainable, buffers)
    # every module's own tensors are exactly its own parameters and buffers
    for name, mod in model.named_modules():
        if not name:
            continue
        layer = a.find(name)
        assert layer is not None and layer.path == name
        own_p = sum(p.numel() for p in mod.parameters(recurse=False))
        own_b = sum(b.numel() for b in mod.buffers(recurse=False))
        lt = layer_totals(layer, recursive=False)
        assert (lt.params, lt.buffers) == (own_p, own_b), name
        assert layer_totals(layer).params == sum(p.numel() for p in mod.parameters()), name


def seed_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(4096, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, 80), nn.Sigmoid()
    )


def test_seed_model_counts_and_dtypes() -> None:
    model = seed_model()
    a = read(model)
    t = totals(a)
    params, trainable, buffers = _torch_counts(model)
    assert t.params == params == 2_139_728
    assert [layer_totals(x).params for x in a.layers] == [
        sum(p.numel() for p in m.parameters()) for m in model
    ]
    assert t.trainable == trainable and t.buffers == buffers == 1_025
    bn = a.find("2")
    assert bn is not None and bn.type == "BatchNorm1d" and bn.origin == "torch.nn.modules.batchnorm"
    by_name = {x.name: x for x in bn.tensors}
    assert by_name["num_batches_tracked"].dtype == "int64" and by_name["num_batches_tracked"].shape == ()
    assert by_name["running_mean"].is_param is False and by_name["weight"].is_param is True
    # roles come from the torch.nn rules: running statistics vs a plain counter
    assert [by_name[n].role for n in ("weight", "running_mean", "running_var", "num_batches_tracked")] == [
        Role.TRAINABLE, Role.STATISTIC, Role.STATISTIC, Role.BUFFER
    ]
    assert all(x.formula is not None and x.formula.numeric for x in bn.tensors)
    assert "1,025" in bn.note
    assert t.n_bytes == 4 * (params + 1_024) + 8
    assert any("example input" in n for n in a.notes)  # no input: parameter anatomy only
    assert all(x.compute is None and x.output_shapes is None for x in a.walk())


def test_hand_built_parity() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(7))
            self.register_buffer("table", torch.zeros(3, 3))
            self.conv = nn.Conv2d(3, 8, 3, groups=1)
            self.block = nn.Sequential(nn.Conv2d(8, 8, 3, groups=4, bias=False), nn.BatchNorm2d(8), nn.GELU())
            self.rnn = nn.LSTM(8, 16, num_layers=2, bidirectional=True, proj_size=4)
            self.attn = nn.MultiheadAttention(16, 4, kdim=8, vdim=12)
            self.emb = nn.Embedding(10, 5, padding_idx=0)
            self.norm = nn.LayerNorm(5, bias=False)

    model = Net()
    model.conv.requires_grad_(False)
    _assert_parity(model)
    a = read(model)
    # tensors owned by the model itself become one-tensor layers, like flat files show them
    assert [x.name for x in a.layers[:2]] == ["scale", "table"]
    assert a.find("conv").tensors[0].role is Role.FROZEN  # type: ignore[union-attr]
    assert totals(a).non_trainable == sum(p.numel() for p in model.conv.parameters())


def test_shared_linear_and_tied_embedding_counted_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(100, 16)
            self.fc = nn.Linear(16, 16)
            self.fc_again = self.fc  # one module at two names, called twice
            self.head = nn.Linear(16, 100, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.fc_again(self.fc(self.emb(ids))))

    model = Tied()
    _assert_parity(model)
    a = read(model, inputs=["int64[2,5]"])
    assert totals(a).params == sum(p.numel() for p in model.parameters()) == 100 * 16 + 16 * 16 + 16
    shared = shared_tensors(a)
    assert shared["emb.weight"] == ["emb/weight", "head/weight"]
    assert shared["fc.weight"] == ["fc/weight", "fc_again/weight"]
    fc = a.find("fc")
    assert fc is not None and fc.calls == 2


def test_distinct_parameters_over_one_storage_counted_once() -> None:
    a_lin, b_lin = nn.Linear(4, 4), nn.Linear(4, 4)
    b_lin.weight = nn.Parameter(a_lin.weight.data)  # a second Parameter object, same memory
    model = nn.Sequential(a_lin, b_lin)
    a = read(model)
    assert totals(a).params == 16 + 4 + 4  # parameters() would say 40
    assert any("distinct Parameter objects over one storage" in n for n in a.notes)


def test_frozen_and_non_persistent_buffers() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 8)
            self.register_buffer("cache", torch.zeros(4, 8), persistent=False)
            self.register_buffer("steps", torch.zeros((), dtype=torch.int32))

    model = M()
    model.lin.weight.requires_grad_(False)
    _assert_parity(model)
    a = read(model)
    cache = a.find("cache").tensors[0]  # type: ignore[union-attr]
    assert cache.role is Role.BUFFER and not cache.is_param and "state_dict" in cache.why
    steps = a.find("steps").tensors[0]  # type: ignore[union-attr]
    assert steps.dtype == "int32" and "state_dict" not in steps.why
    lin = {t.name: t for t in a.find("lin").tensors}  # type: ignore[union-attr]
    assert lin["weight"].role is Role.FROZEN and lin["bias"].role is Role.TRAINABLE
    assert lin["weight"].counted_as == "non_trainable"


def test_rules_supply_formulas_roles_and_notes() -> None:
    class Scale(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n
            self.gain = nn.Parameter(torch.ones(n))
            self.register_buffer("ema", torch.zeros(n))

    @register_torch_rule(Scale)
    def _scale(m: Scale) -> ModuleNote:
        return ModuleNote(
            {
                "gain": TensorNote(Formula("features", str(m.n))),
                "ema": TensorNote(Formula("features", str(m.n)), "a running mean of the input", Role.STATISTIC),
            },
            Formula("features", str(m.n)),
            "scales each feature",
        )

    class Unexplained(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

    a = read(nn.Sequential(Scale(6), Unexplained()))
    scale, other = a.layers
    gain, ema = scale.tensors
    assert gain.formula == Formula("features", "6") and ema.role is Role.STATISTIC and ema.why
    assert scale.formula == Formula("features", "6") and scale.note == "scales each feature"
    assert other.known and "No rule explains Unexplained" in other.note
    assert totals(a).complete


def test_lazy_module_is_unknown_not_zero() -> None:
    model = nn.Sequential(nn.LazyLinear(4))
    a = read(model, input_size=(1, 3))
    t = totals(a)
    assert not t.complete and t.params == 0
    assert a.layers[0].tensors[0].shape is None
    assert any("lazy" in n for n in a.notes)
    assert isinstance(model[0].weight, nn.parameter.UninitializedParameter)  # not materialised by us


def test_meta_model_same_anatomy_as_cpu() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=320, n_positions=64)
    cpu = transformers.GPT2LMHeadModel(cfg)
    with torch.device("meta"):
        meta = transformers.GPT2LMHeadModel(cfg)
    a_cpu = read(cpu, inputs=["input_ids=int64[2,16]"])
    a_meta = read(meta, inputs=["input_ids=int64[2,16]"])
    assert a_cpu.layers == a_meta.layers
    assert a_cpu.compute == a_meta.compute and a_cpu.outputs == a_meta.outputs
    assert totals(a_cpu).params == sum(p.numel() for p in cpu.parameters())
    assert shared_tensors(a_cpu) == {"transformer.wte.weight": ["transformer.wte/weight", "lm_head/weight"]}
    assert (a_cpu.metadata["forward"], a_meta.metadata["forward"]) == ("fake", "meta")


def test_repeated_blocks_collapse() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=64,
    )
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    a = read(model, inputs=["input_ids=int64[1,8]"])
    layers = a.find("model.layers")
    assert layers is not None
    runs = collapse(layers.children)
    assert len(runs) == 1 and runs[0].n == 6 and runs[0].label == "0-5"


def test_module_left_unchanged() -> None:
    model = seed_model()
    model.train()
    model[4].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = {k: id(v) for k, v in model.state_dict(keep_vars=True).items()}
    read(model, input_size=(3, 4096))
    assert model.training and not model[4].training and model[2].training
    after = model.state_dict(keep_vars=True)
    assert {k: id(v) for k, v in after.items()} == ids
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks


def test_can_read_does_not_import_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import paramscope
        from paramscope.readers.torch import module as torch_module
        assert not torch_module.can_read(object()) and not torch_module.can_read("x.pt")
        from paramscope.trace.inputs import input_specs
        assert input_specs((1, 3), ["ids=int64[1,8]"])[1].shape == (1, 8)
        assert "torch" not in sys.modules, "torch imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert torch_module.can_read(nn.Linear(2, 2)) and not torch_module.can_read(torch.zeros(2))


def test_gpt2_small_meta_equals_cpu() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config()  # GPT-2 small: 124M parameters
    with torch.device("meta"):
        meta = transformers.GPT2LMHeadModel(cfg)
        cpu = transformers.GPT2LMHeadModel(cfg)
    cpu.to_empty(device="cpu")  # real memory, left uninitialised: values do not matter here
    cpu.tie_weights()  # to_empty makes new tensors; tie the head to the embedding again
    assert cpu.lm_head.weight is cpu.transformer.wte.weight and cpu.lm_head.weight.device.type == "cpu"
    a_cpu = read(cpu, inputs=["input_ids=int64[1,32]"])
    a_meta = read(meta, inputs=["input_ids=int64[1,32]"])
    assert a_cpu.layers == a_meta.layers and a_cpu.compute == a_meta.compute
    t = totals(a_cpu)
    assert t.params == sum(p.numel() for p in cpu.parameters()) == 124_439_808
    assert t.buffers == sum(b.numel() for b in cpu.buffers())
    assert layer_totals(a_cpu.find("lm_head")).params == 50257 * 768  # type: ignore[arg-type]


def test_failing_rule_and_module_cycle_do_not_stop_the_read() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2, 2))

    @register_torch_rule(Odd)
    def _broken(m: Odd) -> ModuleNote:
        raise AttributeError("no such setting")

    outer = nn.Sequential(Odd(), nn.Linear(2, 2))
    outer[1].add_module("back", outer)  # a child holding its own parent: torch's own walks would loop too
    a = read(outer)
    odd = a.find("0")
    assert odd is not None and "rule for Odd failed" in odd.note and odd.tensors[0].shape == (2, 2)
    assert [c.name for c in a.find("1").children] == []  # type: ignore[union-attr]
    assert totals(a).params == 4 + 6
