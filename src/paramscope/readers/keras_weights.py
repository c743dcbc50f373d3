"""Keras weight files (``model.save_weights(...)``) read from HDF5 metadata, data never read.

Two layouts (``keras/src/saving/saving_lib.py`` and ``keras/src/legacy/saving/legacy_h5_format.py``):

- Keras 3 ``.weights.h5``: ``layers/<group>/vars/<i>`` datasets, nested for layers inside
  layers, ``optimizer/vars/<i>`` for optimizer state. A group is named after the layer's
  class in snake case (``dense``, ``batch_normalization_1``); its ``vars`` group carries the
  layer's own name. Variables are stored by position only, so their names are inferred for
  the built-in layer classes listed in :data:`VARIABLE_NAMES` and left unknown otherwise.
- legacy (Keras 2 ``save_weights("x.h5")``): root attribute ``layer_names``, each layer group
  listing ``weight_names`` such as ``dense/kernel:0``.

A full-model ``.h5`` (with ``model_config``) belongs to the Keras archive reader. Only
dataset shapes and dtypes are read (``h5py``, imported lazily).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core import sniff
from paramscope.core.anatomy import Anatomy, Layer, Role, Tensor, TensorGroup
from paramscope.core.dtypes import canonical_dtype
from paramscope.core.errors import CorruptFileError, MissingDependencyError, UnsafeFileError
from paramscope.readers._hdf5 import HDF5_MAGIC, import_h5py
from paramscope.rules.names import explain_name, natural_key

__all__ = ["can_read", "read", "VARIABLE_NAMES"]

_MAX_DEPTH = 64
_MAX_OBJECTS = 1_000_000

#: Snake-case Keras class name -> (class name, variable names by number of variables stored).
#: Orders follow each layer's ``build`` (trainable variables, then non-trainable ones).
VARIABLE_NAMES: dict[str, tuple[str, dict[int, tuple[str, ...]]]] = {
    "dense": ("Dense", {2: ("kernel", "bias"), 1: ("kernel",)}),
    "einsum_dense": ("EinsumDense", {2: ("kernel", "bias"), 1: ("kernel",)}),
    "embedding": ("Embedding", {1: ("embeddings",)}),
    "batch_normalization": (
        "BatchNormalization",
        {4: ("gamma", "beta", "moving_mean", "moving_variance"), 2: ("moving_mean", "moving_variance")},
    ),
    "layer_normalization": ("LayerNormalization", {2: ("gamma", "beta")}),
    "group_normalization": ("GroupNormalization", {2: ("gamma", "beta")}),
    **{
        snake: (cls, {2: ("kernel", "bias"), 1: ("kernel",)})
        for snake, cls in [
            ("conv1d", "Conv1D"), ("conv2d", "Conv2D"), ("conv3d", "Conv3D"),
            ("conv1d_transpose", "Conv1DTranspose"), ("conv2d_transpose", "Conv2DTranspose"),
            ("conv3d_transpose", "Conv3DTranspose"),
        ]
    },  # fmt: skip
    "depthwise_conv2d": ("DepthwiseConv2D", {2: ("kernel", "bias"), 1: ("kernel",)}),
    "separable_conv2d": (
        "SeparableConv2D",
        {3: ("depthwise_kernel", "pointwise_kernel", "bias"), 2: ("depthwise_kernel", "pointwise_kernel")},
    ),
}

_RNN_CELL = {3: ("kernel", "recurrent_kernel", "bias"), 2: ("kernel", "recurrent_kernel")}
VARIABLE_NAMES.update({
    "lstm_cell": ("LSTMCell", _RNN_CELL), "gru_cell": ("GRUCell", _RNN_CELL),
    "simple_rnn_cell": ("SimpleRNNCell", _RNN_CELL), "rnn_cell": ("", _RNN_CELL),
})  # fmt: skip

#: Sub-layers Keras saves under the attribute that holds them: (parent class, attribute) -> class.
_ATTRIBUTES = {
    **{("multi_head_attention", a): "einsum_dense" for a in ("query_dense", "key_dense", "value_dense", "output_dense")},
    ("lstm", "cell"): "lstm_cell", ("gru", "cell"): "gru_cell", ("simple_rnn", "cell"): "simple_rnn_cell",
}  # fmt: skip

#: Classes whose snake-case names mark containers of layers, not layers with variables.
_CONTAINERS = {
    "functional": "Functional", "sequential": "Sequential", "model": "Model",
    "multi_head_attention": "MultiHeadAttention", "lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN",
    "bidirectional": "Bidirectional", "time_distributed": "TimeDistributed",
}  # fmt: skip
_COUNTER = re.compile(r"_\d+$")


def _h5py() -> Any:
    return import_h5py("reading Keras .h5 weight files")


def can_read(source: Any) -> bool:
    """Whether ``source`` is an HDF5 file of Keras weights without a model config.

    Example:
        >>> can_read("missing.weights.h5")
        False
    """
    path = sniff.file_path(source)
    if path is None or sniff.head(path, len(HDF5_MAGIC)) != HDF5_MAGIC:
        return False
    try:
        h5py = _h5py()
    except MissingDependencyError:
        return path.name.endswith(".weights.h5")  # claimed so that read() says what to install
    try:
        with h5py.File(path, "r") as f:
            return "model_config" not in f.attrs and ("layers" in f or "layer_names" in f.attrs or "vars" in f)
    except (OSError, ValueError):
        return False


def read(source: Any, **options: Any) -> Anatomy:
    """Read the tensors of a Keras weights file: names, shapes, dtypes, inferred roles.

    Args:
        source: path to the ``.weights.h5`` / ``.h5`` file.
        **options: ignored.

    Returns:
        The anatomy: one layer per Keras layer, optimizer variables in ``extras``.

    Raises:
        MissingDependencyError: h5py is not installed.
        CorruptFileError: the file cannot be read as HDF5 or has an unexpected layout.

    Example:
        >>> read("model.weights.h5").framework  # doctest: +SKIP
        'keras'
    """
    h5py = _h5py()
    path = Path(source)
    where = str(path)
    try:
        with h5py.File(path, "r") as f:
            reader = _Reader(h5py, where)
            if "layer_names" in f.attrs:
                return reader.legacy(f, path)
            return reader.keras3(f, path)
    except OSError as e:
        raise CorruptFileError(f"cannot read the HDF5 file ({e})", where=where) from None


class _Reader:
    def __init__(self, h5py: Any, where: str) -> None:
        self.h5py = h5py
        self.where = where
        self.n_objects = 0
        self.guessed = 0
        self.unnamed = 0

    def _get(self, group: Any, key: str) -> Any:
        """``group[key]``, refusing links to other files (they would be opened) and following
        links inside this file one name at a time."""
        node = group
        for part in key.split("/"):
            if not part:
                continue
            link = node.get(part, getlink=True)
            if link is None:
                return None
            if isinstance(link, self.h5py.ExternalLink):
                raise UnsafeFileError(
                    f"{node.name}/{part} is a link to another file ({link.filename}); paramscope "
                    "does not follow it (nothing was opened)",
                    where=self.where,
                )
            node = node.get(part)
            if node is None:
                return None
        return node

    def _group(self, group: Any, key: str) -> Any:
        """``group[key]`` when it is a group (iterating a dataset would read its data)."""
        node = self._get(group, key)
        if node is not None and not isinstance(node, self.h5py.Group):
            raise CorruptFileError(f"{group.name}/{key} should be a group but is a {type(node).__name__}", where=self.where)
        return node

    def _tick(self, name: str) -> None:
        self.n_objects += 1
        if self.n_objects > _MAX_OBJECTS:
            raise CorruptFileError(f"more than {_MAX_OBJECTS} HDF5 objects (at {name})", where=self.where)

    def _dataset(self, ds: Any) -> tuple[tuple[int, ...] | None, str]:
        shape = tuple(int(d) for d in ds.shape) if ds.shape is not None else None
        # Keras writes types numpy lacks (bfloat16, float8) as opaque bytes named by this attribute.
        declared = ds.attrs.get("dtype")
        if isinstance(declared, bytes):
            declared = declared.decode("utf-8", "replace")
        if isinstance(declared, str) and declared:
            return shape, canonical_dtype(declared)
        return shape, canonical_dtype(str(ds.dtype))

    # -- Keras 3 ---------------------------------------------------------------------------

    def keras3(self, f: Any, path: Path) -> Anatomy:
        layers = self._children(f, "", 0) if "layers" in f else ()
        extras: list[TensorGroup] = []
        for key in f:
            if key in ("layers", "vars"):
                continue
            item = self._get(f, key)
            if isinstance(item, self.h5py.Dataset):
                shape, dtype = self._dataset(item)
                tensors: tuple[Tensor, ...] = (Tensor(key, shape, dtype, Role.BUFFER, False, key, None, "stored with the model, not part of it"),)
            else:
                tensors = tuple(self._plain_vars(item, key)) if item is not None else ()
            if tensors:
                note = "optimizer state, not part of the model" if key == "optimizer" else f"stored under {key!r}"
                extras.append(TensorGroup(key, tensors, note=note))
        own = self._vars(f, "", "", 0) if "vars" in f else ()
        if own:
            layers = (Layer("(model)", "", "(model)", own, note="variables of the model itself"),) + layers
        notes = [
            "Keras 3 weight files store each layer's variables by position only (vars/0, vars/1, ...); "
            "names are inferred for built-in layer classes, and whether a weight was frozen is not recorded."
        ]
        if self.unnamed:
            notes.append(f"{self.unnamed} variables of layer classes paramscope does not know keep positional names.")
        root_vars = self._get(f, "vars")
        root_name = str(root_vars.attrs.get("name", path.name)) if root_vars is not None else path.name
        return Anatomy(
            name=root_name,
            framework="keras",
            layers=layers,
            source=str(path),
            extras=tuple(extras),
            metadata=MappingProxyType({"format": "keras 3 weights (.weights.h5)"}),
            notes=tuple(notes),
        )

    def _children(self, group: Any, parent: str, depth: int) -> tuple[Layer, ...]:
        if depth > _MAX_DEPTH:
            raise CorruptFileError(f"layers nested deeper than {_MAX_DEPTH} at {group.name}", where=self.where)
        out = []
        layers_group = self._group(group, "layers")
        for key in sorted(layers_group, key=natural_key):
            self._tick(key)
            node = self._get(layers_group, key)
            if not isinstance(node, self.h5py.Group):
                continue
            vars_group = self._get(node, "vars")
            name = str(vars_group.attrs.get("name", key)) if vars_group is not None else key
            path = f"{parent}/{name}" if parent else name
            snake = _COUNTER.sub("", key)
            cls = VARIABLE_NAMES.get(snake, ("", {}))[0] or _CONTAINERS.get(snake, "")
            tensors = self._vars(node, path, snake, depth) if vars_group is not None else ()
            children = self._children(node, path, depth + 1) if "layers" in node else ()
            if key == "input_layer" or _COUNTER.sub("", key) == "input_layer":
                if not tensors and not children:
                    continue
            # Keras writes other tracked objects (e.g. sublayers under their attribute names).
            for sub in node:
                if sub not in ("vars", "layers") and isinstance(self._get(node, sub), self.h5py.Group):
                    children += self._extra_child(self._get(node, sub), path, snake, sub, depth + 1)
            out.append(Layer(name, cls, path, tensors, children, origin="keras.layers" if cls else "",
                             known=True))  # fmt: skip
        return tuple(out)

    def _extra_child(self, node: Any, parent: str, parent_snake: str, key: str, depth: int) -> tuple[Layer, ...]:
        if depth > _MAX_DEPTH:
            raise CorruptFileError(f"groups nested deeper than {_MAX_DEPTH} at {node.name}", where=self.where)
        vars_group = self._get(node, "vars")
        name = str(vars_group.attrs.get("name", key)) if vars_group is not None else key
        path = f"{parent}/{name}"
        # A sub-layer held by an attribute: its class comes from the parent's known layout, or, for
        # any recurrent layer's "cell", the generic cell layout.
        snake = _ATTRIBUTES.get((parent_snake, key)) or ("rnn_cell" if key == "cell" else _COUNTER.sub("", key))
        tensors = self._vars(node, path, snake, depth) if vars_group is not None else ()
        children = self._children(node, path, depth + 1) if "layers" in node else ()
        for sub in node:
            if sub not in ("vars", "layers") and isinstance(self._get(node, sub), self.h5py.Group):
                children += self._extra_child(self._get(node, sub), path, snake, sub, depth + 1)
        if not tensors and not children:
            return ()
        cls = VARIABLE_NAMES.get(snake, ("", {}))[0]
        return (Layer(name, cls, path, tensors, children, origin="keras.layers" if cls else ""),)

    def _vars(self, node: Any, path: str, snake: str, depth: int) -> tuple[Tensor, ...]:
        group = self._group(node, "vars")
        if group is None:
            return ()
        datasets = []
        for key in group:
            self._tick(key)
            item = self._get(group, key)
            if isinstance(item, self.h5py.Dataset):
                datasets.append((int(key) if key.isdigit() else 1 << 30, key, item))
        datasets.sort()
        names = VARIABLE_NAMES.get(snake, ("", {}))[1].get(len(datasets))
        out = []
        for i, (_, key, ds) in enumerate(datasets):
            shape, dtype = self._dataset(ds)
            if names:
                name = names[i]
                ex = explain_name(snake, name, shape, frozenset(names), sep="/")
                role = ex.role if ex.role is not Role.UNKNOWN else Role.TRAINABLE
                why = f"{ex.why} (named by its position in a {VARIABLE_NAMES[snake][0]} layer)"
                out.append(Tensor(name, shape, dtype, role, True, f"{path}/vars/{key}", ex.formula, why))
            else:
                self.unnamed += 1
                out.append(Tensor(f"vars/{key}", shape, dtype, Role.UNKNOWN, True, f"{path}/vars/{key}", None,
                                  "a variable stored by position; the file does not name it"))  # fmt: skip
        return tuple(out)

    def _plain_vars(self, node: Any, prefix: str, depth: int = 0) -> list[Tensor]:
        if depth > _MAX_DEPTH:
            raise CorruptFileError(f"groups nested deeper than {_MAX_DEPTH} at {node.name}", where=self.where)
        out = []
        for key in node:
            self._tick(key)
            item = self._get(node, key)
            name = f"{prefix}/{key}"
            if isinstance(item, self.h5py.Dataset):
                shape, dtype = self._dataset(item)
                out.append(Tensor(name, shape, dtype, Role.BUFFER, False, name, None, "stored with the model, not part of it"))
            elif isinstance(item, self.h5py.Group):
                out.extend(self._plain_vars(item, name, depth + 1))
        return out

    # -- legacy (Keras 2) ------------------------------------------------------------------

    def legacy(self, f: Any, path: Path) -> Anatomy:
        layers = []
        for raw in f.attrs["layer_names"]:
            self._tick("layer")
            lname = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            if lname not in f:
                raise CorruptFileError(f"layer {lname!r} is listed in layer_names but has no group", where=self.where)
            g = self._get(f, lname)
            wnames = [w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w) for w in g.attrs.get("weight_names", [])]
            tensors = []
            locals_ = frozenset(w.split(":", 1)[0].rpartition("/")[2] for w in wnames)
            for wname in wnames:
                self._tick(wname)
                ds = self._get(g, wname)
                if not isinstance(ds, self.h5py.Dataset):
                    raise CorruptFileError(f"weight {wname!r} of layer {lname!r} is missing", where=self.where)
                shape, dtype = self._dataset(ds)
                full = wname.split(":", 1)[0]
                module, _, local = full.rpartition("/")
                ex = explain_name(module, local, shape, locals_, sep="/")
                name = full.removeprefix(f"{lname}/")
                tensors.append(Tensor(name, shape, dtype, ex.role, True, f"{lname}/{wname}", ex.formula,
                                      ex.why or "named in the file"))  # fmt: skip
            cls = VARIABLE_NAMES.get(_COUNTER.sub("", lname), ("", {}))[0]
            layers.append(Layer(lname, cls, lname, tuple(tensors), origin="keras.layers" if cls else ""))
        meta = {"format": "keras legacy weights (.h5)"}
        for key in ("keras_version", "backend"):
            if key in f.attrs:
                value = f.attrs[key]
                meta[key] = value.decode() if isinstance(value, bytes) else str(value)
        return Anatomy(
            name=path.name,
            framework="keras",
            layers=tuple(layers),
            source=str(path),
            metadata=MappingProxyType(meta),
            notes=("Legacy weight files name each weight but do not record whether it is trainable; roles come from the names.",),
        )
