"""PyTorch checkpoints read by opcode analysis agree with what torch.load reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paramscope.analysis import totals
from paramscope.core import Anatomy, Role
from paramscope.readers import read, reader_for
from paramscope.readers.torch import checkpoint as torch_checkpoint

torch = pytest.importorskip("torch")

DTYPES = [
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128,
    torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16, torch.uint32,
]  # fmt: skip


def _expected(sd: dict[str, Any]) -> tuple[int, int, int, dict[str, int]]:
    """(distinct tensors, elements, bytes, elements by dtype) as torch reports them, ties once."""
    seen: set[tuple[int, int, tuple[int, ...], tuple[int, ...], str]] = set()
    n = count = nbytes = 0
    by: dict[str, int] = {}
    for t in sd.values():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), str(t.dtype))
        if key in seen:
            continue
        seen.add(key)
        n += 1
        count += t.numel()
        nbytes += t.numel() * t.element_size()
        name = str(t.dtype).removeprefix("torch.")
        by[name] = by.get(name, 0) + t.numel()
    return n, count, nbytes, by


def _check(a: Anatomy, path: Path, sd: dict[str, Any] | None = None) -> None:
    sd = torch.load(path, weights_only=True) if sd is None else sd
    n, count, nbytes, by = _expected(sd)
    t = totals(a)
    assert t.n_tensors == n
    assert t.params + t.buffers == count
    assert t.n_bytes == nbytes
    assert {d.dtype: d.count for d in t.by_dtype} == by
    shapes = {f"{la.path}.{x.name}" if x.name != la.path else la.path: x.shape for la in a.walk() for x in la.tensors}
    for name, tensor in sd.items():
        assert shapes[name] == tuple(tensor.shape)


@pytest.mark.parametrize("legacy", [False, True])
def test_many_dtypes_match_torch_load(tmp_path: Path, legacy: bool) -> None:
    # torch's own legacy loader cannot read back dtypes without a typed storage class (fp8, uint16).
    dtypes = DTYPES[:12] if legacy else DTYPES
    sd = {f"block.{i}.w": torch.zeros(3, i + 1, dtype=dt) for i, dt in enumerate(dtypes)}
    sd["scalar"] = torch.tensor(1.5)
    sd["empty"] = torch.zeros(0, 4)
    path = tmp_path / "many.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    assert reader_for(path) is torch_checkpoint
    a = read(path)
    _check(a, path)
    assert a.metadata["format"].startswith("torch legacy" if legacy else "torch zip")


class _Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte = torch.nn.Embedding(50, 8)
        self.fc = torch.nn.Linear(8, 16)
        self.bn = torch.nn.BatchNorm1d(16)
        self.lm_head = torch.nn.Linear(8, 50, bias=False)
        self.lm_head.weight = self.wte.weight


def test_model_state_dict_ties_and_buffers(tmp_path: Path) -> None:
    m = _Tied()
    path = tmp_path / "model.bin"
    torch.save(m.state_dict(), path)
    a = read(path)
    _check(a, path)
    t = totals(a)
    params = {id(p): p.numel() for p in m.parameters()}
    buffers = {id(b): b.numel() for b in m.buffers()}
    # Parameters and buffers counted once each, the tied head included once.
    assert t.params == sum(params.values())
    assert t.buffers == sum(buffers.values())
    head = a.find("lm_head")
    wte = a.find("wte")
    assert head is not None and wte is not None
    assert head.tensors[0].key == wte.tensors[0].key
    assert any("lm_head.weight" in n and "wte.weight" in n for n in a.notes)
    bn = a.find("bn")
    assert bn is not None
    roles = {x.name: (x.role, x.is_param) for x in bn.tensors}
    assert roles["running_mean"] == (Role.STATISTIC, False)


def test_views_of_one_storage(tmp_path: Path) -> None:
    base = torch.arange(12, dtype=torch.float32)
    sd = {"whole": base.view(3, 4), "row": base.view(3, 4)[1], "col": base.view(3, 4)[:, 2]}
    path = tmp_path / "views.pt"
    torch.save(sd, path)
    a = read(path)
    _check(a, path)
    assert any("views of one stored buffer" in n for n in a.notes)
    assert a.metadata["storage_bytes"] == str(12 * 4)


def test_parameters_keep_requires_grad(tmp_path: Path) -> None:
    sd = {
        "w": torch.nn.Parameter(torch.zeros(4, 4)),
        "frozen": torch.nn.Parameter(torch.zeros(4), requires_grad=False),
    }
    path = tmp_path / "params.pt"
    torch.save(sd, path)
    a = read(path)
    roles = {la.path: la.tensors[0].role for la in a.layers}
    assert roles == {"w": Role.TRAINABLE, "frozen": Role.FROZEN}
    t = totals(a)
    assert (t.trainable, t.non_trainable) == (16, 4)


def test_training_checkpoint_with_adam(tmp_path: Path) -> None:
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m(torch.randn(5, 4)).sum().backward()
    opt.step()
    path = tmp_path / "train.ckpt"
    torch.save({"model": m.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "note": "run-7"}, path)
    a = read(path)
    t = totals(a)
    assert t.params + t.buffers == sum(v.numel() for v in m.state_dict().values())
    assert a.metadata["epoch"] == "3" and a.metadata["note"] == "run-7"
    (group,) = a.extras
    assert group.name == "optimizer"
    ostate = opt.state_dict()["state"]
    expected = sum(v.numel() for s in ostate.values() for v in s.values() if torch.is_tensor(v))
    assert sum(x.count or 0 for x in group.tensors) == expected
    assert len(group.tensors) == sum(1 for s in ostate.values() for v in s.values() if torch.is_tensor(v))
    assert all(not x.is_param for x in group.tensors)
    assert any("first moment" in x.why for x in group.tensors)
    assert a.metadata["optimizer.param_groups.0.lr"] == "0.001"


def test_lightning_style_checkpoint(tmp_path: Path) -> None:
    m = torch.nn.Linear(3, 3)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.randn(2, 3)).sum().backward()
    opt.step()
    ckpt = {
        "epoch": 1,
        "global_step": 10,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in m.state_dict().items()},
        "optimizer_states": [opt.state_dict()],
        "hyper_parameters": {"lr": 0.1, "layers": [3, 3]},
    }
    path = tmp_path / "lightning.ckpt"
    torch.save(ckpt, path)
    a = read(path)
    assert totals(a).params == 12
    assert a.find("model") is not None
    assert [g.name for g in a.extras] == ["optimizer"]
    assert sum(x.count or 0 for x in a.extras[0].tensors) == 12
    assert a.metadata["hyper_parameters.lr"] == "0.1"


def test_single_tensor_and_nested_dicts(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    torch.save({"enc": {"w": torch.zeros(2, 3)}, "dec": [torch.zeros(5), torch.zeros(1, dtype=torch.int8)]}, path)
    a = read(path)
    assert totals(a).params + totals(a).buffers == 12
    dec = a.find("dec")
    assert a.find("enc") is not None and dec is not None
    assert [x.name for x in dec.tensors] == ["0", "1"]


def test_reading_imports_no_framework(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    code = (
        "import sys; from paramscope.readers import read; from paramscope.analysis import totals;"
        f"a = read({str(path)!r}); print(totals(a).params);"
        "bad = [m for m in ('torch', 'keras', 'tensorflow') if m in sys.modules]; print(bad)"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": src}, check=True)
    assert out.stdout.split() == ["8", "[]"]


class _UserNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)


@pytest.mark.parametrize("legacy", [False, True])
def test_whole_pickled_torch_nn_model(tmp_path: Path, legacy: bool) -> None:
    m = torch.nn.Sequential(
        torch.nn.Embedding(20, 6),
        torch.nn.TransformerEncoderLayer(6, 2, dim_feedforward=12, batch_first=True),
        torch.nn.BatchNorm1d(5),
        torch.nn.Linear(6, 6),
        torch.nn.Linear(6, 6),
    )
    m[4].weight = m[3].weight  # tied: one Parameter in two modules
    m[3].bias.requires_grad_(False)
    path = tmp_path / "whole.pt"
    torch.save(m, path, _use_new_zipfile_serialization=not legacy)
    a = read(path)
    t = totals(a)
    params = {id(p): p for p in m.parameters()}
    assert t.params == sum(p.numel() for p in params.values())
    assert t.trainable == sum(p.numel() for p in params.values() if p.requires_grad)
    assert t.buffers == sum(b.numel() for b in m.buffers())
    assert [la.type for la in a.layers] == ["Embedding", "TransformerEncoderLayer", "BatchNorm1d", "Linear", "Linear"]
    assert any("whole pickled model" in n for n in a.notes)
    assert any("3.weight and 4.weight are one tensor" in n for n in a.notes)
    bn = a.find("2")
    assert bn is not None and {x.name: x.role for x in bn.tensors}["running_mean"] is Role.STATISTIC


def test_whole_model_with_user_class_refused(tmp_path: Path) -> None:
    from paramscope.core.errors import UnsafeFileError

    path = tmp_path / "user.pt"
    torch.save({"model": _UserNet(), "epoch": 1}, path)
    with pytest.raises(UnsafeFileError, match=r"_UserNet.*whole pickled model.*state_dict"):
        read(path)


def test_checkpoint_holding_a_whole_module(tmp_path: Path) -> None:
    m = torch.nn.Sequential(torch.nn.Linear(3, 2))
    path = tmp_path / "ckpt.pt"
    torch.save({"model": m, "epoch": 4}, path)
    a = read(path)
    assert totals(a).params == 8 and a.metadata["epoch"] == "4"


class _Scripted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 6)
        self.bn = torch.nn.BatchNorm1d(6)
        self.head = torch.nn.Linear(6, 6)
        self.extra = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
        self.register_buffer("mask", torch.ones(6), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.fc(x))) * self.mask + self.extra.sum()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive(tmp_path: Path) -> None:
    m = torch.jit.script(_Scripted())
    path = tmp_path / "scripted.pt"
    m.save(str(path))
    a = read(path)
    t = totals(a)
    assert t.params == sum(p.numel() for p in m.parameters())
    assert t.trainable == sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert t.buffers == sum(b.numel() for b in m.buffers())
    assert a.metadata["format"].startswith("TorchScript")
    assert [la.type for la in a.layers] == ["_Scripted", "Linear", "BatchNorm1d", "Linear"]
    bn = a.find("bn")
    assert bn is not None and {x.name: x.is_param for x in bn.tensors} == {
        "weight": True, "bias": True, "running_mean": False, "running_var": False, "num_batches_tracked": False,
    }  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_protocols(tmp_path: Path, protocol: int) -> None:
    # torch's own weights_only loader stops at protocol 4's FRAME opcode, so the oracle is the saved dict.
    sd = torch.nn.Linear(5, 3).state_dict()
    path = tmp_path / f"p{protocol}.pt"
    torch.save(sd, path, pickle_protocol=protocol)
    _check(read(path), path, dict(sd))


def test_bare_tensor_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    torch.save(torch.zeros(4, 5, dtype=torch.float16), path)
    a = read(path)
    t = totals(a)
    assert t.params + t.buffers == 20 and t.n_bytes == 40


def test_sparse_tensor_refused_with_reason(tmp_path: Path) -> None:
    from paramscope.core.errors import UnsafeFileError

    path = tmp_path / "sparse.pt"
    torch.save({"w": torch.zeros(4, 4).to_sparse()}, path)
    with pytest.raises(UnsafeFileError, match="does not read"):
        read(path)
