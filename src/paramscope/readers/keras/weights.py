"""Keras weight files (``model.save_weights(...)``) read from HDF5 metadata, data never read.

Two layouts (``keras/src/saving/saving_lib.py`` and ``keras/src/legacy/saving/legacy_h5_format.py``):

- Keras 3 ``.weights.h5``: ``layers/<group>/vars/<i>`` datasets, nested for layers inside
  layers, ``optimizer/vars/<i>`` for optimizer state; a subclassed model's own variables in
  ``vars/<i>`` and its layers under their attribute names (``block/vars/<i>``). A group is named after the layer's
  class in snake case (``dense``, ``batch_normalization_1``); its ``vars`` group carries the
  layer's own name. Variables are stored by position only, so their names are inferred for
  the built-in layer classes listed in :data:`VARIABLE_NAMES` and left unknown otherwise.
- legacy (Keras 2 ``save_weights("x.h5")``): root attribute ``layer_names``, each layer group
  listing ``weight_names`` such as ``dense/kernel:0``.

A full-model ``.h5`` (with ``model_config``) belongs to the Keras archive reader. Only
dataset shapes and dtypes are read (``h5py``, imported lazily), in a child process under a time
limit (:mod:`paramscope.readers.keras.weights_h5`); the anatomy is built here from its reply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core import sniff
from paramscope.readers.keras.h5_sniff import is_hdf5, names_model_config
from paramscope.core.anatomy import Anatomy, Layer, Role, Tensor, TensorGroup
from paramscope.parsers.hdf5 import H5_TIMEOUT_S, import_h5py, run_h5_child
from paramscope.rules.names import explain_name

__all__ = ["can_read", "read", "VARIABLE_NAMES", "H5_TIMEOUT_S"]

_PURPOSE = "reading Keras .h5 weight files"

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
    return import_h5py(_PURPOSE)


def can_read(source: Any) -> bool:
    """Whether ``source`` is an HDF5 file of Keras weights without a model config.

    Example:
        >>> can_read("missing.weights.h5")
        False
    """
    path = sniff.file_path(source)
    # Bytes only, never libhdf5 in this process: an HDF5 file without a model config (which
    # the archive reader claims) is a weights file; its layout is checked in the child.
    return path is not None and is_hdf5(path) and not names_model_config(path)


def read(source: Any, **options: Any) -> Anatomy:
    """Read the tensors of a Keras weights file: names, shapes, dtypes, inferred roles.

    The HDF5 file is walked in a child process under a time limit (libhdf5 can loop forever
    on a damaged file, beyond the reach of Ctrl-C); the anatomy is built here from its reply.

    Args:
        source: path to the ``.weights.h5`` / ``.h5`` file.
        **options: ignored.

    Returns:
        The anatomy: one layer per Keras layer, optimizer variables in ``extras``.

    Raises:
        MissingDependencyError: h5py is not installed.
        CorruptFileError: the file cannot be read as HDF5 or has an unexpected layout.
        UnsafeFileError: an entry links to another file, or reading the headers took longer
            than :data:`H5_TIMEOUT_S`.

    Example:
        >>> import os, tempfile, keras  # Keras writes the file; reading it needs no Keras
        >>> folder = tempfile.TemporaryDirectory()
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> path = os.path.join(folder.name, "model.weights.h5")
        >>> model.save_weights(path)
        >>> from paramscope.analysis import totals
        >>> anatomy = read(path)
        >>> anatomy.framework, totals(anatomy).params, model.count_params()
        ('keras', 10, 10)
        >>> folder.cleanup()
    """
    path = Path(source)
    # H5_TIMEOUT_S is read at call time, so that it can be changed.
    reply = run_h5_child({"kind": "weights", "path": str(path)}, str(path), purpose=_PURPOSE, timeout_s=H5_TIMEOUT_S)
    if reply.get("layout") == "legacy":
        return _legacy(reply, path)
    return _Builder().keras3(reply, path)


def _shape(raw: Any) -> tuple[int, ...] | None:
    return None if raw is None else tuple(int(d) for d in raw)


def _buffer(name: str, shape: Any, dtype: str) -> Tensor:
    return Tensor(name, _shape(shape), dtype, Role.BUFFER, False, name, None, "stored with the model, not part of it")


class _Builder:
    """Names the variables of a Keras 3 reply (see ``_keras_weights_h5``) and builds the anatomy."""

    def __init__(self) -> None:
        self.unnamed = 0

    def keras3(self, reply: Mapping[str, Any], path: Path) -> Anatomy:
        layers = tuple(self._layer(node, "") for node in reply["layers"])
        extras = tuple(
            TensorGroup(
                key,
                tuple(_buffer(*t) for t in tensors),
                note="optimizer state, not part of the model" if key == "optimizer" else f"stored under {key!r}",
            )
            for key, tensors in reply["extras"]
        )
        own = self._vars(reply["own"] or [], "", "")
        if own:
            layers = (Layer("(model)", "", "(model)", own, note="variables of the model itself"),) + layers
        notes = [
            "Keras 3 weight files store each layer's variables by position only (vars/0, vars/1, ...); "
            "names are inferred for built-in layer classes, and whether a weight was frozen is not recorded."
        ]
        if self.unnamed:
            notes.append(f"{self.unnamed} variables of layer classes paramscope does not know keep positional names.")
        return Anatomy(
            name=reply["root_name"] if reply["root_name"] is not None else path.name,
            framework="keras",
            layers=layers,
            source=str(path),
            extras=extras,
            metadata=MappingProxyType({"format": "keras 3 weights (.weights.h5)"}),
            notes=tuple(notes),
        )

    def _layer(self, node: Mapping[str, Any], parent: str) -> Layer:
        """A group under ``layers``: a layer, named after its class."""
        name = node["name"]
        path = f"{parent}/{name}" if parent else name
        # A group under ``layers`` is named after the layer's class; an attribute group after the
        # attribute, so its class can only be guessed from the layer's name (``dense_2``).
        snake = _COUNTER.sub("", name if node.get("attribute") else node["key"])
        cls = VARIABLE_NAMES.get(snake, ("", {}))[0] or _CONTAINERS.get(snake, "")
        tensors = self._vars(node["vars"], path, snake)
        children = self._children(node, path, snake)
        return Layer(name, cls, path, tensors, children, origin="keras.layers" if cls else "", known=True)

    def _sub(self, node: Mapping[str, Any], parent: str, parent_snake: str) -> Layer:
        """Another group of a layer: a sub-layer held by an attribute."""
        key = node["key"]
        name = node["name"]
        path = f"{parent}/{name}"
        # Its class comes from the parent's known layout, or, for any recurrent layer's "cell",
        # the generic cell layout.
        snake = _ATTRIBUTES.get((parent_snake, key)) or ("rnn_cell" if key == "cell" else _COUNTER.sub("", key))
        if snake not in VARIABLE_NAMES and key != "cell":
            # A custom layer's attribute (``self.d = Dense(3)``): guess from the layer's own name.
            snake = _COUNTER.sub("", name)
        tensors = self._vars(node["vars"], path, snake)
        children = self._children(node, path, snake)
        cls = VARIABLE_NAMES.get(snake, ("", {}))[0]
        return Layer(name, cls, path, tensors, children, origin="keras.layers" if cls else "")

    def _children(self, node: Mapping[str, Any], path: str, snake: str) -> tuple[Layer, ...]:
        return tuple(self._layer(n, path) for n in node["layers"]) + tuple(self._sub(n, path, snake) for n in node["subs"])

    def _vars(self, stored: Sequence[Any], path: str, snake: str) -> tuple[Tensor, ...]:
        names = VARIABLE_NAMES.get(snake, ("", {}))[1].get(len(stored))
        out = []
        for i, (key, raw_shape, dtype) in enumerate(stored):
            shape = _shape(raw_shape)
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


def _legacy(reply: Mapping[str, Any], path: Path) -> Anatomy:
    layers = []
    for lname, weights in reply["layers"]:
        locals_ = frozenset(w.split(":", 1)[0].rpartition("/")[2] for w, _, _ in weights)
        tensors = []
        for wname, raw_shape, dtype in weights:
            shape = _shape(raw_shape)
            full = wname.split(":", 1)[0]
            module, _, local = full.rpartition("/")
            ex = explain_name(module, local, shape, locals_, sep="/")
            name = full.removeprefix(f"{lname}/")
            tensors.append(Tensor(name, shape, dtype, ex.role, True, f"{lname}/{wname}", ex.formula,
                                  ex.why or "named in the file"))  # fmt: skip
        cls = VARIABLE_NAMES.get(_COUNTER.sub("", lname), ("", {}))[0]
        layers.append(Layer(lname, cls, lname, tuple(tensors), origin="keras.layers" if cls else ""))
    return Anatomy(
        name=path.name,
        framework="keras",
        layers=tuple(layers),
        source=str(path),
        metadata=MappingProxyType({"format": "keras legacy weights (.h5)", **reply["metadata"]}),
        notes=("Legacy weight files name each weight but do not record whether it is trainable; roles come from the names.",),
    )
