"""ONNX messages decoded from the wire format into small records, tensor data left unread.

Field numbers are those of ``onnx/onnx.proto`` (ModelProto, GraphProto, NodeProto,
AttributeProto, TensorProto, SparseTensorProto, ValueInfoProto, TypeProto, FunctionProto).
Only what paramscope needs is kept; every other field is skipped by its length.

This file is long (about 400 lines) because it is ONNX's message schema: one small decoder per
protobuf message, kept together so the schema reads as one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paramscope.core import limits
from paramscope.core.errors import CorruptFileError
from paramscope.parsers.protobuf import LEN, Buffer, Field, encode_len

__all__ = ["OTensor", "OSparse", "OValue", "OAttr", "ONode", "OGraph", "OFunction", "OModel",
           "parse_model", "strip_tensor_data", "ONNX_DTYPES", "MAX_GRAPH_DEPTH"]  # fmt: skip

#: TensorProto.DataType numbers -> canonical dtype names.
ONNX_DTYPES: dict[int, str] = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz",
    19: "float8_e5m2", 20: "float8_e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4_e2m1fn",
    24: "float8_e8m0fnu", 25: "uint2", 26: "int2", 27: "float6_e2m3fn", 28: "float6_e3m2fn",
}  # fmt: skip

#: Subgraphs (If/Loop/Scan bodies) nested deeper than this are refused.
MAX_GRAPH_DEPTH = 32


@dataclass(slots=True)
class OTensor:
    """A TensorProto without its data: name, dims, type and where its bytes are."""

    name: str = ""
    dims: tuple[int, ...] = ()
    data_type: int = 0
    raw_bytes: int | None = None
    typed_values: int = 0
    external: dict[str, str] = field(default_factory=dict)
    data_location: int = 0
    at: int = 0

    @property
    def dtype(self) -> str:
        """Canonical dtype name (``"onnx_type_<n>"`` for numbers paramscope does not know)."""
        return ONNX_DTYPES.get(self.data_type, f"onnx_type_{self.data_type}")


@dataclass(slots=True)
class OSparse:
    """A SparseTensorProto: stored values and indices, and the dense shape."""

    values: OTensor
    indices: OTensor
    dims: tuple[int, ...]


@dataclass(slots=True)
class OValue:
    """A ValueInfoProto: a graph value's name, element type and shape (``None`` dims symbolic)."""

    name: str
    elem_type: int = 0
    shape: tuple[int | None, ...] | None = None
    symbols: tuple[str, ...] = ()


@dataclass(slots=True)
class OAttr:
    """An AttributeProto: the scalar, list, tensor or subgraph values paramscope reads."""

    name: str = ""
    i: int | None = None
    f: float | None = None
    s: str | None = None
    ints: list[int] = field(default_factory=list)
    n_values: int = 0
    tensors: list[OTensor] = field(default_factory=list)
    sparse: list[OSparse] = field(default_factory=list)
    graphs: list[OGraph] = field(default_factory=list)


@dataclass(slots=True)
class ONode:
    """A NodeProto."""

    name: str = ""
    op_type: str = ""
    domain: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attrs: dict[str, OAttr] = field(default_factory=dict)


@dataclass(slots=True)
class OGraph:
    """A GraphProto."""

    name: str = ""
    nodes: list[ONode] = field(default_factory=list)
    initializers: list[OTensor] = field(default_factory=list)
    sparse_initializers: list[OSparse] = field(default_factory=list)
    inputs: list[OValue] = field(default_factory=list)
    outputs: list[OValue] = field(default_factory=list)
    value_info: list[OValue] = field(default_factory=list)


@dataclass(slots=True)
class OFunction:
    """A FunctionProto (a model-local function called by nodes of its domain and name)."""

    name: str = ""
    domain: str = ""
    nodes: list[ONode] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass(slots=True)
class OModel:
    """A ModelProto."""

    ir_version: int = 0
    producer: str = ""
    producer_version: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    graph: OGraph = field(default_factory=OGraph)
    functions: list[OFunction] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


class _Parser:
    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        # Counted while parsing, so a file of a million tiny nodes is refused before they are
        # all held in memory (function bodies count once here; calls are counted later).
        self.n_nodes = 0
        self.n_tensors = 0

    def _sub(self, f: Field) -> tuple[int, int]:
        if f.wire != LEN:
            raise self.buf.error(f"field {f.number} should be a message", f.value)
        return f.value, f.end

    def tensor(self, f: Field) -> OTensor:
        self.n_tensors += 1
        if self.n_tensors > limits.MAX_TENSORS:
            raise limits.exceeded(
                f"the model has more than {limits.MAX_TENSORS:,} tensors (the next at byte {f.value:,})",
                self.n_tensors, limits.MAX_TENSORS, "MAX_TENSORS", where=self.buf.where,
            )
        start, end = self._sub(f)
        t = OTensor(at=start)
        dims: list[int] = []
        for x in self.buf.fields(start, end):
            n = x.number
            if n == 1:
                dims.extend(self.buf.ints(x))
            elif n == 2:
                t.data_type = x.value
            elif n == 8:
                t.name = self.buf.text(x)
            elif n == 9:
                t.raw_bytes = (t.raw_bytes or 0) + (x.end - x.value)
            elif n in (4, 5, 7, 10, 11):
                t.typed_values += self.buf.count_packed(x, {4: 4, 10: 8}.get(n, 0))
            elif n == 6:
                t.typed_values += 1
            elif n == 13:
                key, value = self.entry(x)
                t.external[key] = value
            elif n == 14:
                t.data_location = x.value
        if any(d < 0 for d in dims):
            raise CorruptFileError(f"tensor {t.name!r} has a negative dimension {dims}", where=self.buf.where)
        t.dims = tuple(dims)
        return t

    def entry(self, f: Field) -> tuple[str, str]:
        key = value = ""
        for x in self.buf.fields(*self._sub(f)):
            if x.number == 1:
                key = self.buf.text(x)
            elif x.number == 2:
                value = self.buf.text(x)
        return key, value

    def sparse(self, f: Field) -> OSparse:
        values = indices = OTensor()
        dims: list[int] = []
        for x in self.buf.fields(*self._sub(f)):
            if x.number == 1:
                values = self.tensor(x)
            elif x.number == 2:
                indices = self.tensor(x)
            elif x.number == 3:
                dims.extend(self.buf.ints(x))
        return OSparse(values, indices, tuple(dims))

    def value(self, f: Field) -> OValue:
        v = OValue("")
        for x in self.buf.fields(*self._sub(f)):
            if x.number == 1:
                v.name = self.buf.text(x)
            elif x.number == 2:
                for tx in self.buf.fields(*self._sub(x)):
                    if tx.number in (1, 8):  # tensor_type, sparse_tensor_type
                        self._tensor_type(tx, v)
        return v

    def _tensor_type(self, f: Field, v: OValue) -> None:
        for x in self.buf.fields(*self._sub(f)):
            if x.number == 1:
                v.elem_type = x.value
            elif x.number == 2:
                dims: list[int | None] = []
                symbols: list[str] = []
                for d in self.buf.fields(*self._sub(x)):
                    if d.number != 1:
                        continue
                    value: int | None = None
                    for dx in self.buf.fields(*self._sub(d)):
                        if dx.number == 1:
                            value = dx.value if dx.value < 1 << 63 else None
                        elif dx.number == 2:
                            symbols.append(self.buf.text(dx))
                    dims.append(value)
                v.shape = tuple(dims)
                v.symbols = tuple(symbols)

    def attr(self, f: Field, depth: int) -> OAttr:
        a = OAttr()
        for x in self.buf.fields(*self._sub(f)):
            n = x.number
            if n == 1:
                a.name = self.buf.text(x)
            elif n == 2:
                a.f = self.buf.float32(x)
            elif n == 3:
                a.i = (self.buf.ints(x) or [0])[0]
            elif n == 4:
                a.s = self.buf.text(x)
            elif n in (5, 10):
                a.tensors.append(self.tensor(x))
            elif n in (6, 11):
                a.graphs.append(self.graph(x, depth + 1))
            elif n in (22, 23):
                a.sparse.append(self.sparse(x))
            elif n == 7:
                a.n_values += self.buf.count_packed(x, 4)
            elif n == 8:
                values = self.buf.ints(x)
                a.ints.extend(values)
                a.n_values += len(values)
            elif n == 9:
                a.n_values += 1
        return a

    def node(self, f: Field, depth: int) -> ONode:
        self.n_nodes += 1
        if self.n_nodes > limits.MAX_ONNX_NODES:
            raise limits.exceeded(
                f"the model has more than {limits.MAX_ONNX_NODES:,} nodes (subgraphs and function "
                f"bodies included; the next at byte {f.value:,})", self.n_nodes, limits.MAX_ONNX_NODES, "MAX_ONNX_NODES",
                where=self.buf.where,
            )
        node = ONode()
        for x in self.buf.fields(*self._sub(f)):
            n = x.number
            if n == 1:
                node.inputs.append(self.buf.text(x))
            elif n == 2:
                node.outputs.append(self.buf.text(x))
            elif n == 3:
                node.name = self.buf.text(x)
            elif n == 4:
                node.op_type = self.buf.text(x)
            elif n == 7:
                node.domain = self.buf.text(x)
            elif n == 5:
                a = self.attr(x, depth)
                node.attrs[a.name] = a
        return node

    def graph(self, f: Field, depth: int) -> OGraph:
        if depth > MAX_GRAPH_DEPTH:
            raise CorruptFileError(
                f"subgraphs nested more than {MAX_GRAPH_DEPTH} deep at byte {f.value}; paramscope stops there",
                where=self.buf.where,
            )
        g = OGraph()
        for x in self.buf.fields(*self._sub(f)):
            n = x.number
            if n == 1:
                g.nodes.append(self.node(x, depth))
            elif n == 2:
                g.name = self.buf.text(x)
            elif n == 5:
                g.initializers.append(self.tensor(x))
            elif n == 15:
                g.sparse_initializers.append(self.sparse(x))
            elif n == 11:
                g.inputs.append(self.value(x))
            elif n == 12:
                g.outputs.append(self.value(x))
            elif n == 13:
                g.value_info.append(self.value(x))
        return g

    def function(self, f: Field) -> OFunction:
        fn = OFunction()
        for x in self.buf.fields(*self._sub(f)):
            n = x.number
            if n == 1:
                fn.name = self.buf.text(x)
            elif n == 10:
                fn.domain = self.buf.text(x)
            elif n == 4:
                fn.inputs.append(self.buf.text(x))
            elif n == 5:
                fn.outputs.append(self.buf.text(x))
            elif n == 7:
                fn.nodes.append(self.node(x, 1))
        return fn

    def model(self, start: int, end: int) -> OModel:
        m = OModel()
        seen_graph = False
        for x in self.buf.fields(start, end):
            n = x.number
            if n == 1:
                m.ir_version = x.value
            elif n == 2:
                m.producer = self.buf.text(x)
            elif n == 3:
                m.producer_version = self.buf.text(x)
            elif n == 7:
                m.graph = self.graph(x, 0)
                seen_graph = True
            elif n == 8:
                domain, version = "", 0
                for ox in self.buf.fields(*self._sub(x)):
                    if ox.number == 1:
                        domain = self.buf.text(ox)
                    elif ox.number == 2:
                        version = ox.value
                m.opsets[domain] = version
            elif n == 14:
                key, value = self.entry(x)
                m.metadata[key] = value
            elif n == 25:
                m.functions.append(self.function(x))
        if not seen_graph:
            raise CorruptFileError("the model has no graph: not an ONNX model", where=self.buf.where)
        return m


def parse_model(buf: Buffer) -> OModel:
    """Decode the ModelProto filling ``buf``.

    Raises:
        CorruptFileError: malformed wire format, subgraphs nested too deep, no graph.
    """
    return _Parser(buf).model(0, len(buf.data))


#: Tensor data fields (raw_data, float_data, int32_data, string_data, int64_data, double_data, uint64_data).
_DATA_FIELDS = frozenset({4, 5, 6, 7, 9, 10, 11})
#: (message kind, field number) -> kind of the sub-message to rewrite; other fields are copied.
_REWRITE = {
    ("model", 7): "graph", ("model", 25): "function",
    ("graph", 1): "node", ("graph", 5): "tensor", ("graph", 15): "sparse",
    ("function", 7): "node", ("node", 5): "attr",
    ("attr", 5): "tensor", ("attr", 10): "tensor", ("attr", 6): "graph", ("attr", 11): "graph",
    ("attr", 22): "sparse", ("attr", 23): "sparse", ("sparse", 1): "tensor", ("sparse", 2): "tensor",
}  # fmt: skip


def strip_tensor_data(buf: Buffer, keep_bytes: int = 4096) -> bytes:
    """The model's bytes without the data of tensors larger than ``keep_bytes``.

    Shape inference needs dims and types, and the values of small tensors only (the shape
    argument of a Reshape); dropping large payloads lets it run on a model of any size in a
    few MiB. Must be called on a buffer that :func:`parse_model` accepted.

    Example:
        >>> strip_tensor_data(Buffer(b"\\x08\\x08", "m"))
        b'\\x08\\x08'
    """

    def rewrite(kind: str, start: int, end: int, depth: int) -> bytes:
        out = bytearray()
        for f in buf.fields(start, end):
            if kind == "tensor" and f.number in _DATA_FIELDS and f.wire == LEN and f.end - f.value > keep_bytes:
                continue
            sub = _REWRITE.get((kind, f.number))
            if sub is not None and f.wire == LEN and depth <= MAX_GRAPH_DEPTH * 4:
                out += encode_len(f.number, rewrite(sub, f.value, f.end, depth + 1))
            else:
                out += buf.data[f.start : f.end]
        return bytes(out)

    return rewrite("model", 0, len(buf.data), 0)
