"""ONNX models read from the wire format agree with the onnx package's own view of them."""

from __future__ import annotations

import subprocess
import sys
from math import prod
from pathlib import Path

import pytest

from paramscope.analysis import totals
from paramscope.core import Anatomy
from paramscope.core.errors import ModelError, UnsafeFileError
from paramscope.readers import read, reader_for
from paramscope.readers.onnx import model as onnx_file

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402


def _init(name: str, shape: tuple[int, ...], dtype: object = None) -> object:
    return nh.from_array(np.random.rand(*shape).astype(dtype or np.float32), name)


def _model() -> object:
    """Conv, BatchNorm, Gemm, Constant nodes, an If with two branches, a local function, a sparse initializer."""
    inits = [
        _init("conv.weight", (8, 3, 3, 3)), _init("conv.bias", (8,)),
        _init("bn.weight", (8,)), _init("bn.bias", (8,)), _init("bn.running_mean", (8,)), _init("bn.running_var", (8,)),
        _init("fc.weight", (10, 8), np.float16), _init("fc.bias", (10,), np.float16),
        _init("table", (7, 3), np.int64),
    ]  # fmt: skip
    sparse = h.make_sparse_tensor(
        nh.from_array(np.array([1.0, 2.0, 3.0], np.float32), "sparse_w"), nh.from_array(np.array([1, 5, 9], np.int64), "i"), [4, 4]
    )
    const = lambda name, arr: h.make_node("Constant", [], [name], value=nh.from_array(arr, name + "_v"))  # noqa: E731
    then_g = h.make_graph([const("t", np.ones((2, 10), np.float16))], "then", [], [h.make_tensor_value_info("t", TP.FLOAT16, [2, 10])])
    else_g = h.make_graph([const("e", np.zeros((2, 10), np.float16))], "else", [], [h.make_tensor_value_info("e", TP.FLOAT16, [2, 10])])
    nodes = [
        h.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        h.make_node("BatchNormalization", ["c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"], ["b"], name="/bn/BN"),
        h.make_node("Relu", ["b"], ["r"], name="/relu/Relu"),
        h.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/Pool"),
        h.make_node("Flatten", ["p"], ["f"], name="/flat/Flatten"),
        h.make_node("Cast", ["f"], ["f16"], name="/cast/Cast", to=TP.FLOAT16),
        h.make_node("Gemm", ["f16", "fc.weight", "fc.bias"], ["y0"], name="/fc/Gemm", transB=1),
        h.make_node("MyScale", ["y0"], ["y"], domain="local", name="/scale/MyScale"),
        h.make_node("If", ["cond"], ["z"], name="/branch/If", then_branch=then_g, else_branch=else_g),
        h.make_node("Add", ["sparse_w", "sparse_w"], ["s"], name="/sp/Add"),
        h.make_node("Gather", ["table", "idx"], ["g"], name="/emb/Gather"),
        h.make_node("Mul", ["y", "z"], ["out"], name="/mul/Mul"),
    ]
    fn = h.make_function(
        "local", "MyScale", ["a"], ["o"],
        [const("two", np.array([2.0, 3.0], np.float16)), h.make_node("Mul", ["a", "two"], ["o"])],
        [h.make_opsetid("", 17)],
    )  # fmt: skip
    graph = h.make_graph(
        nodes, "g",
        [h.make_tensor_value_info("x", TP.FLOAT, [2, 3, 16, 16]), h.make_tensor_value_info("cond", TP.BOOL, []),
         h.make_tensor_value_info("idx", TP.INT64, [5])],
        [h.make_tensor_value_info("out", TP.FLOAT16, [2, 10]), h.make_tensor_value_info("s", TP.FLOAT, [4, 4]),
         h.make_tensor_value_info("g", TP.INT64, [5, 3])],
        initializer=inits, sparse_initializer=[sparse],
    )  # fmt: skip
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("local", 1)], functions=[fn])
    onnx.checker.check_model(model)
    return model


def _dense(sparse: object) -> np.ndarray:
    """A SparseTensorProto as the dense array it stands for, from the onnx package's arrays."""
    values = nh.to_array(sparse.values)  # type: ignore[attr-defined]
    indices = nh.to_array(sparse.indices)  # type: ignore[attr-defined]
    dense = np.zeros(tuple(sparse.dims), values.dtype)  # type: ignore[attr-defined]
    if indices.ndim == 1:  # linearised positions
        dense.reshape(-1)[indices] = values
    else:  # one row of coordinates per value
        dense[tuple(indices.T)] = values
    return dense


def _oracle(model: object) -> tuple[int, int, dict[str, int]]:
    """(elements, bytes, elements by dtype) of every tensor the model stores, from the onnx package."""
    arrays = [nh.to_array(t) for t in model.graph.initializer]  # type: ignore[attr-defined]
    for s in model.graph.sparse_initializer:  # type: ignore[attr-defined]
        arrays.append(_dense(s))  # counted as the dense tensor ONNX Runtime loads

    def constants(nodes: object) -> None:
        for n in nodes:  # type: ignore[attr-defined]
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    arrays.append(nh.to_array(a.t))
                for g in [a.g] if a.type == onnx.AttributeProto.GRAPH else []:
                    constants(g.node)

    constants(model.graph.node)  # type: ignore[attr-defined]
    for f in model.functions:  # type: ignore[attr-defined]
        constants(f.node)
    by: dict[str, int] = {}
    for a in arrays:
        by[str(a.dtype)] = by.get(str(a.dtype), 0) + a.size
    return sum(a.size for a in arrays), sum(a.nbytes for a in arrays), by


def _check_against_onnx(a: Anatomy, model: object) -> None:
    count, nbytes, by = _oracle(model)
    t = totals(a)
    assert t.params + t.buffers == count
    assert t.n_bytes == nbytes
    assert {d.dtype: d.count for d in t.by_dtype} == by


def test_helper_model_counts_match_onnx(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert reader_for(path) is onnx_file
    a = read(path)
    _check_against_onnx(a, model)
    conv = a.find("/conv/Conv")
    assert conv is not None and [x.name for x in conv.tensors] == ["conv.weight", "conv.bias"]
    bn = a.find("/bn/BN")
    assert bn is not None and {x.name: x.is_param for x in bn.tensors}["bn.running_mean"] is False
    # Explained with its siblings in view: a weight next to running statistics is BatchNorm's scale.
    assert "RMSNorm" not in {x.name: x.why for x in bn.tensors}["bn.weight"]
    branch = a.find("/branch/If")
    assert branch is not None and {c.name for c in branch.children} == {"then_branch", "else_branch"}
    call = a.find("/scale/MyScale")
    assert call is not None and call.children and "local function" in call.note
    sp = a.find("/sp/Add")
    assert sp is not None and [x.shape for x in sp.tensors] == [(4, 4)]
    assert a.metadata["opsets"] == "ai.onnx 17, local 1"
    assert a.inputs == ((2, 3, 16, 16), (), (5,))


def test_flops_per_node_from_inferred_shapes(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    a = read(path)
    conv = a.find("/conv/Conv")
    assert conv is not None and conv.compute is not None and conv.output_shapes == ((2, 8, 16, 16),)
    assert conv.compute.flops == 2 * prod((2, 8, 16, 16)) * (3 * 3 * 3)
    assert conv.compute.elementwise_flops == prod((2, 8, 16, 16))  # bias
    gemm = a.find("/fc/Gemm")
    assert gemm is not None and gemm.compute is not None and gemm.compute.flops == 2 * 2 * 10 * 8
    bn = a.find("/bn/BN")
    assert bn is not None and bn.compute is not None and bn.compute.elementwise_flops == (2 + 2) * prod((2, 8, 16, 16))
    # subtract mean and scale (2), + 1 per affine tensor (weight, bias), as for torch's batch_norm
    flat = a.find("/flat/Flatten")
    assert flat is not None and flat.compute is not None and flat.compute.flops == 0
    call = a.find("/scale/MyScale")
    assert call is not None and call.compute is not None and call.compute.flops is None  # no formula: unknown
    assert a.compute is not None and a.compute.flops is None and "function MyScale" in a.compute.unknown_ops


def test_symbolic_batch_unknown_until_inputs_given(tmp_path: Path) -> None:
    graph = h.make_graph(
        [h.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [h.make_tensor_value_info("x", TP.FLOAT, ["batch", 16])], [h.make_tensor_value_info("y", TP.FLOAT, ["batch", 4])],
        initializer=[_init("w", (16, 4))],
    )  # fmt: skip
    path = tmp_path / "dyn.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    a = read(path)
    mm = a.find("mm")
    assert mm is not None and mm.compute is not None and mm.compute.flops is None
    assert any("symbolic (batch)" in n and "--input x=" in n for n in a.notes)
    for opts in ({"inputs": ["x=float32[3,16]"]}, {"input_size": (3, 16)}):
        b = read(path, **opts)
        mm = b.find("mm")
        assert mm is not None and mm.compute is not None and mm.compute.flops == 2 * 3 * 16 * 4
        assert b.compute is not None and b.compute.flops == 2 * 3 * 16 * 4
    with pytest.raises(ModelError, match="no input 'nope'"):
        read(path, inputs=["nope=float32[1,2]"])


def test_attention_op_flops(tmp_path: Path) -> None:
    b, heads, s, d = 2, 4, 8, 16
    shape = [b, heads, s, d]
    graph = h.make_graph(
        [h.make_node("Attention", ["q", "k", "v"], ["y"], name="attn")], "g",
        [h.make_tensor_value_info(n, TP.FLOAT, shape) for n in "qkv"], [h.make_tensor_value_info("y", TP.FLOAT, shape)],
    )  # fmt: skip
    path = tmp_path / "attn.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 23)]), path)
    attn = read(path).find("attn")
    assert attn is not None and attn.compute is not None
    assert attn.compute.attention_flops == 2 * (2 * b * heads * s * s * d)
    assert attn.compute.flops == 0


def test_external_data_referenced_not_loaded(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size > 0
    a = read(path)
    _check_against_onnx(a, onnx.load(path))
    assert any("external" in x.why for la in a.walk() for x in la.tensors)
    (tmp_path / "ext.data").unlink()
    a = read(path)
    assert any("is missing" in n for n in a.notes)


def test_external_data_outside_folder_refused(tmp_path: Path) -> None:
    model = _model()
    w = model.graph.initializer[0]  # type: ignore[attr-defined]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TP.EXTERNAL
    del w.external_data[:]
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    path = tmp_path / "escape.onnx"
    path.write_bytes(model.SerializeToString())  # type: ignore[attr-defined]
    with pytest.raises(UnsafeFileError, match=r"outside the model's folder"):
        read(path)
    entry.value = "/etc/passwd"
    path.write_bytes(model.SerializeToString())  # type: ignore[attr-defined]
    with pytest.raises(UnsafeFileError, match="absolute path"):
        read(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_export_and_checkpoint_of_one_model(tmp_path: Path) -> None:
    """The same model as .pt and as an exported .onnx: each agrees with its own library."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = torch.nn.Embedding(50, 8)
            self.fc = torch.nn.Linear(8, 8)
            self.bn = torch.nn.BatchNorm1d(8)
            self.head = torch.nn.Linear(8, 50, bias=False)
            self.head.weight = self.wte.weight

        def forward(self, x: object) -> object:
            hid = self.wte(x)
            hid = self.bn(self.fc(hid).transpose(1, 2)).transpose(1, 2)
            return self.head(hid)

    m = Net().eval()
    pt = tmp_path / "net.pt"
    torch.save(m.state_dict(), pt)
    t = totals(read(pt))
    assert t.params == sum(p.numel() for p in m.parameters())  # tied head counted once
    assert t.buffers == sum(b.numel() for b in m.buffers())
    path = tmp_path / "net.onnx"
    try:
        torch.onnx.export(m, (torch.zeros(2, 5, dtype=torch.long),), str(path), dynamo=False)
    except Exception as e:  # pragma: no cover - depends on the installed exporter
        pytest.skip(f"torch.onnx.export does not work here: {e}")
    a = read(path)
    _check_against_onnx(a, onnx.load(path))
    assert a.metadata["producer"].startswith("pytorch")
    assert any("onnx::" in n for n in a.notes)
    assert any("Identity nodes pass initializers on" in n for n in a.notes)
    head = a.find("/head/MatMul")
    assert head is not None and head.compute is not None and head.compute.flops == 2 * 2 * 5 * 8 * 50
    fc = a.find("fc")  # a group of the exporter's /fc/MatMul and /fc/Add: its FLOPs are theirs
    assert fc is not None and fc.compute is not None and fc.compute.flops == 2 * 2 * 5 * 8 * 8
    assert a.compute is not None and a.compute.flops == 2 * 2 * 5 * 8 * (8 + 50)


def test_reading_onnx_imports_no_framework(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    code = (
        "import sys; from paramscope.readers import read; a = read(sys.argv[1]);"
        "print([m for m in ('torch', 'keras', 'tensorflow') if m in sys.modules])"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env={"PYTHONPATH": src}, check=True)
    assert out.stdout.strip() == "[]"


def test_shapes_inferred_without_large_weights_and_mmap_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference runs on the graph without big payloads, yet small shape constants still propagate."""
    graph = h.make_graph(
        [
            h.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul"),
            h.make_node("Reshape", ["y", "shape"], ["r"], name="/Reshape"),
            h.make_node("ReduceSum", ["r"], ["s"], name="/ReduceSum", keepdims=0),
        ],
        "g",
        [h.make_tensor_value_info("x", TP.FLOAT, [2, 64])],
        [h.make_tensor_value_info("s", TP.FLOAT, None)],
        initializer=[_init("w", (64, 2048)), nh.from_array(np.array([2, 8, 256], np.int64), "shape")],
    )
    path = tmp_path / "big.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    a = read(path)
    reshape = a.find("/Reshape")
    assert reshape is not None and reshape.output_shapes == ((2, 8, 256),)
    red = a.find("/ReduceSum")
    assert red is not None and red.compute is not None and red.compute.elementwise_flops == 2 * 8 * 256
    monkeypatch.setattr(onnx_file, "_READ_LIMIT", 0)
    assert read(path) == a


def test_contrib_attention_flops(tmp_path: Path) -> None:
    b, s, length, hidden, heads = 2, 8, 10, 32, 4
    graph = h.make_graph(
        [
            h.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], name="mha", domain="com.microsoft", num_heads=heads),
            h.make_node("Attention", ["q", "w"], ["z"], name="attn", domain="com.microsoft", num_heads=heads),
        ],
        "g",
        [h.make_tensor_value_info("q", TP.FLOAT, [b, s, hidden]), h.make_tensor_value_info("k", TP.FLOAT, [b, length, hidden]),
         h.make_tensor_value_info("v", TP.FLOAT, [b, length, hidden])],
        [h.make_tensor_value_info("y", TP.FLOAT, [b, s, hidden]), h.make_tensor_value_info("z", TP.FLOAT, [b, s, hidden])],
        initializer=[_init("w", (hidden, 3 * hidden))],
    )  # fmt: skip
    path = tmp_path / "contrib.onnx"
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    onnx.save(model, path)
    a = read(path)
    mha, attn = a.find("mha"), a.find("attn")
    assert mha is not None and mha.compute is not None and attn is not None and attn.compute is not None
    assert mha.compute.attention_flops == 2 * (2 * b * s * length * hidden)
    assert mha.compute.flops == 0
    assert attn.compute.flops == 2 * b * s * hidden * 3 * hidden
    assert attn.compute.attention_flops == 4 * b * s * s * hidden
    assert mha.type == "com.microsoft.MultiHeadAttention"


def test_reads_without_the_onnx_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.onnx"
    model = _model()
    onnx.save(model, path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    a = read(path)
    _check_against_onnx(a, model)
    assert any("Install onnx" in n for n in a.notes)
    conv = a.find("/conv/Conv")  # no value_info in the file: its output shape is unknown, so are its FLOPs
    assert conv is not None and conv.compute is not None and conv.compute.flops is None
