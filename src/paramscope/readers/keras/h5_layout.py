"""Where a saved Keras model keeps each layer's weights, read from HDF5 headers alone.

Two layouts exist. A ``.keras`` archive's ``model.weights.h5`` (Keras 3, ``saving_lib``) stores
a model's layers under ``layers/<key>`` where ``key`` is the snake-cased class name made unique
in layer order (``dense``, ``dense_1``), each layer's own variables in ``vars/0..n`` and its
sub-objects (a recurrent layer's ``cell``, an attention layer's ``query_dense``...) in groups of
their own. Keys are matched to layer names through the config, in the order Keras saves; the
``name`` attribute Keras also writes is a variable-length string that a damaged global heap can
send libhdf5 into an endless loop over, so it is not read. A legacy ``.h5`` file stores
``model_weights/<layer name>`` groups whose ``weight_names`` attribute lists variable paths
(``sequential/dense/kernel`` in Keras 3, ``dense/kernel:0`` in Keras 2). Both are mapped to the
config engine's layer paths (``inner/dense``). Only shapes and dtypes are read; links to other
files are refused; soft links are not followed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from paramscope.core.dtypes import canonical_dtype
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.rules.keras.configs import entry_name
from paramscope.rules.keras.configs import is_model_entry as is_model

__all__ = ["H5Walker", "dataset_dtype", "read_attr", "strings", "legacy_weights", "MAX_H5_DEPTH", "MAX_NAMES_BYTES"]

#: Deepest group nesting followed in a weights file (Keras nests a few levels per sub-model).
MAX_H5_DEPTH = 64
#: Largest list of names read from one attribute (100,000 weight names take a few MB).
MAX_NAMES_BYTES = 64 * 1024 * 1024
#: Config class names whose runtime class (which names the ``.keras`` groups) differs.
_RUNTIME_CLASS = {"GroupQueryAttention": "GroupedQueryAttention"}


class H5Walker:
    """Reads shapes and dtypes from the groups of a Keras 3 weights file, following no links."""

    def __init__(self, h5py: Any, where: str) -> None:
        self.h5py = h5py
        self.where = where

    def child(self, group: Any, key: str) -> Any | None:
        link = group.get(key, getlink=True)
        if link is None or isinstance(link, self.h5py.SoftLink):
            return None
        if isinstance(link, self.h5py.ExternalLink):
            raise UnsafeFileError(
                f"HDF5 entry {group.name}/{key} links to the external file {link.filename!r}; "
                "paramscope reads no file the user did not name",
                where=self.where,
            )
        return group[key]

    def stored(self, obj: Any, name: str) -> Any:
        from paramscope.readers.keras.engine.graph import StoredWeight

        if not isinstance(obj, self.h5py.Dataset):
            raise CorruptFileError(f"HDF5 entry {obj.name} should be a weight array", where=self.where)
        return StoredWeight(name, tuple(int(d) for d in (obj.shape or ())), self._dtype(obj))

    def _dtype(self, obj: Any) -> str:
        label = strings(read_attr(obj, "dtype", 64, self.where)) if obj.dtype.kind == "V" else []
        return dataset_dtype(obj.dtype, label[0] if label else None)

    def dataset(self, group: Any, name: str) -> Any:
        """The dataset at ``name`` (which may contain ``/``) under ``group``, following no links."""
        node = group
        for part in name.split("/"):
            nxt = self.child(node, part) if isinstance(node, self.h5py.Group) else None
            if nxt is None:
                raise CorruptFileError(f"weight {name!r} is listed in {group.name} but not stored there", where=self.where)
            node = nxt
        return node

    def collect(self, group: Any, prefix: str, depth: int, skip: Sequence[str] = ()) -> list[Any]:
        """All weights under a layer's group: its own ``vars/0..n``, then its sub-objects'."""
        if depth > MAX_H5_DEPTH:
            raise CorruptFileError(f"HDF5 groups nested deeper than {MAX_H5_DEPTH} at {group.name}", where=self.where)
        out = []
        own = self.child(group, "vars")
        if own is not None:
            for key in sorted(own.keys(), key=_numeric):
                ds = self.child(own, key)
                if ds is not None:
                    out.append(self.stored(ds, f"{prefix}{key}"))
        for key in group.keys():
            if key == "vars" or key in skip:
                continue
            sub = self.child(group, key)
            if isinstance(sub, self.h5py.Group):
                out.extend(self.collect(sub, f"{prefix}{key}/", depth + 1))
        return out

    def model(self, layers: Any, entry: Mapping[str, Any], prefix: str, stored: dict[str, list[Any]]) -> None:
        """Map the ``layers/<key>`` groups of a model to layer paths, recursing into sub-models."""
        entries = _layer_entries(entry)
        by_name = {entry_name(e): e for e in entries}
        by_key = _keys_by_class(entries, skip_inputs=entry.get("class_name") == "Sequential")
        for key in layers.keys():
            group = self.child(layers, key)
            if not isinstance(group, self.h5py.Group):
                continue
            name = by_key.get(key)
            if name is None:
                raise CorruptFileError(
                    f"the weights file holds a group {group.name} that matches no layer of the config "
                    "(Keras names these groups after the layers' classes, in order); the weights do "
                    "not belong to this config",
                    where=self.where,
                )
            sub = by_name.get(name)
            path = f"{prefix}{name}"
            if sub is not None and is_model(sub):
                inner = self.child(group, "layers")
                if inner is not None:
                    self.model(inner, sub, f"{path}/", stored)
                own = self.collect(group, "", 1, skip=("layers",))
                if own:
                    stored[path] = own
            else:
                weights = self.collect(group, "", 1)
                if weights or sub is not None:
                    stored[path] = weights


def dataset_dtype(stored: Any, declared: str | None) -> str:
    """The dtype of a Keras weight dataset, from its HDF5 type and its ``dtype`` attribute.

    NumPy has no bfloat16 or float8: their arrays (``ml_dtypes``) reach HDF5 as opaque
    1- or 2-byte values. Keras 3's ``saving_lib.H5Entry`` names the type in a ``dtype``
    attribute; the legacy ``.h5`` writer does not. Among the types Keras uses, only bfloat16
    is a 2-byte type NumPy lacks (float16, int16 and uint16 are native), so an unnamed 2-byte
    opaque value is bfloat16. A 1-byte one (a float8 variant or int4) keeps the name
    ``void8``: its bytes are known, its kind is not.

    Example:
        >>> import numpy as np
        >>> dataset_dtype(np.dtype("V2"), None), dataset_dtype(np.dtype("V1"), "float8_e4m3fn")
        ('bfloat16', 'float8_e4m3fn')
    """
    if declared:
        return canonical_dtype(declared)
    if stored.kind == "V" and stored.itemsize == 2:
        return "bfloat16"
    return canonical_dtype(str(stored.name))


def _numeric(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 62, key)


def _snake(name: str) -> str:
    # keras/src/utils/naming.py to_snake_case, which names the groups of a model's layers.
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keys_by_class(entries: Sequence[Mapping[str, Any]], *, skip_inputs: bool) -> dict[str, str]:
    # saving_lib._save_container_state: key = snake_case(class) made unique with _1, _2, ...
    used: dict[str, int] = {}
    keys: dict[str, str] = {}
    for e in entries:
        cls = str(e.get("class_name", ""))
        module = str(e.get("module") or "")
        # keras.ops calls in a functional graph are operations, not layers: nothing is saved.
        if (skip_inputs and cls == "InputLayer") or module.startswith(("keras.src.ops", "keras.ops")):
            continue
        base = _snake(_RUNTIME_CLASS.get(cls, cls))
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        keys[key] = entry_name(e)
    return keys


def _layer_entries(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    cfg = entry.get("config")
    layers = cfg.get("layers") if isinstance(cfg, Mapping) else None
    return [e for e in layers or [] if isinstance(e, Mapping)]


def read_attr(obj: Any, name: str, cap: int, where: str) -> Any:
    """An HDF5 attribute, refused before reading when its stored size exceeds ``cap``."""
    if name not in obj.attrs:
        return None
    attr_id = obj.attrs.get_id(name)
    try:
        size = attr_id.get_storage_size()
    except (RuntimeError, ValueError):
        # Variable-length strings (what Keras writes): the stored size is that of their heap
        # references; libhdf5 reads the text from the file's global heap.
        size = 0
    if size > cap:
        raise UnsafeFileError(
            f"HDF5 attribute {obj.name}@{name} holds {size:,} bytes, over the {cap:,}-byte limit", where=where
        )
    return obj.attrs[name]


def strings(value: Any) -> list[str]:
    items = [value] if isinstance(value, (str, bytes)) else list(value if value is not None else [])
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in items]


def legacy_weights(walker: H5Walker, weights: Any, config: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``model_weights/<layer>`` groups, each listing its weights in ``weight_names``, by layer path."""
    stored: dict[str, list[Any]] = {}
    entries = {entry_name(e): e for e in _layer_entries(config)} if is_model(config) else {}
    for layer_name in strings(read_attr(weights, "layer_names", MAX_NAMES_BYTES, walker.where)):
        group = walker.child(weights, layer_name)
        if group is None:
            raise CorruptFileError(f"layer {layer_name!r} is listed but has no weights group", where=walker.where)
        for wname in strings(read_attr(group, "weight_names", MAX_NAMES_BYTES, walker.where)):
            path, local = _legacy_path(layer_name, wname, entries.get(layer_name))
            stored.setdefault(path, []).append(walker.stored(walker.dataset(group, wname), local))
        stored.setdefault(layer_name, [])
    return stored


def _legacy_path(layer_name: str, weight_name: str, entry: Mapping[str, Any] | None) -> tuple[str, str]:
    """Layer path and local name of a stored weight (``inner/dense/kernel:0`` -> ``inner/dense``, ``kernel``).

    Keras 2 suffixes names with ``:0``; Keras 3 prefixes them with the enclosing model's name.
    """
    parts = [p.split(":")[0] for p in weight_name.split("/")]
    if layer_name in parts[:-1]:
        parts = parts[parts.index(layer_name) + 1 :]
    path = layer_name
    while entry is not None and is_model(entry) and len(parts) > 1:
        subs = {entry_name(e): e for e in _layer_entries(entry)}
        if parts[0] not in subs:
            break
        path, entry, parts = f"{path}/{parts[0]}", subs[parts[0]], parts[1:]
    return path, "/".join(parts)
