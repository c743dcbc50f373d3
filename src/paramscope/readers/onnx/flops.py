"""FLOPs of one ONNX node from its input and output shapes, in the convention of docs/flops.md.

One multiply-add is 2 FLOPs. Matrix products and convolutions with a weight operand go in
``flops``; products of two activations (``Q K^T`` and ``softmax(...) V`` of attention written
out as ``MatMul``, ``Softmax``, ``MatMul``) and the score and value products of attention
operators go in ``attention_flops``, exactly as for a PyTorch module; bias adds, normalisation,
activations, softmax, pooling, interpolation and other elementwise work go in
``elementwise_flops`` with the per-element costs of ``trace/op_costs.py``. A count that needs a
shape that is not known is ``None``; an operator with no formula is listed in ``unknown_ops``
and makes unknown the figure it would add to. Only operators that move, index, cast or create
data cost 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from math import prod

from paramscope.core.anatomy import Compute
from paramscope.readers.onnx.proto import ONode

__all__ = ["node_compute", "ELEMENTWISE_PER_OUTPUT", "DATA_MOVEMENT", "NO_FORMULA"]

Shape = tuple[int | None, ...]
ShapeOf = Callable[[str], Shape | None]
#: Whether a value is computed from weights and constants alone (not from the model's inputs).
IsStatic = Callable[[str], bool]

#: Operators that only move, copy, reshape, index, cast or create data: 0 FLOPs (PyTorch's
#: ``FREE_OPS``: views, ``cat``, ``gather``, ``scatter``, ``tril``, ``one_hot``, casts...).
DATA_MOVEMENT = frozenset(
    "Reshape Transpose Flatten Squeeze Unsqueeze Concat Split Slice Gather GatherElements GatherND "
    "Shape Size Identity Constant ConstantOfShape Cast CastLike Expand Tile Pad DepthToSpace "
    "SpaceToDepth Range NonZero Dropout EyeLike ScatterND ScatterElements If Loop Scan Compress "
    "Trilu OneHot QuantizeLinear DequantizeLinear SequenceConstruct SequenceAt SplitToSequence "
    "ConcatFromSequence RandomNormal RandomUniform RandomNormalLike RandomUniformLike".split()
)

#: Operators known not to be matrix products that have no cost formula (as ``sort``/``topk``
#: in PyTorch): their elementwise figure is unknown, the headline stays known.
NO_FORMULA = frozenset("TopK Unique NonMaxSuppression RoiAlign GridSample Col2Im Det".split())

#: FLOPs per output element of elementwise operators; composite activations count the
#: primitives of their definition, as in ``trace/op_costs.py``.
ELEMENTWISE_PER_OUTPUT: dict[str, int] = {
    **dict.fromkeys(
        "Add Sub Mul Div Pow Sqrt Reciprocal Neg Abs Exp Log Erf Tanh Sigmoid Relu LeakyRelu Elu "
        "Selu Celu ThresholdedRelu Softsign Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh "
        "Floor Ceil Round Clip Max Min Mean Sum Equal Greater Less GreaterOrEqual LessOrEqual Not "
        "And Or Xor Sign IsNaN IsInf Mod BitShift BitwiseAnd BitwiseOr BitwiseXor BitwiseNot "
        "Where Shrink".split(),
        1,
    ),
    "PRelu": 2,  # compare, multiply by the slope
    "HardSigmoid": 3,  # clamp(alpha x + beta, 0, 1)
    "HardSwish": 4,  # x * hardsigmoid(x)
    "Softplus": 3,  # log(1 + exp(x))
    "Mish": 5,  # x * tanh(log(1 + exp(x)))
    "FastGelu": 8,  # com.microsoft, the tanh form of GELU
    "BiasGelu": 6,  # com.microsoft: bias add + GELU (erf)
    "QuickGelu": 3,  # com.microsoft: x * sigmoid(1.702 x)
}

#: Softmax over a row: max, subtract, exp, sum, divide; log-softmax costs the same in PyTorch.
_SOFTMAX = {"Softmax": 5, "LogSoftmax": 5}
#: Reductions: per input element (vector norm: square and sum; log-sum-exp as PyTorch's 4).
_REDUCE = {
    **dict.fromkeys("ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ArgMax ArgMin "
                    "GlobalAveragePool GlobalMaxPool CumSum".split(), 1),
    "ReduceL2": 2, "ReduceSumSquare": 2, "ReduceLogSum": 2, "ReduceLogSumExp": 4, "GlobalLpPool": 2,
}  # fmt: skip
#: Normalisations, per input element, before their affine tensors (+1 per scale or bias input):
#: LayerNorm / GroupNorm / InstanceNorm: mean, subtract, square, sum, scale (5); BatchNorm at
#: inference: subtract mean, scale (2); RMSNorm: square, sum, scale (3). The skip forms add
#: the residual (+1).
_NORM = {"BatchNormalization": 2, "LayerNormalization": 5, "SimplifiedLayerNormalization": 3,
         "SkipLayerNormalization": 6, "SkipSimplifiedLayerNormalization": 4, "RMSNormalization": 3,
         "InstanceNormalization": 5, "GroupNormalization": 5}  # fmt: skip
#: Which inputs of a normalisation are affine tensors (scale, bias); BatchNorm's mean and
#: variance are folded into the "subtract mean, scale" cost.
_AFFINE_INPUTS = {"BatchNormalization": (1, 2), "SkipLayerNormalization": (2, 3),
                  "SkipSimplifiedLayerNormalization": (2,)}  # fmt: skip
_STANDARD = ("", "ai.onnx", "com.microsoft")


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


def _product(flops: int | None, both_data: bool, elementwise: int | None = 0) -> Compute:
    """A matrix product: attention when both operands come from the inputs, else the headline."""
    return Compute(0, flops, elementwise) if both_data else Compute(flops, 0, elementwise)


def node_compute(node: ONode, shape_of: ShapeOf, is_static: IsStatic) -> Compute:
    """FLOPs of one forward pass through ``node``.

    Args:
        node: the node.
        shape_of: the shape of a value by name (``None`` when unknown).
        is_static: whether a value comes from weights and constants alone; a product of two
            values that are not is an attention product.

    Returns:
        The node's compute; unknown parts are ``None``.

    Example:
        >>> from paramscope.readers.onnx.proto import ONode
        >>> n = ONode(op_type="MatMul", inputs=["a", "w"], outputs=["y"])
        >>> shapes = {"a": (2, 8), "w": (8, 4), "y": (2, 4)}
        >>> node_compute(n, shapes.get, {"w"}.__contains__).flops
        128
        >>> node_compute(n, shapes.get, set().__contains__).attention_flops
        128
    """
    op = node.op_type
    ins = [shape_of(x) if x else None for x in node.inputs]
    out = shape_of(node.outputs[0]) if node.outputs and node.outputs[0] else None
    first = ins[0] if ins else None
    label = f"{node.domain}.{op}" if node.domain not in ("", "ai.onnx") else op
    if node.domain not in _STANDARD:
        return Compute(None, None, None, unknown_ops=(label,))
    both_data = len(node.inputs) >= 2 and not is_static(node.inputs[0]) and not is_static(node.inputs[1])
    if op in DATA_MOVEMENT:
        return Compute(0, 0, 0)
    if op in NO_FORMULA:
        return Compute(0, 0, None, unknown_ops=(label,))
    if op in ("MatMul", "MatMulInteger", "FusedMatMul"):
        return _product(_mul(2, _n(out), _dim(first, -1)), both_data)
    if op == "Gemm":
        k = _dim(first, 0 if (node.attrs.get("transA") and node.attrs["transA"].i) else -1)
        bias = _n(out) if len(node.inputs) > 2 and node.inputs[2] else 0
        return _product(_mul(2, _n(out), k), both_data, bias)
    if op == "Einsum":
        return _product(_einsum(node, ins), both_data)
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
        affine = _AFFINE_INPUTS.get(op, (1, 2))
        per = _NORM[op] + sum(1 for i in affine if i < len(node.inputs) and node.inputs[i])
        return Compute(0, 0, _mul(per, _n(first)))
    if op == "Gelu":
        approximate = node.attrs.get("approximate")
        tanh = approximate is not None and approximate.s == "tanh"
        return Compute(0, 0, _mul(8 if tanh else 5, _n(out)))
    if op in ELEMENTWISE_PER_OUTPUT:
        return Compute(0, 0, _mul(ELEMENTWISE_PER_OUTPUT[op], _n(out)))
    if op in _SOFTMAX:
        return Compute(0, 0, _mul(_SOFTMAX[op], _n(first)))
    if op in _REDUCE:
        return Compute(0, 0, _mul(_REDUCE[op], _n(first)))
    if op in ("MaxPool", "AveragePool", "LpPool"):
        kernel = node.attrs.get("kernel_shape")
        k = prod(kernel.ints) if kernel and kernel.ints else None
        return Compute(0, 0, _mul(_n(out), k))
    if op in ("Resize", "Upsample"):
        return _resize(node, first, out, label)
    if op == "Attention" and node.domain in ("", "ai.onnx"):
        return _attention_onnx(node, ins)
    if op == "MultiHeadAttention" and node.domain == "com.microsoft":
        return _mha_ms(node, ins)
    if op == "Attention" and node.domain == "com.microsoft":
        return _attention_ms(node, ins)
    return Compute(None, None, None, unknown_ops=(label,))


def _resize(node: ONode, first: Shape | None, out: Shape | None, label: str) -> Compute:
    """Resize: nearest neighbour is a copy (0); linear interpolation weighs 2, 4 or 8 inputs
    per output element (3, 7, 15 FLOPs over 1, 2, 3 resized axes), cubic 16 (31, 2 axes), as
    PyTorch's ``upsample_*`` costs."""
    mode_attr = node.attrs.get("mode")
    mode = mode_attr.s if mode_attr is not None and mode_attr.s else "nearest"
    if mode == "nearest":
        return Compute(0, 0, 0)
    if first is None or out is None or len(first) != len(out):
        return Compute(0, 0, None)
    resized = sum(1 for a, b in zip(first, out) if a is None or b is None or a != b)
    if mode == "linear" and 1 <= resized <= 3:
        return Compute(0, 0, _mul(2 ** (resized + 1) - 1, _n(out)))
    if mode == "cubic" and resized == 2:
        return Compute(0, 0, _mul(31, _n(out)))
    return Compute(0, 0, None, unknown_ops=(f"{label} ({mode}, {resized} axes)",))


_EINSUM_TERM = re.compile(r"^[A-Za-z]*$")


def _einsum(node: ONode, ins: list[Shape | None]) -> int | None:
    """A two-operand contraction: 2 x the product of every index's size (PyTorch's ``einsum``
    is a ``bmm`` of the same size); without a summed index it is a product per output element."""
    eq_attr = node.attrs.get("equation")
    if eq_attr is None or len(ins) != 2 or ins[0] is None or ins[1] is None:
        return None
    eq = (eq_attr.s or "").replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != 2 or not rhs or not all(_EINSUM_TERM.match(t) for t in (*terms, rhs)):
        return None  # implicit output or an ellipsis: no formula here
    sizes: dict[str, int | None] = {}
    for term, shape in zip(terms, ins):
        if shape is None or len(term) != len(shape):
            return None
        for letter, d in zip(term, shape):
            sizes[letter] = d if sizes.get(letter) in (None, 1) else sizes[letter]
    summed = set(sizes) - set(rhs)
    total = _mul(*sizes.values())
    return _mul(2, total) if summed else total


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
    causal = node.attrs.get("is_causal")
    masked = (len(node.inputs) > 3 and bool(node.inputs[3])) or bool(causal is not None and causal.i)
    return Compute(0, total, _mul(7 if masked else 6, b, hq, sq, skv))


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
    # Scale 1 + softmax 5 per score, + 1 with a padding mask or an attention bias (inputs 4, 5).
    masked = any(i < len(node.inputs) and node.inputs[i] for i in (4, 5))
    return Compute(0, att, _mul(7 if masked else 6, b, heads, s, length))


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
    return Compute(proj, att, _mul(6, b, heads, s, s))
