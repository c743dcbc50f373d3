"""ONNX nodes as layers: initializers owned by their first reader, subgraphs and functions nested.

Each node becomes a layer owning the initializers it is the first to read (a later reader shows
the same tensor, one key, counted once). Layers nest by the ``/`` parts of node names, as
``torch.onnx.export`` writes them. Data sizes are checked here: ``raw_data`` against dims, and
external data against the model's folder and the size of its file, which is never opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from math import prod
from pathlib import Path
from typing import Any

from paramscope.core.anatomy import Compute, Formula, Layer, Role, Tensor
from paramscope.core.compute import sum_compute
from paramscope.core.dtypes import n_bytes
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.files import folder_member
from paramscope.readers.onnx.flops import node_compute
from paramscope.readers.onnx.proto import OGraph, ONode, OSparse, OTensor
from paramscope.rules.names import explain_name

__all__ = ["GraphBuilder", "exporter_notes", "walk"]

Shape = tuple[int | None, ...]
#: Operators whose outputs are new data even when every input is a constant (random draws).
_FROM_DATA = frozenset("RandomNormalLike RandomUniformLike Multinomial Bernoulli".split())


def walk(layers: Iterable[Layer]) -> Iterator[Layer]:
    """Every layer of ``layers`` and their descendants, depth first."""
    for layer in layers:
        yield from layer.walk()


class GraphBuilder:
    """Turns nodes into layers, assigning each initializer to its first user.

    Args:
        path: the model file (external data is resolved against its folder).
        graph: the main graph; its and its subgraphs' initializers are collected.
        shapes: value name -> shape, for FLOPs and layer shapes.
        functions: model-local functions by (domain, name).
        notes: sentences for the user; the builder adds its own.
    """

    def __init__(self, path: Path, graph: OGraph, shapes: dict[str, Shape], functions: dict[tuple[str, str], Any],
                 notes: list[str]) -> None:  # fmt: skip
        self.path = path
        self.where = str(path)
        self.shapes = shapes
        self.functions = functions
        self.notes = notes
        self.inits: dict[str, Tensor] = {}
        self.used: set[str] = set()
        self.n_nodes = 0
        self.n_constants = 0
        self.renamed = 0
        self.ops: set[str] = set()
        self.sparse_values: dict[str, tuple[int, int]] = {}  # name -> (stored values, dense elements)
        self.static: set[str] = set()
        self.siblings: dict[str, set[str]] = {}
        self.identities = 0
        self._collect(graph)

    def _collect(self, graph: OGraph) -> None:
        for t in graph.initializers:
            module, _, local = t.name.rpartition(".")
            self.siblings.setdefault(module, set()).add(local)
        for t in graph.initializers:
            self.inits[t.name] = self._initializer(t)
        for s in graph.sparse_initializers:
            self.inits[s.values.name] = self._sparse(s)
        for node in graph.nodes:
            for a in node.attrs.values():
                for g in a.graphs:
                    self._collect(g)

    # -- tensors --------------------------------------------------------------------------

    def _check_data(self, t: OTensor) -> None:
        count = 1
        for d in t.dims:
            count *= d
        expected = n_bytes(t.dtype, count)
        if t.data_location == 1 or t.external:
            self._check_external(t, expected)
        elif t.raw_bytes is not None and expected is not None and t.dtype != "string":
            if t.raw_bytes != expected:
                raise CorruptFileError(
                    f"tensor {t.name!r} (byte {t.at}) has dims {list(t.dims)} of {t.dtype} = {expected} "
                    f"bytes but {t.raw_bytes} bytes of raw_data",
                    where=self.where,
                )
        elif t.typed_values and t.dtype != "string":
            per = 2 if t.dtype.startswith("complex") else 1
            if t.typed_values != count * per and t.typed_values * 2 != count * per:
                raise CorruptFileError(
                    f"tensor {t.name!r} (byte {t.at}) has dims {list(t.dims)} but {t.typed_values} stored values",
                    where=self.where,
                )

    def _check_external(self, t: OTensor, expected: int | None) -> None:
        location = t.external.get("location", "")
        if not location:
            raise CorruptFileError(f"tensor {t.name!r} (byte {t.at}) is external but names no file", where=self.where)
        folder = self.path.parent.resolve()
        if os.path.isabs(location) or "\\" in location or Path(location).drive:
            raise UnsafeFileError(
                f"tensor {t.name!r} names external data {location!r} by an absolute path; external data "
                "must lie in the model's folder (nothing was opened)",
                where=self.where,
            )
        target = (folder / location).resolve()
        if os.path.commonpath([folder, target]) != str(folder):
            raise UnsafeFileError(
                f"tensor {t.name!r} names external data {location!r}, outside the model's folder "
                "(nothing was opened)",
                where=self.where,
            )
        try:
            offset = int(t.external.get("offset", "0") or 0)
            length = int(t.external["length"]) if t.external.get("length") else expected
        except ValueError:
            raise CorruptFileError(f"tensor {t.name!r} has a non-numeric external offset or length", where=self.where) from None
        if expected is not None and length is not None and length != expected:
            raise CorruptFileError(
                f"tensor {t.name!r} needs {expected} bytes but its external data says {length}", where=self.where
            )
        # The folder's rule (symlinks out of it and FIFOs refused); a missing file is noted.
        target = folder_member(folder, location, what=f"external data of tensor {t.name!r}", where=self.where,
                               must_exist=False, noun="the model's folder")  # fmt: skip
        if not target.is_file():
            note = f"External data file {location!r} is missing; sizes come from the tensors' dims."
            if note not in self.notes:
                self.notes.append(note)
            return
        size = target.stat().st_size
        if offset < 0 or (length or 0) + offset > size:
            raise CorruptFileError(
                f"tensor {t.name!r} reads bytes {offset}..{offset + (length or 0)} of {location!r}, "
                f"which holds {size}",
                where=self.where,
            )

    def _initializer(self, t: OTensor) -> Tensor:
        self._check_data(t)
        if t.name.startswith("onnx::"):
            self.renamed += 1
        module, _, local = t.name.rpartition(".")
        ex = explain_name(module, local, t.dims, frozenset(self.siblings.get(module, ())))
        if ex.role is Role.UNKNOWN:
            role, is_param = Role.UNKNOWN, True
            why = "an ONNX initializer (a weight); the file does not record whether it was trained"
        else:
            role, is_param, why = ex.role, ex.is_param, ex.why
        where = " (external data)" if t.external else ""
        return Tensor(t.name, t.dims, t.dtype, role, is_param, f"init:{t.name}", ex.formula, why + where)

    def _sparse(self, s: OSparse) -> Tensor:
        """A sparse initializer, counted as the dense tensor it stands for.

        ONNX Runtime turns sparse initializers into dense tensors when it loads a model, and
        a node computes with the dense tensor: its elements are the parameters. The file stores
        only the non-zero values and their positions; the reply notes how many.
        """
        self._check_data(s.values)
        self._check_data(s.indices)
        nnz = s.values.dims[0] if s.values.dims else 0
        dense = prod(s.dims)
        if len(s.values.dims) != 1 or nnz > dense or (s.indices.dims and s.indices.dims[0] != nnz):
            raise CorruptFileError(
                f"sparse initializer {s.values.name!r} stores values {list(s.values.dims)} and indices "
                f"{list(s.indices.dims)} for a dense shape {list(s.dims)}, which do not fit together",
                where=self.where,
            )
        self.sparse_values[s.values.name] = (nnz, dense)
        dims = " x ".join(map(str, s.dims)) or "1"
        return Tensor(
            s.values.name,
            s.dims,
            s.values.dtype,
            Role.UNKNOWN,
            True,
            f"init:{s.values.name}",
            Formula("dense dims", dims),
            f"a sparse initializer, counted as the dense {dims} tensor nodes compute with; the file "
            f"stores its {nnz:,} non-zero values and their positions",
        )

    def _constant(self, node: ONode, key_scope: str) -> list[Tensor]:
        out = []
        for name, a in node.attrs.items():
            shape: Shape
            if a.tensors:
                self._check_data(a.tensors[0])
                shape, dtype = a.tensors[0].dims, a.tensors[0].dtype
            elif a.sparse:
                shape, dtype = a.sparse[0].dims, a.sparse[0].values.dtype  # the dense tensor
            else:
                kind = {"value_float": "float32", "value_int": "int64", "value_floats": "float32",
                        "value_ints": "int64"}.get(name)  # fmt: skip
                if kind is None:
                    continue
                shape, dtype = ((a.n_values,) if name.endswith("s") else ()), kind
            self.n_constants += 1
            out.append(Tensor("value", shape, dtype, Role.BUFFER, False, f"const:{key_scope}{node.outputs[0] if node.outputs else name}",
                              None, "a constant inside the graph (Constant node), not a parameter"))  # fmt: skip
        return out

    # -- layers ---------------------------------------------------------------------------

    def _node_layer(self, node: ONode, index: int, scope: str, depth: int, key_scope: str = "") -> Layer:
        self.n_nodes += 1
        self.ops.add(node.op_type)
        if node.op_type == "Identity" and node.inputs and node.inputs[0] in self.inits:
            self.identities += 1
        label = node.name or f"{node.op_type}_{index}"
        tensors: list[Tensor] = []
        seen: set[str] = set()
        for name in node.inputs:
            t = self.inits.get(name)
            if t is not None and name not in seen:
                seen.add(name)
                tensors.append(t)
                self.used.add(name)
        children: list[Layer] = []
        for a in node.attrs.values():
            for gi, g in enumerate(a.graphs):
                gname = a.name if len(a.graphs) == 1 else f"{a.name}[{gi}]"
                sub = self.layers(g, f"{scope}{label}/{gname}/", depth + 1)
                children.append(Layer(gname, "Graph", f"{scope}{label}/{gname}", children=sub,
                                      note=f"subgraph {a.name!r} of {node.op_type}",
                                      compute=sum_compute(c.compute for c in sub)))  # fmt: skip
        if node.op_type == "Constant":
            tensors.extend(self._constant(node, key_scope or scope))
        fn = self.functions.get((node.domain, node.op_type))
        note = ""
        if fn is not None:
            fscope = f"function {fn.domain}.{fn.name}/"
            body = [self._node_layer(n, i, f"{scope}{label}/", depth + 1, fscope) for i, n in enumerate(fn.nodes)]
            children.extend(body)
            note = f"calls the model-local function {fn.domain}.{fn.name} ({len(fn.nodes)} nodes)"
            compute = Compute(None, None, None, unknown_ops=(f"function {fn.name}",))
        elif node.op_type in ("If", "Loop", "Scan"):
            inner = sum_compute(c.compute for c in children)
            if inner is None or (inner.flops, inner.attention_flops, inner.elementwise_flops) == (0, 0, 0):
                compute = Compute(0, 0, 0)
            else:
                # Which branch runs, or how many iterations, is decided by data at run time.
                compute = Compute(None, None, None, unknown_ops=(node.op_type,))
            note = "the FLOPs of its subgraphs are on the subgraph layers (If runs one branch, Loop a data-dependent number of times)"
        else:
            compute = node_compute(node, self.shapes.get, self.static.__contains__)
        ins = tuple(self.shapes[x] for x in node.inputs if x in self.shapes) or None
        outs = tuple(self.shapes[x] for x in node.outputs if x in self.shapes) or None
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        return Layer(
            name=label.rsplit("/", 1)[-1] or label,
            type=op,
            path=f"{scope}{label}",
            tensors=tuple(tensors),
            children=tuple(children),
            input_shapes=ins,
            output_shapes=outs,
            inbound=tuple(node.inputs),
            note=note,
            compute=compute,
            origin=node.domain or "ai.onnx",
        )

    def _mark_static(self, graph: OGraph) -> None:
        """Values computed from weights and constants alone (a transposed or dequantised weight):
        a product with one of them is a weight product, a product of two others an attention
        product. Nodes are in topological order (the ONNX spec requires it); a subgraph sees
        its outer graph's values."""
        self.static.update(t.name for t in graph.initializers)
        self.static.update(s.values.name for s in graph.sparse_initializers)
        for node in graph.nodes:
            inputs = [x for x in node.inputs if x]
            if node.op_type == "Constant" or (inputs and node.op_type not in _FROM_DATA and all(x in self.static for x in inputs)):
                self.static.update(o for o in node.outputs if o)

    def layers(self, graph: OGraph, scope: str, depth: int) -> tuple[Layer, ...]:
        """Layers for a graph's nodes, nested by the ``/`` parts of their names."""
        self._mark_static(graph)
        flat = [self._node_layer(n, i, scope, depth) for i, n in enumerate(graph.nodes)]
        return _nest(flat, scope)

    def unused(self, graph: OGraph) -> tuple[Layer, ...]:
        """A layer for initializers no node uses (still stored, still counted)."""
        left = [t for name, t in self.inits.items() if name not in self.used]
        if not left:
            return ()
        self.notes.append(f"{len(left)} initializers are used by no node; they are listed under '(unused)'.")
        return (Layer("(unused)", "", "(unused)", tuple(left), note="initializers no node reads"),)


def _nest(flat: list[Layer], scope: str) -> tuple[Layer, ...]:
    """Group node layers into a tree by the ``/`` parts of their names (torch exporter style).

    Groups keep the order in which their first node appears; a group holding a single node
    is that node, named after the group.
    """
    named = [la for la in flat if la.path[len(scope) :].startswith("/")]
    if len(named) < max(2, len(flat) // 2):
        return tuple(flat)
    root: list[Any] = []
    groups: dict[tuple[str, ...], list[Any]] = {(): root}
    for layer in flat:
        parts = tuple(layer.path[len(scope) :].strip("/").split("/")[:-1])
        for n in range(1, len(parts) + 1):
            if parts[:n] not in groups:
                child: list[Any] = []
                groups[parts[:n]] = child
                groups[parts[: n - 1]].append((parts[n - 1], child))
        groups[parts].append(layer)

    def build(items: list[Any], prefix: str) -> tuple[Layer, ...]:
        out: list[Layer] = []
        for item in items:
            if isinstance(item, Layer):
                out.append(item)
                continue
            key, sub = item
            path = f"{prefix}/{key}"
            children = build(sub, path)
            if len(children) == 1 and not children[0].children:
                out.append(children[0].with_(name=key))
            else:
                out.append(Layer(key, "", path, children=children, compute=sum_compute(c.compute for c in children)))
        return tuple(out)

    return build(root, scope.rstrip("/"))


def exporter_notes(producer: str, builder: GraphBuilder, notes: list[str]) -> None:
    """Notes on what an exporter changed: renamed initializers, BatchNorm folded into Conv."""
    if builder.renamed:
        notes.append(
            f"{builder.renamed} initializers have exporter names (onnx::...): the exporter renamed "
            "them (often after folding or transposing), so the source model's names are lost."
        )
    if builder.identities:
        notes.append(
            f"{builder.identities} Identity nodes pass initializers on under another name: the exporter "
            "stored tensors with equal values once (e.g. a running mean equal to a bias)."
        )
    if builder.sparse_values:
        stored = sum(nnz for nnz, _ in builder.sparse_values.values())
        dense = sum(n for _, n in builder.sparse_values.values())
        notes.append(
            f"{len(builder.sparse_values)} sparse initializers are counted as the dense tensors they stand for "
            f"({dense:,} elements, as ONNX Runtime loads them); the file stores {stored:,} non-zero values "
            "and their positions."
        )
    if builder.n_constants:
        notes.append(f"{builder.n_constants} Constant node values are listed as buffers, not parameters.")
    folded = [t for t in builder.inits.values() if t.name.startswith("onnx::Conv_")]
    if folded and "BatchNormalization" not in builder.ops and producer.lower() == "pytorch":
        notes.append(
            f"{len(folded)} Conv weights are named onnx::Conv_*: the exporter folded BatchNorm into the "
            "preceding Conv (its scale, shift and running statistics became the Conv's weight and bias), "
            "so the counts differ from the source model."
        )
