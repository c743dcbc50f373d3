"""FLOPs of one ONNX node from its input and output shapes.

Convention (as in docs/flops.md): one multiply-add is 2 FLOPs. Matrix products and
convolutions go in ``flops``; the score and value products of attention operators in
``attention_flops``; bias adds, normalisation, activations, softmax, pooling and other
elementwise work in ``elementwise_flops``. A count that needs a shape that is not known is
``None``; an operator with no formula is listed in ``unknown_ops``. Nothing is ever guessed
as 0 except operators that only move or reshape data.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

from paramscope.core.anatomy import Compute
from paramscope.readers.onnx.proto import ONode

__all__ = ["node_compute", "ELEMENTWISE_PER_OUTPUT", "DATA_MOVEMENT"]

Shape = tuple[int | None, ...]
ShapeOf = Callable[[str], Shape | None]

#: Operators that only move, copy, reshape or describe data: 0 FLOPs.
DATA_MOVEMENT = frozenset(
    "Reshape Transpose Flatten Squeeze Unsqueeze Concat Split Slice Gather GatherElements GatherND "
    "Shape Size Identity Constant ConstantOfShape Cast CastLike Expand Tile Pad DepthToSpace "
    "SpaceToDepth Range NonZero Dropout EyeLike ScatterND ScatterElements Resize Upsample If Loop "
    "Scan Compress Trilu OneHot Where TopK ArgMax ArgMin QuantizeLinear DequantizeLinear".split()
)

#: FLOPs per output element of elementwise operators (softmax: max, subtract, exp, sum, divide).
ELEMENTWISE_PER_OUTPUT: dict[str, int] = {
    **dict.fromkeys(
        "Add Sub Mul Div Pow Sqrt Reciprocal Neg Abs Exp Log Erf Tanh Sigmoid Relu LeakyRelu Elu "
        "Selu Celu PRelu HardSigmoid HardSwish Softplus Softsign Gelu Mish Sin Cos Floor Ceil Round "
        "Clip Max Min Mean Sum Equal Greater Less GreaterOrEqual LessOrEqual Not And Or Xor Sign "
        "IsNaN IsInf Mod BitShift FastGelu BiasGelu QuickGelu".split(),
        1,
    ),
    "Softmax": 5,
    "LogSoftmax": 6,
}

#: Per-element cost of normalisations at inference: BatchNorm scales and shifts (2); LayerNorm
#: computes mean (1), subtracts it (1), squares and sums for the variance (2), normalises (1),
#: scales (1) and shifts (1).
_NORM = {"BatchNormalization": 2, "LayerNormalization": 7, "SimplifiedLayerNormalization": 5,
         "SkipLayerNormalization": 8, "SkipSimplifiedLayerNormalization": 6, "RMSNormalization": 5,
         "InstanceNormalization": 7, "GroupNormalization": 7}  # fmt: skip


def _n(shape: Shape | None) -> int | None:
    if shape is None or any(d is None for d in shape):
        return None
    return prod(d for d in shape if d is not None)


def _mul(*xs: int | None) -> int | None:
    if any(x is None for x in xs):
        return None
    return prod(x for x in xs if x is not None)


def _dim(shape: Shape | None, i: int) -> int | None:
    if shape is None or not -len(shape) <= i < len(shape):
        return None
    return shape[i]


def node_compute(node: ONode, shape_of: ShapeOf) -> Compute:
    """FLOPs of one forward pass through ``node``.

    Args:
        node: the node.
        shape_of: the shape of a value by name (``None`` when unknown).

    Returns:
        The node's compute; unknown parts are ``None``.

    Example:
        >>> from paramscope.readers.onnx.proto import ONode
        >>> n = ONode(op_type="MatMul", inputs=["a", "b"], outputs=["y"])
        >>> node_compute(n, {"a": (2, 8), "b": (8, 4), "y": (2, 4)}.get).flops
        128
    """
    op = node.op_type
    ins = [shape_of(x) if x else None for x in node.inputs]
    out = shape_of(node.outputs[0]) if node.outputs and node.outputs[0] else None
    first = ins[0] if ins else None
    if node.domain in ("", "ai.onnx", "com.microsoft") and op in DATA_MOVEMENT:
        return Compute(0, 0, 0)
    if op in ("MatMul", "MatMulInteger", "FusedMatMul"):
        return Compute(_mul(2, _n(out), _dim(first, -1)), 0, 0)
    if op == "Gemm":
        k = _dim(first, 0 if (node.attrs.get("transA") and node.attrs["transA"].i) else -1)
        bias = _n(out) if len(node.inputs) > 2 and node.inputs[2] else 0
        return Compute(_mul(2, _n(out), k), 0, bias)
    if op in ("Conv", "ConvInteger", "FusedConv"):
        w = ins[1] if len(ins) > 1 else None
        per_out = _n(w[1:]) if w is not None else None  # C_in / group x kernel
        bias = _n(out) if len(node.inputs) > 2 and node.inputs[2] else 0
        return Compute(_mul(2, _n(out), per_out), 0, bias)
    if op == "ConvTranspose":
        w = ins[1] if len(ins) > 1 else None
        per_in = _n(w[1:]) if w is not None else None  # C_out / group x kernel
        bias = _n(out) if len(node.inputs) > 2 and node.inputs[2] else 0
        return Compute(_mul(2, _n(first), per_in), 0, bias)
    if op in _NORM:
        return Compute(0, 0, _mul(_NORM[op], _n(first)))
    if op in ELEMENTWISE_PER_OUTPUT:
        return Compute(0, 0, _mul(ELEMENTWISE_PER_OUTPUT[op], _n(out)))
    if op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
              "ReduceSumSquare", "GlobalAveragePool", "GlobalMaxPool"):  # fmt: skip
        return Compute(0, 0, _n(first))
    if op in ("MaxPool", "AveragePool", "LpPool"):
        kernel = node.attrs.get("kernel_shape")
        k = prod(kernel.ints) if kernel and kernel.ints else None
        return Compute(0, 0, _mul(_n(out), k))
    if op == "Attention" and node.domain in ("", "ai.onnx"):
        return _attention_onnx(node, ins)
    if op == "MultiHeadAttention" and node.domain == "com.microsoft":
        return _mha_ms(node, ins)
    if op == "Attention" and node.domain == "com.microsoft":
        return _attention_ms(node, ins)
    label = f"{node.domain}.{op}" if node.domain not in ("", "ai.onnx") else op
    return Compute(None, None, None, unknown_ops=(label,))


def _heads(node: ONode, name: str) -> int | None:
    a = node.attrs.get(name)
    return a.i if a is not None and a.i else None


def _attention_onnx(node: ONode, ins: list[Shape | None]) -> Compute:
    """ONNX ``Attention`` (opset 23): Q, K, V as (B, S, hidden) or (B, heads, S, head_dim)."""
    q, k, v = (ins + [None, None, None])[:3]
    if q is None or k is None or v is None or len(q) != len(k):
        return Compute(0, None, None)
    if len(q) == 4:
        b, hq, sq, d = q
        skv, dv = k[2], v[3]
    else:
        b, sq, hidden = q
        skv = k[1]
        hq = _heads(node, "q_num_heads")
        hkv = _heads(node, "kv_num_heads")
        d = None if hidden is None or not hq else hidden // hq
        dv = None if v[2] is None or not hkv else v[2] // hkv
    scores = _mul(2, b, hq, sq, skv, d)
    values = _mul(2, b, hq, sq, skv, dv)
    total = None if scores is None or values is None else scores + values
    return Compute(0, total, _mul(5, b, hq, sq, skv))


def _mha_ms(node: ONode, ins: list[Shape | None]) -> Compute:
    """com.microsoft ``MultiHeadAttention``: query (B, S, D), key (B, L, D), value (B, L, Dv)."""
    q, k, v = (ins + [None, None, None])[:3]
    heads = _heads(node, "num_heads")
    if q is None or k is None or v is None or len(q) != 3 or len(k) != 3 or len(v) != 3:
        return Compute(0, None, None)
    b, s, d = q
    length, dv = k[1], v[2]
    total = _mul(2, b, s, length, d)
    values = _mul(2, b, s, length, dv)
    att = None if total is None or values is None else total + values
    return Compute(0, att, _mul(5, b, heads, s, length))


def _attention_ms(node: ONode, ins: list[Shape | None]) -> Compute:
    """com.microsoft ``Attention``: input (B, S, In) projected by weights (In, 3 x D)."""
    x, w = (ins + [None, None])[:2]
    heads = _heads(node, "num_heads")
    if x is None or w is None or len(x) != 3 or len(w) != 2:
        return Compute(None, None, None)
    b, s, _ = x
    proj = _mul(2, b, s, w[0], w[1])
    d = None if w[1] is None else w[1] // 3
    att = _mul(4, b, s, s, d)
    return Compute(proj, att, _mul(5, b, heads, s, s))
