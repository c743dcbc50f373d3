"""Live modules whose tensors share storage: each storage element counted once, roles kept.

Oracles are PyTorch's own: ``model.parameters()`` for the parameter count, and the union of the
storage elements every tensor views, marked in a scratch copy of each storage through the
tensor's own ``as_strided`` geometry.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.readers import read  # noqa: E402


def unique_elements(model: Any) -> int:
    """Oracle: storage elements viewed by the model's parameters and buffers, each once."""
    marks: dict[int, Any] = {}
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    for t in tensors:
        storage = t.untyped_storage()
        mark = marks.setdefault(storage.data_ptr(), torch.zeros(storage.nbytes() // t.element_size()))
        mark.as_strided(t.shape, t.stride(), t.storage_offset()).fill_(1)
    return int(sum(int(m.sum()) for m in marks.values()))


class BufferOverWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("alias", torch.zeros(0))  # registered first: listed before the weight
        self.lin = nn.Linear(16, 16)
        self.alias = self.lin.weight.data

    def forward(self, x: Any) -> Any:
        return self.lin(x)


def test_a_buffer_over_a_parameter_keeps_the_parameter_role() -> None:
    model = BufferOverWeight()
    t = totals(read(model))
    assert t.trainable == t.params == sum(p.numel() for p in model.parameters()) == 272
    assert t.buffers == 0
    assert t.params + t.buffers == unique_elements(model)
    a = read(model)
    alias = a.find("alias")
    assert alias is not None
    shown = alias.tensors[0]
    assert not shown.is_param and shown.key == "lin.weight" and "lin.weight" in shown.why
    assert any("alias shares its storage with the parameter lin.weight" in n for n in a.notes)


class Views(nn.Module):
    def __init__(self, *views: Any, buffers: tuple[Any, ...] = ()) -> None:
        super().__init__()
        for i, v in enumerate(views):
            setattr(self, f"p{i}", nn.Parameter(v))
        for i, b in enumerate(buffers):
            self.register_buffer(f"b{i}", b)


def _base(n: int) -> Any:
    return torch.zeros(n)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Views(*(lambda b: (b[0:60], b[40:100]))(_base(100))),  # partial overlap
        lambda: Views(*(lambda b: (b[0:100], b[10:20]))(_base(100))),  # one inside the other
        lambda: Views(*(lambda b: (b[0:50], b[50:100]))(_base(100))),  # adjacent, disjoint
        lambda: Views(*(lambda b: (b.view(10, 10).t(), b[95:100]))(_base(100))),  # transposed
        lambda: Views(*(lambda b: (b[::2], b[1::2]))(_base(100))),  # interleaved, disjoint
        lambda: Views(*(lambda b: (b[::2], b[0:30]))(_base(100))),  # strided and contiguous
        lambda: Views(*(lambda b: (b.view(10, 10)[:, 2:5], b.view(10, 10)[3:6]))(_base(100))),
        lambda: Views(_base(8), buffers=(torch.zeros(1, 4).expand(3, 4),)),  # stride 0 buffer
    ],
    ids=["partial", "nested", "adjacent", "transposed", "interleaved", "strided", "blocks", "expanded"],
)
def test_overlapping_views_count_each_storage_element_once(make: Any) -> None:
    model = make()
    t = totals(read(model))
    assert t.complete
    assert t.params + t.buffers == unique_elements(model)
    assert t.n_bytes == 4 * unique_elements(model)


def test_partial_overlap_is_explained() -> None:
    b = _base(100)
    a = read(Views(b[0:60], b[40:100]))
    second = a.find("p1")
    assert second is not None
    assert second.tensors[0].overlap == 20 and "20 elements" in second.tensors[0].why


def test_a_large_strided_view_over_a_shared_storage_is_unknown_not_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    from paramscope.readers.torch import storage

    monkeypatch.setattr(storage, "MAX_ENUMERATED", 10)
    b = _base(100)
    t = totals(read(Views(b[0:30], b[::2])))
    assert not t.complete


class TwoNames(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.add_module("second", self.first)

    def forward(self, x: Any) -> Any:
        return self.second(self.first(x))


def test_a_module_under_two_names_shows_its_calls_at_both() -> None:
    model = TwoNames()
    calls = []
    handle = model.first.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 4)
    with torch.no_grad():
        model(x)
    handle.remove()
    a = read(model, input_size=(2, 4))
    first, second = a.find("first"), a.find("second")
    assert first is not None and second is not None
    assert first.calls == second.calls == len(calls) == 2
    assert second.output_shapes == first.output_shapes == ((2, 4),)
    assert second.compute == first.compute
    assert "same module object as first:" in second.note
    assert totals(a).params == sum(p.numel() for p in model.parameters())


def test_a_container_sums_a_shared_child_once() -> None:
    lin = nn.Linear(4, 4)
    holder = nn.ModuleList([lin, lin])  # never called itself: its figure is the sum of its children

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = holder

        def forward(self, x: Any) -> Any:
            for b in self.blocks:
                x = b(x)
            return x

    a = read(Model(), input_size=(1, 4))
    blocks = a.find("blocks")
    assert blocks is not None and blocks.compute is not None and a.compute is not None
    assert blocks.compute.flops == a.compute.flops == 2 * 2 * 4 * 4
