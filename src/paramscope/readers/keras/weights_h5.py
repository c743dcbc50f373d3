"""The HDF5 half of reading a Keras weights file, run in a child process.

:mod:`paramscope.readers.keras.weights` sends ``{"kind": "weights", "path": ...}`` to
:mod:`paramscope.readers.keras.h5_child`, which answers with :func:`weights_part`: the file's
groups walked into plain data (names, shapes, dtypes), so that a damaged file that sends
libhdf5 into an endless loop stops the child, not the caller. Naming variables and building
the anatomy happen in the parent.

Reply for a Keras 3 file::

    {"layout": "keras3", "root_name": str | None, "own": [var, ...] | None,
     "layers": [node, ...], "extras": [[key, [[name, shape, dtype], ...]], ...]}

where a ``var`` is ``[key, shape, dtype]`` (sorted by position) and a ``node`` is
``{"key", "name", "vars": [var, ...], "layers": [node, ...], "subs": [node, ...]}``; ``layers``
are the groups under the node's ``layers`` group, ``subs`` its other groups (sub-layers kept
under their attribute names), dropped when they hold nothing. Top-level ``layers`` also holds
the model's attribute groups (a subclassed model's ``self.block``), marked ``"attribute": true``;
``extras`` holds the optimizer's state and anything that is not a group. For a legacy file::

    {"layout": "legacy", "layers": [[layer name, [[weight name, shape, dtype], ...]], ...],
     "metadata": {"keras_version": ..., "backend": ...}}

Only dataset shapes, dtypes and a few attributes are read; links to other files are refused.
"""

from __future__ import annotations

import re
from typing import Any

from paramscope.core.errors import CorruptFileError, ParamscopeError, UnsafeFileError
from paramscope.parsers.hdf5 import import_h5py
from paramscope.readers.keras.h5_layout import dataset_dtype
from paramscope.rules.names import natural_key

__all__ = ["weights_part", "MAX_DEPTH", "MAX_OBJECTS"]

#: Deepest nesting of layers (or other groups) followed.
MAX_DEPTH = 64
#: Most HDF5 objects visited in one file.
MAX_OBJECTS = 1_000_000
_COUNTER = re.compile(r"_\d+$")
#: Top-level groups of a Keras 3 weights file that hold state outside the model.
_NOT_MODEL = frozenset({"optimizer"})
# What h5py and libhdf5 raise on a damaged file, besides OSError; a TypeError comes from a node
# of an unexpected kind (a committed datatype where a group should be).
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, NotImplementedError)


def weights_part(path: str) -> dict[str, Any]:
    """The groups of a Keras weights file as plain data (see the module docstring).

    Raises:
        CorruptFileError: the file cannot be read as HDF5 or has an unexpected layout.
        UnsafeFileError: an entry links to another file.
    """
    h5py = import_h5py("reading Keras .h5 weight files")
    try:
        with h5py.File(path, "r") as f:
            walker = _Walker(h5py, path)
            if "layer_names" in f.attrs:
                return walker.legacy(f)
            return walker.keras3(f)
    except ParamscopeError:
        raise
    except _READ_ERRORS as e:
        raise CorruptFileError(f"cannot read the HDF5 file ({e})", where=path) from None


class _Walker:
    def __init__(self, h5py: Any, where: str) -> None:
        self.h5py = h5py
        self.where = where
        self.n_objects = 0

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
        if self.n_objects > MAX_OBJECTS:
            raise CorruptFileError(f"more than {MAX_OBJECTS} HDF5 objects (at {name})", where=self.where)

    def _dataset(self, ds: Any) -> list[Any]:
        """``[shape, dtype]``; the shape is None for a dataset without a dataspace."""
        shape = [int(d) for d in ds.shape] if ds.shape is not None else None
        # Keras writes types numpy lacks (bfloat16, float8) as opaque bytes named by this attribute.
        declared = ds.attrs.get("dtype")
        if isinstance(declared, bytes):
            declared = declared.decode("utf-8", "replace")
        return [shape, dataset_dtype(ds.dtype, declared if isinstance(declared, str) else None)]

    def _name(self, node: Any, key: str) -> str:
        vars_group = self._get(node, "vars")
        return str(vars_group.attrs.get("name", key)) if vars_group is not None else key

    # -- Keras 3 ---------------------------------------------------------------------------

    def keras3(self, f: Any) -> dict[str, Any]:
        # saving_lib._save_state writes a model's own variables in ``vars``, the layers that
        # Sequential and Functional track in ``layers``, and every other saveable attribute under
        # its attribute name (``self.block = Block()`` -> ``block``; a list ``self.blocks`` ->
        # ``blocks/dense``, ``blocks/dense_1``), in sorted attribute order. A subclassed model
        # keeps most or all of its layers in those attribute groups. The optimizer (``optimizer``)
        # is the one saveable that is not part of the model.
        layers: list[dict[str, Any]] = []
        extras: list[list[Any]] = []
        for key in f:
            if key == "vars":
                continue
            if key == "layers":
                layers.extend(self._children(f, 0))
                continue
            item = self._get(f, key)
            if isinstance(item, self.h5py.Group) and key not in _NOT_MODEL:
                layers.extend({**node, "attribute": True} for node in self._extra_child(item, key, 1))
                continue
            if isinstance(item, self.h5py.Dataset):
                tensors = [[key, *self._dataset(item)]]
            else:
                tensors = self._plain_vars(item, key) if item is not None else []
            if tensors:
                extras.append([key, tensors])
        own = self._vars(f) if "vars" in f else None
        root_vars = self._get(f, "vars")
        root_name = str(root_vars.attrs["name"]) if root_vars is not None and "name" in root_vars.attrs else None
        return {"layout": "keras3", "root_name": root_name, "own": own, "layers": layers, "extras": extras}

    def _children(self, group: Any, depth: int) -> list[dict[str, Any]]:
        if depth > MAX_DEPTH:
            raise CorruptFileError(f"layers nested deeper than {MAX_DEPTH} at {group.name}", where=self.where)
        out = []
        layers_group = self._group(group, "layers")
        for key in sorted(layers_group, key=natural_key):
            self._tick(key)
            node = self._get(layers_group, key)
            if not isinstance(node, self.h5py.Group):
                continue
            name = self._name(node, key)
            tensors = self._vars(node) if self._get(node, "vars") is not None else []
            children = self._children(node, depth + 1) if "layers" in node else []
            if _COUNTER.sub("", key) == "input_layer" and not tensors and not children:
                continue
            out.append({"key": key, "name": name, "vars": tensors, "layers": children, "subs": self._subs(node, depth)})
        return out

    def _subs(self, node: Any, depth: int) -> list[dict[str, Any]]:
        # Keras writes other tracked objects (e.g. sublayers under their attribute names).
        out = []
        for sub in node:
            if sub not in ("vars", "layers") and isinstance(self._get(node, sub), self.h5py.Group):
                out.extend(self._extra_child(self._get(node, sub), sub, depth + 1))
        return out

    def _extra_child(self, node: Any, key: str, depth: int) -> list[dict[str, Any]]:
        if depth > MAX_DEPTH:
            raise CorruptFileError(f"groups nested deeper than {MAX_DEPTH} at {node.name}", where=self.where)
        name = self._name(node, key)
        tensors = self._vars(node) if self._get(node, "vars") is not None else []
        children = self._children(node, depth + 1) if "layers" in node else []
        subs = self._subs(node, depth)
        if not tensors and not children and not subs:
            return []
        return [{"key": key, "name": name, "vars": tensors, "layers": children, "subs": subs}]

    def _vars(self, node: Any) -> list[list[Any]]:
        group = self._group(node, "vars")
        if group is None:
            return []
        datasets = []
        for key in group:
            self._tick(key)
            item = self._get(group, key)
            if isinstance(item, self.h5py.Dataset):
                datasets.append((int(key) if key.isdigit() else 1 << 30, key, item))
        datasets.sort(key=lambda d: d[:2])
        return [[key, *self._dataset(ds)] for _, key, ds in datasets]

    def _plain_vars(self, node: Any, prefix: str, depth: int = 0) -> list[list[Any]]:
        if depth > MAX_DEPTH:
            raise CorruptFileError(f"groups nested deeper than {MAX_DEPTH} at {node.name}", where=self.where)
        out = []
        for key in node:
            self._tick(key)
            item = self._get(node, key)
            name = f"{prefix}/{key}"
            if isinstance(item, self.h5py.Dataset):
                out.append([name, *self._dataset(item)])
            elif isinstance(item, self.h5py.Group):
                out.extend(self._plain_vars(item, name, depth + 1))
        return out

    # -- legacy (Keras 2) ------------------------------------------------------------------

    def legacy(self, f: Any) -> dict[str, Any]:
        layers: list[list[Any]] = []
        for raw in f.attrs["layer_names"]:
            self._tick("layer")
            lname = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            if lname not in f:
                raise CorruptFileError(f"layer {lname!r} is listed in layer_names but has no group", where=self.where)
            g = self._get(f, lname)
            wnames = [w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w) for w in g.attrs.get("weight_names", [])]
            weights = []
            for wname in wnames:
                self._tick(wname)
                ds = self._get(g, wname)
                if not isinstance(ds, self.h5py.Dataset):
                    raise CorruptFileError(f"weight {wname!r} of layer {lname!r} is missing", where=self.where)
                weights.append([wname, *self._dataset(ds)])
            layers.append([lname, weights])
        meta = {}
        for key in ("keras_version", "backend"):
            if key in f.attrs:
                value = f.attrs[key]
                meta[key] = value.decode() if isinstance(value, bytes) else str(value)
        return {"layout": "legacy", "layers": layers, "metadata": meta}
