"""The core model: counts, bytes and totals derived from tensors, shared storage counted once."""

from __future__ import annotations

from paramscope.analysis import layer_totals, shared_tensors, totals
from paramscope.analysis.repeats import collapse
from paramscope.core import Anatomy, Layer, Role, Tensor
from paramscope.core.dtypes import n_bytes
from paramscope.core.tree import FlatTensor, build_tree


def _bn(name: str, n: int, *, keras: bool) -> Layer:
    # Keras counts moving statistics as non-trainable params; PyTorch keeps them as buffers.
    return Layer(
        name,
        "BatchNormalization",
        name,
        (
            Tensor("gamma", (n,), key=f"{name}/gamma"),
            Tensor("beta", (n,), key=f"{name}/beta"),
            Tensor("moving_mean", (n,), role=Role.STATISTIC, is_param=keras, key=f"{name}/mm"),
            Tensor("moving_variance", (n,), role=Role.STATISTIC, is_param=keras, key=f"{name}/mv"),
        ),
    )


def test_batchnorm_split_keras_vs_torch() -> None:
    k = totals(Anatomy("m", "keras", (_bn("bn", 512, keras=True),)))
    assert (k.params, k.trainable, k.non_trainable, k.buffers) == (2048, 1024, 1024, 0)
    t = totals(Anatomy("m", "torch", (_bn("bn", 512, keras=False),)))
    assert (t.params, t.trainable, t.non_trainable, t.buffers) == (1024, 1024, 0, 1024)
    assert k.n_bytes == t.n_bytes == 2048 * 4


def test_shared_key_counted_once_and_reported() -> None:
    w = Tensor("weight", (100, 8), key="wte")
    a = Anatomy("m", "torch", (Layer("wte", "Embedding", "wte", (w,)), Layer("head", "Linear", "head", (w,))))
    assert totals(a).params == 800
    assert shared_tensors(a) == {"wte": ["wte/weight", "head/weight"]}


def test_unknown_shape_makes_totals_incomplete_not_zero() -> None:
    a = Anatomy("m", "keras", (Layer("x", "Custom", "x", (Tensor("w", (None, 3)),)),))
    t = totals(a)
    assert not t.complete and not a.complete
    unknown_layer = Anatomy("m", "keras", (Layer("y", "Custom", "y", known=False),))
    assert not totals(unknown_layer).complete


def test_dtype_bytes_sub_byte_and_blocks() -> None:
    assert n_bytes("float32", 10) == 40
    assert n_bytes("torch.bfloat16", 3) == 6
    assert n_bytes("int4", 3) == 2  # 12 bits round up to 2 bytes
    assert n_bytes("bool", 5) == 5
    assert n_bytes("no-such-type", 5) is None
    assert n_bytes("float32", None) is None


def test_layer_totals_recursive() -> None:
    inner = Layer("d", "Dense", "m/d", (Tensor("kernel", (2, 3), key="k"),))
    outer = Layer("m", "Functional", "m", (), (inner,))
    assert layer_totals(outer).params == 6
    assert layer_totals(outer, recursive=False).params == 0


def test_build_tree_and_collapse() -> None:
    flat = [FlatTensor(f"layers.{i}.w", (4, 4), "float32") for i in range(3)]
    flat.append(FlatTensor("norm.weight", (4,), "float32"))
    layers = build_tree(flat)
    assert [x.name for x in layers] == ["layers", "norm"]
    runs = collapse(layers[0].children)
    assert len(runs) == 1 and runs[0].n == 3 and runs[0].label == "0-2"
    # a different shape breaks the run
    flat[1] = FlatTensor("layers.1.w", (4, 5), "float32")
    assert [r.n for r in collapse(build_tree(flat)[0].children)] == [1, 1, 1]


def test_unknown_role_is_in_the_total_but_in_neither_split() -> None:
    a = Anatomy("m", "onnx", (Layer("x", "", "x", (
        Tensor("w", (4, 4), role=Role.UNKNOWN, key="w"),
        Tensor("b", (4,), key="b"),
        Tensor("s", (4,), role=Role.STATISTIC, key="s"),
    )),))
    t = totals(a)
    assert (t.params, t.trainable, t.non_trainable, t.unknown_role) == (24, 4, 4, 16)
    assert t.param_bytes == 24 * 4
