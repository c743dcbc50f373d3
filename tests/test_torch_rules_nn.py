"""Every torch.nn rule against the real module: each tensor explained, each formula exact."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from paramscope.core.anatomy import Role  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
from paramscope.rules.torch import ModuleNote, torch_rule  # noqa: E402


def evaluate(numeric: str) -> int:
    """The test's own reading of a numeric formula: integers, +, -, x, exact /, parentheses."""

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        assert isinstance(node, ast.BinOp), ast.dump(node)
        a, b = ev(node.left), ev(node.right)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        assert isinstance(node.op, ast.Div) and a % b == 0, numeric
        return a // b

    return ev(ast.parse(numeric.replace(" x ", " * "), mode="eval").body)


def own(module: Any) -> dict[str, Any]:
    found = dict(module.named_parameters(recurse=False))
    found.update(module.named_buffers(recurse=False))
    return found


def explained(module: Any, *, whole: bool = True) -> ModuleNote:
    """Apply the module's rule and check it exactly against the module itself.

    ``whole=False`` accepts a rule that explains its own tensors but gives no module formula
    (top-level models).
    """
    rule = torch_rule(module)
    assert rule is not None, type(module)
    made = rule(module)
    tensors = own(module)
    assert set(made.tensors) == set(tensors), (set(made.tensors), set(tensors))
    for name, t in tensors.items():
        tn = made.tensors[name]
        assert tn.formula is not None, name
        assert evaluate(tn.formula.numeric) == t.numel(), (name, tn.formula, tuple(t.shape))
        # The rule's own formula held: the guard did not have to fall back to the stored shape.
        assert not tn.formula.symbolic.startswith("stored shape"), (name, tn.formula)
        assert tn.why, name
    n_params = sum(p.numel() for p in module.parameters())
    if (made.formula is None and not whole) or (made.formula is None and n_params == 0):
        return made
    assert made.formula is not None
    assert evaluate(made.formula.numeric) == sum(p.numel() for p in module.parameters()), made.formula
    assert not made.formula.symbolic.startswith("parameters of"), made.formula
    return made


CASES: dict[str, Callable[[], Any]] = {
    "Linear": lambda: nn.Linear(7, 5),
    "Linear-nobias": lambda: nn.Linear(7, 5, bias=False),
    "Bilinear": lambda: nn.Bilinear(3, 4, 5),
    "Bilinear-nobias": lambda: nn.Bilinear(3, 4, 5, bias=False),
    "Identity": lambda: nn.Identity(3, unused=True),
    "Conv1d": lambda: nn.Conv1d(4, 6, 3),
    "Conv2d-groups-dilation": lambda: nn.Conv2d(6, 9, (3, 5), groups=3, dilation=2),
    "Conv2d-depthwise-nobias": lambda: nn.Conv2d(8, 8, 3, groups=8, bias=False),
    "Conv3d": lambda: nn.Conv3d(2, 4, (1, 2, 3)),
    "ConvTranspose1d": lambda: nn.ConvTranspose1d(4, 6, 3),
    "ConvTranspose2d-groups": lambda: nn.ConvTranspose2d(4, 6, (3, 2), groups=2),
    "ConvTranspose3d-nobias": lambda: nn.ConvTranspose3d(3, 2, 2, bias=False),
    "BatchNorm1d": lambda: nn.BatchNorm1d(512),
    "BatchNorm2d-noaffine": lambda: nn.BatchNorm2d(6, affine=False),
    "BatchNorm3d-nostats": lambda: nn.BatchNorm3d(6, track_running_stats=False),
    "BatchNorm1d-cumulative": lambda: nn.BatchNorm1d(6, momentum=None),
    "SyncBatchNorm": lambda: nn.SyncBatchNorm(6),
    "LayerNorm": lambda: nn.LayerNorm(8),
    "LayerNorm-2d": lambda: nn.LayerNorm((3, 4)),
    "LayerNorm-nobias": lambda: nn.LayerNorm(8, bias=False),
    "LayerNorm-noaffine": lambda: nn.LayerNorm(8, elementwise_affine=False),
    "RMSNorm": lambda: nn.RMSNorm(8),
    "RMSNorm-noaffine": lambda: nn.RMSNorm([2, 8], elementwise_affine=False),
    "GroupNorm": lambda: nn.GroupNorm(2, 8),
    "GroupNorm-noaffine": lambda: nn.GroupNorm(2, 8, affine=False),
    "InstanceNorm1d": lambda: nn.InstanceNorm1d(5),
    "InstanceNorm2d-affine-stats": lambda: nn.InstanceNorm2d(5, affine=True, track_running_stats=True),
    "InstanceNorm3d-stats": lambda: nn.InstanceNorm3d(5, track_running_stats=True),
    "LocalResponseNorm": lambda: nn.LocalResponseNorm(2),
    "Embedding": lambda: nn.Embedding(11, 4),
    "Embedding-padding": lambda: nn.Embedding(11, 4, padding_idx=0, max_norm=1.0),
    "EmbeddingBag": lambda: nn.EmbeddingBag(11, 4, mode="mean"),
    "RNN": lambda: nn.RNN(3, 5),
    "RNN-relu-nobias-2": lambda: nn.RNN(3, 5, num_layers=2, nonlinearity="relu", bias=False),
    "LSTM-3-bidir": lambda: nn.LSTM(3, 5, num_layers=3, bidirectional=True),
    "LSTM-proj": lambda: nn.LSTM(3, 6, num_layers=2, proj_size=2),
    "LSTM-proj-bidir": lambda: nn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True),
    "GRU-2": lambda: nn.GRU(3, 5, num_layers=2),
    "GRU-bidir-nobias": lambda: nn.GRU(3, 5, bidirectional=True, bias=False),
    "RNNCell": lambda: nn.RNNCell(3, 5),
    "LSTMCell": lambda: nn.LSTMCell(3, 5),
    "GRUCell-nobias": lambda: nn.GRUCell(3, 5, bias=False),
    "MultiheadAttention": lambda: nn.MultiheadAttention(16, 4),
    "MultiheadAttention-kdim": lambda: nn.MultiheadAttention(16, 4, kdim=5, vdim=7),
    "MultiheadAttention-biaskv": lambda: nn.MultiheadAttention(16, 2, add_bias_kv=True),
    "MultiheadAttention-nobias": lambda: nn.MultiheadAttention(16, 2, bias=False),
    "TransformerEncoderLayer": lambda: nn.TransformerEncoderLayer(16, 4, dim_feedforward=32),
    "TransformerEncoderLayer-nobias": lambda: nn.TransformerEncoderLayer(16, 4, 32, bias=False),
    "TransformerDecoderLayer": lambda: nn.TransformerDecoderLayer(16, 4, dim_feedforward=32),
    "TransformerEncoder": lambda: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 4, 32), 3, norm=nn.LayerNorm(16), enable_nested_tensor=False
    ),
    "TransformerDecoder": lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(16, 4, 32), 2),
    "Transformer": lambda: nn.Transformer(16, 4, 2, 1, 32),
    "PReLU": lambda: nn.PReLU(),
    "PReLU-channels": lambda: nn.PReLU(6),
    "ReLU": lambda: nn.ReLU(),
    "Dropout": lambda: nn.Dropout(0.1),
    "MaxPool2d": lambda: nn.MaxPool2d(2),
    "Flatten": lambda: nn.Flatten(),
    "ParameterList": lambda: nn.ParameterList([nn.Parameter(torch.zeros(2, 3)), nn.Parameter(torch.zeros(4))]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_explains_every_tensor_exactly(case: str) -> None:
    explained(CASES[case]())


@pytest.mark.parametrize("case", ["Linear", "Conv2d-groups-dilation", "LSTM-proj-bidir", "BatchNorm1d",
                                  "MultiheadAttention-kdim", "Transformer"])
def test_rules_work_on_the_meta_device(case: str) -> None:
    with torch.device("meta"):
        module = CASES[case]()
    explained(module)


def test_batch_norm_reconciles_torch_and_keras() -> None:
    bn = nn.BatchNorm1d(512)
    made = explained(bn)
    params = sum(p.numel() for p in bn.parameters())
    buffers = sum(b.numel() for b in bn.buffers())
    assert f"{params:,}" in made.note and f"{buffers:,}" in made.note
    assert made.tensors["running_mean"].role is Role.STATISTIC
    assert made.tensors["running_var"].role is Role.STATISTIC
    assert made.tensors["num_batches_tracked"].role is Role.BUFFER
    assert made.tensors["weight"].role is None  # trainable or frozen: the reader reads requires_grad

    keras = pytest.importorskip("keras")
    layer = keras.layers.BatchNormalization()
    layer.build((None, 512))
    non_trainable = sum(int(w.numpy().size) for w in layer.non_trainable_weights)
    assert f"{layer.count_params():,} parameters, {non_trainable:,} of them non-trainable" in made.note


def test_batch_norm_without_running_stats_says_so() -> None:
    made = explained(nn.BatchNorm2d(6, track_running_stats=False))
    assert "track_running_stats=False" in made.note
    assert set(made.tensors) == {"weight", "bias"}


def test_lstm_names_gates_and_redundant_bias() -> None:
    made = explained(nn.LSTM(3, 5, num_layers=2, bidirectional=True))
    assert "4 gates" in made.note and "_reverse" in made.note
    assert made.tensors["weight_ih_l1_reverse"].formula.symbolic == "4 x hidden_size x (2 x hidden_size)"
    assert "cuDNN" in made.tensors["bias_hh_l0"].why
    assert "not redundant" in explained(nn.GRU(3, 5)).tensors["bias_hh_l0"].why


def test_multihead_attention_packed_versus_separate() -> None:
    packed = explained(nn.MultiheadAttention(16, 4))
    assert "in_proj_weight" in packed.tensors and "q_proj_weight" not in packed.tensors
    split = explained(nn.MultiheadAttention(16, 4, kdim=5, vdim=7))
    assert {"q_proj_weight", "k_proj_weight", "v_proj_weight"} <= set(split.tensors)
    assert split.tensors["k_proj_weight"].formula.symbolic == "embed_dim x kdim"
    out_proj = nn.MultiheadAttention(16, 4).out_proj
    assert type(out_proj) is not nn.Linear
    assert "quantization" in explained(out_proj).note


def test_conv_transpose_weight_order_is_explained() -> None:
    made = explained(nn.ConvTranspose2d(4, 6, 3, groups=2))
    assert made.tensors["weight"].formula.symbolic.startswith("in_channels x (out_channels / groups)")
    assert "reverse of Conv's order" in made.tensors["weight"].why


def test_embedding_padding_row_is_explained() -> None:
    made = explained(nn.Embedding(11, 4, padding_idx=3))
    assert "row 3 (padding_idx)" in made.tensors["weight"].why


def test_lazy_module_stays_unknown_until_initialized() -> None:
    lazy = nn.LazyLinear(4)
    rule = torch_rule(lazy)
    assert rule is not None
    made = rule(lazy)
    assert made.formula is None
    assert set(made.tensors) == {"weight", "bias"}
    assert all(t.formula is None for t in made.tensors.values())
    assert "unknown" in made.note
    lazy(torch.zeros(2, 3))
    explained(lazy)  # now a Linear with real shapes


def test_changed_module_falls_back_to_stored_shapes() -> None:
    lin = nn.Linear(4, 3)
    lin.weight = nn.Parameter(torch.zeros(3, 9))
    lin.register_buffer("scale", torch.ones(5))
    rule = torch_rule(lin)
    assert rule is not None
    made = rule(lin)
    assert made.tensors["weight"].formula.numeric == "3 x 9"
    assert "stored shape" in made.tensors["weight"].why
    assert evaluate(made.tensors["scale"].formula.numeric) == 5
    assert "attached later" in made.tensors["scale"].why
    assert evaluate(made.formula.numeric) == sum(p.numel() for p in lin.parameters())


def test_containers_claim_no_count() -> None:
    rule = torch_rule(nn.Sequential(nn.Linear(2, 2)))
    assert rule is not None
    made = rule(nn.Sequential(nn.Linear(2, 2)))
    assert made.formula is None and not made.tensors


def test_unregistered_module_has_no_rule() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))

    assert torch_rule(Custom()) is None


def test_subclass_inherits_rule() -> None:
    class MyLinear(nn.Linear):
        pass

    explained(MyLinear(3, 2))


def test_a_look_alike_class_is_not_taken_for_a_transformers_class() -> None:
    fake = type("Conv1D", (nn.Module,), {"__module__": "transformers.pytorch_utils"})
    fake.__qualname__ = "Conv1D"
    assert torch_rule(fake()) is None


def test_rules_for_torch_modules_do_not_import_transformers() -> None:
    code = (
        "import sys, torch\n"
        "from paramscope.rules.torch import torch_rule\n"
        "m = torch.nn.Linear(2, 2)\n"
        "assert torch_rule(m)(m).formula is not None\n"
        "assert 'transformers' not in sys.modules, 'transformers imported'\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr


# Through the live-module reader: what a user sees.

def test_batch_norm_through_the_reader() -> None:
    from paramscope.analysis.totals import totals
    from paramscope.readers import read

    model = nn.Sequential(nn.Linear(256, 512), nn.BatchNorm1d(512))
    anatomy = read(model)
    t = totals(anatomy)
    assert t.params == sum(p.numel() for p in model.parameters())
    assert t.buffers == sum(b.numel() for b in model.buffers())
    bn = anatomy.find("1")
    assert bn is not None and "Keras" in bn.note
    roles = {x.name: (x.role, x.is_param) for x in bn.tensors}
    assert roles["running_mean"] == (Role.STATISTIC, False)
    assert roles["running_var"] == (Role.STATISTIC, False)
    assert roles["num_batches_tracked"] == (Role.BUFFER, False)
    assert roles["weight"] == (Role.TRAINABLE, True)
    assert all(x.formula is not None and x.why for x in bn.tensors)


def test_lazy_module_through_the_reader_is_incomplete() -> None:
    from paramscope.analysis.totals import totals
    from paramscope.readers import read

    anatomy = read(nn.Sequential(nn.LazyLinear(3), nn.ReLU()))
    assert not totals(anatomy).complete
    lazy = anatomy.find("0")
    assert lazy is not None and lazy.formula is None
    assert all(x.count is None and x.formula is None for x in lazy.tensors)


def test_frozen_embedding_keeps_its_formula_and_is_frozen() -> None:
    from paramscope.readers import read

    emb = nn.Embedding.from_pretrained(torch.zeros(10, 4), freeze=True)
    anatomy = read(nn.Sequential(emb))
    (weight,) = anatomy.find("0").tensors  # type: ignore[union-attr]
    assert weight.role is Role.FROZEN and weight.formula is not None


def test_rules_do_not_depend_on_the_order_families_load_in() -> None:
    code = (
        "import importlib, torch\n"
        "for fam in ('hf_encoders', 'hf', 'attention', 'recurrent', 'norm', 'nn'):\n"
        "    importlib.import_module('paramscope.rules.torch.' + fam)\n"
        "from paramscope.rules.torch import torch_rule\n"
        "m = torch.nn.MultiheadAttention(8, 2)\n"
        "assert 'in_proj_weight' in torch_rule(m)(m).tensors\n"
        "p = torch.nn.PReLU(3)\n"
        "assert 'weight' in torch_rule(p)(p).tensors\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr


def test_weight_norm_and_spectral_norm_are_explained() -> None:
    from torch.nn.utils.parametrizations import spectral_norm, weight_norm

    conv = weight_norm(nn.Conv1d(4, 6, 3), dim=2)
    made = explained(conv)  # own tensor: bias; the weight lives in the parametrization
    assert "parametrizations.weight" in made.formula.symbolic
    plist = explained(conv.parametrizations.weight)
    assert "magnitude g" in plist.tensors["original0"].why
    assert "direction v" in plist.tensors["original1"].why
    lin = spectral_norm(nn.Linear(3, 4))
    explained(lin)
    power = explained(lin.parametrizations.weight[0])
    assert {t.role for t in power.tensors.values()} == {Role.BUFFER}
