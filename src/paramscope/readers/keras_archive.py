"""Read a saved Keras model: a ``.keras`` archive or a legacy full-model ``.h5`` file.

Nothing is loaded or run. A ``.keras`` file is a zip holding ``config.json`` (the model's
config), ``metadata.json`` and ``model.weights.h5``; the config is read with a bound on its
inflated size and parsed as strict JSON, and the weights file is opened in place with h5py to
read each weight's shape and dtype, never its data. A legacy ``.h5`` file keeps the config in
the root attribute ``model_config`` and the weights under ``model_weights/<layer>/``. Either
way the config engine (:mod:`paramscope.rules.keras.graph`) builds the anatomy and checks every
rule-derived shape against the stored one; layers with no rule take their tensors from the file.
Keras, TensorFlow and PyTorch are never imported; Lambda code and custom classes are reported,
never decoded or imported.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.dtypes import canonical_dtype
from paramscope.core.errors import CorruptFileError, MissingDependencyError, UnsafeFileError, UnsupportedFormatError
from paramscope.core.strict_json import loads_strict

__all__ = ["can_read", "read", "MAX_CONFIG_BYTES", "MAX_METADATA_BYTES"]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Largest inflated ``config.json`` read (a large Keras config is a few MB).
MAX_CONFIG_BYTES = 256 * 1024 * 1024
#: Largest ``metadata.json`` read (Keras writes about 70 bytes).
MAX_METADATA_BYTES = 1024 * 1024
#: Deepest group nesting followed in a weights file (Keras nests a few levels per sub-model).
MAX_H5_DEPTH = 64
_MODEL_CLASSES = ("Functional", "Sequential", "Model")
#: Config class names whose runtime class (which names the ``.keras`` groups) differs.
_RUNTIME_CLASS = {"GroupQueryAttention": "GroupedQueryAttention"}
_OPTIMIZER_WHY = "optimizer state saved with the model (step count, learning rate, moment estimates)"


def _head(path: str, n: int = 8) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError("h5py", "files", "reading Keras weights and .h5 files") from None
    return h5py


def can_read(source: object) -> bool:
    """Whether ``source`` is a ``.keras`` archive or a legacy full-model ``.h5`` file, by content."""
    if not isinstance(source, (str, os.PathLike)) or not os.path.isfile(source):
        return False
    path = os.fspath(source)
    head = _head(path)
    if path.lower().endswith(".keras"):
        return True
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
        return "config.json" in names and bool(names & {"metadata.json", "model.weights.h5"})
    if head == HDF5_MAGIC:
        try:
            h5py = _h5py()
            with h5py.File(path, "r") as f:
                return "model_config" in f.attrs
        except MissingDependencyError:
            with open(path, "rb") as fh:
                return b"model_config" in fh.read(1 << 20)
        except Exception:  # an unreadable HDF5 file is left to the readers that might know it
            return False
    return False


def read(source: str | os.PathLike[str], **options: Any) -> Anatomy:
    """Read a ``.keras`` archive or a legacy ``.h5`` model file.

    Args:
        source: the file.
        **options: ignored.

    Raises:
        CorruptFileError: the file is damaged, lacks a config, or its weights contradict it.
        UnsafeFileError: an entry inflates past its bound, or the weights file links elsewhere.
        UnsupportedFormatError: an HDF5 file that holds weights but no model config.

    Example:
        >>> anatomy = read("model.keras")  # doctest: +SKIP
        >>> anatomy.metadata["format"]  # doctest: +SKIP
        'keras v3 archive'
    """
    path = os.fspath(source)
    if _head(path) == HDF5_MAGIC:
        return _read_legacy(path)
    return _read_archive(path)


# --- .keras archives -------------------------------------------------------------------------


def _bounded(zf: zipfile.ZipFile, member: str, cap: int, path: str) -> bytes:
    info = zf.getinfo(member)
    if info.file_size > cap:
        raise UnsafeFileError(
            f"archive entry {member} declares {info.file_size:,} bytes when inflated, over the "
            f"{cap:,}-byte limit; refused without inflating it",
            where=path,
        )
    buf = bytearray()
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(1 << 20):
                buf += chunk
                if len(buf) > cap:
                    raise UnsafeFileError(
                        f"archive entry {member} inflates past the {cap:,}-byte limit; refused",
                        where=path,
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as e:
        raise CorruptFileError(f"archive entry {member} cannot be read: {e}", where=path) from None
    return bytes(buf)


def _read_archive(path: str) -> Anatomy:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise CorruptFileError(
            f"not a readable zip archive ({e}); a .keras file is the zip that model.save() writes",
            where=path,
        ) from None
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise CorruptFileError(
                "the archive has no config.json, so it is not a Keras model archive "
                "(model.save('model.keras') writes config.json, metadata.json and model.weights.h5)",
                where=path,
            )
        config = loads_strict(_bounded(zf, "config.json", MAX_CONFIG_BYTES, path), where=f"{path}: config.json")
        if not isinstance(config, Mapping):
            raise CorruptFileError("config.json is not a JSON object", where=f"{path}: config.json")
        metadata = {"format": "keras v3 archive"}
        if "metadata.json" in names:
            meta = loads_strict(
                _bounded(zf, "metadata.json", MAX_METADATA_BYTES, path), where=f"{path}: metadata.json"
            )
            if isinstance(meta, Mapping):
                metadata.update({k: str(v) for k, v in meta.items() if isinstance(v, (str, int, float))})
        notes: list[str] = []
        stored: dict[str, list[Any]] | None = None
        extras: tuple[TensorGroup, ...] = ()
        if "model.weights.h5" in names:
            stored, extras = _archive_weights(zf, config, path)
        else:
            notes.append("the archive holds no model.weights.h5: shapes come from the config alone")
    return _build(config, path, stored, extras, metadata, notes)


def _archive_weights(
    zf: zipfile.ZipFile, config: Mapping[str, Any], path: str
) -> tuple[dict[str, list[Any]], tuple[TensorGroup, ...]]:
    h5py = _h5py()
    where = f"{path}: model.weights.h5"
    try:
        # h5py reads a file object in place, seeking to the metadata it needs; no data is read.
        with zf.open("model.weights.h5") as member, h5py.File(member, "r") as f:
            walker = _Walker(h5py, where)
            stored: dict[str, list[Any]] = {}
            layers = walker.child(f, "layers")
            if _is_model(config) and layers is not None:
                walker.model(layers, config, "", stored)
            elif layers is not None or walker.child(f, "vars") is not None:
                stored[_entry_name(config)] = walker.collect(f, "", 0, skip=("optimizer",))
            opt = walker.child(f, "optimizer")
            extras = _optimizer_group(walker.collect(opt, "", 0)) if opt is not None else ()
    except (CorruptFileError, MissingDependencyError):
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, RuntimeError) as e:
        raise CorruptFileError(f"the weights file cannot be read: {e}", where=where) from None
    return stored, extras


class _Walker:
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
        from paramscope.rules.keras.graph import StoredWeight

        if not isinstance(obj, self.h5py.Dataset):
            raise CorruptFileError(f"HDF5 entry {obj.name} should be a weight array", where=self.where)
        return StoredWeight(name, tuple(int(d) for d in (obj.shape or ())), _dtype_name(obj.dtype))

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
                out.extend(self.collect(sub, f"{prefix}{_group_name(sub, key, self)}/", depth + 1))
        return out

    def model(self, layers: Any, entry: Mapping[str, Any], prefix: str, stored: dict[str, list[Any]]) -> None:
        """Map the ``layers/<key>`` groups of a model to layer paths, recursing into sub-models."""
        entries = _layer_entries(entry)
        by_name = {_entry_name(e): e for e in entries}
        by_key = _keys_by_class(entries, skip_inputs=entry.get("class_name") == "Sequential")
        for key in layers.keys():
            group = self.child(layers, key)
            if not isinstance(group, self.h5py.Group):
                continue
            name = _vars_name(group, self) or by_key.get(key, key)
            sub = by_name.get(name)
            path = f"{prefix}{name}"
            if sub is not None and _is_model(sub):
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


def _vars_name(group: Any, walker: _Walker) -> str | None:
    own = walker.child(group, "vars")
    name = own.attrs.get("name") if own is not None else None
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return name if isinstance(name, str) and name else None


def _group_name(group: Any, key: str, walker: _Walker) -> str:
    return _vars_name(group, walker) or key


def _numeric(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 62, key)


def _dtype_name(dtype: Any) -> str:
    name = str(getattr(dtype, "name", dtype))
    return canonical_dtype(name)


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
        if skip_inputs and cls == "InputLayer":
            continue
        base = _snake(_RUNTIME_CLASS.get(cls, cls))
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        keys[key] = _entry_name(e)
    return keys


def _entry_name(entry: Mapping[str, Any]) -> str:
    name = entry.get("name")
    if not isinstance(name, str):
        cfg = entry.get("config")
        name = cfg.get("name") if isinstance(cfg, Mapping) else None
    return name if isinstance(name, str) else str(entry.get("class_name", "?"))


def _is_model(entry: Mapping[str, Any]) -> bool:
    cfg = entry.get("config")
    return entry.get("class_name") in _MODEL_CLASSES and isinstance(cfg, Mapping) and isinstance(
        cfg.get("layers"), list
    )


def _layer_entries(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    cfg = entry.get("config")
    layers = cfg.get("layers") if isinstance(cfg, Mapping) else None
    return [e for e in layers or [] if isinstance(e, Mapping)]


def _optimizer_group(weights: Sequence[Any], names: Sequence[str] | None = None) -> tuple[TensorGroup, ...]:
    if not weights:
        return ()
    tensors = tuple(
        Tensor(
            name=f"optimizer/{w.name}" if names is None else names[i],
            shape=tuple(w.shape),
            dtype=w.dtype,
            role=Role.BUFFER,
            is_param=False,
            key=f"optimizer:{i}",
            why=_OPTIMIZER_WHY,
        )
        for i, w in enumerate(weights)
    )
    return (TensorGroup("optimizer", tensors, "saved optimizer state; not part of the model's counts"),)


def _build(
    config: Mapping[str, Any],
    path: str,
    stored: dict[str, list[Any]] | None,
    extras: tuple[TensorGroup, ...],
    metadata: dict[str, str],
    notes: list[str],
) -> Anatomy:
    from paramscope.rules.keras.graph import anatomy_from_config

    anatomy = anatomy_from_config(config, source=path, stored_weights=stored)
    if stored is not None:
        paths = {layer.path for layer in anatomy.walk()}
        for layer_path, weights in stored.items():
            if weights and layer_path not in paths:
                raise CorruptFileError(
                    f"the weights file holds {len(weights)} weights for layer {layer_path!r}, "
                    "which the config does not have; the weights do not belong to this config",
                    where=path,
                )
        for layer in anatomy.walk():
            if layer.tensors and layer.path not in stored and not layer.children:
                notes.append(f"layer {layer.path!r} has no weights in the weights file; its shapes come from the config")
    return anatomy.with_(
        extras=anatomy.extras + extras,
        metadata={**dict(anatomy.metadata), **metadata},
        notes=anatomy.notes + tuple(notes),
    )


# --- legacy full-model .h5 files ---------------------------------------------------------------


def _attr(obj: Any, name: str, cap: int, where: str) -> Any:
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


def _strings(value: Any) -> list[str]:
    items = [value] if isinstance(value, (str, bytes)) else list(value if value is not None else [])
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in items]


def _read_legacy(path: str) -> Anatomy:
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"not a readable HDF5 file: {e}", where=path) from None
    with f:
        try:
            raw = _attr(f, "model_config", MAX_CONFIG_BYTES, path)
            if raw is None:
                raise UnsupportedFormatError(
                    "this HDF5 file has no model_config attribute: it holds weights only "
                    "(model.save_weights), not a model",
                    where=path,
                )
            config = loads_strict(raw if isinstance(raw, (str, bytes)) else bytes(raw), where=f"{path}: model_config")
            if not isinstance(config, Mapping):
                raise CorruptFileError("model_config is not a JSON object", where=f"{path}: model_config")
            metadata = {"format": "legacy keras h5"}
            for key in ("keras_version", "backend"):
                value = _attr(f, key, MAX_METADATA_BYTES, path)
                if value is not None:
                    metadata[key] = _strings(value)[0] if _strings(value) else ""
            walker = _Walker(h5py, path)
            weights = walker.child(f, "model_weights")
            stored = _legacy_weights(walker, weights, config) if weights is not None else None
            extras: tuple[TensorGroup, ...] = ()
            opt = walker.child(f, "optimizer_weights")
            if opt is not None:
                names = _strings(_attr(opt, "weight_names", MAX_CONFIG_BYTES, path))
                extras = _optimizer_group([walker.stored(_dataset(walker, opt, n), n) for n in names], names)
        except (CorruptFileError, MissingDependencyError, UnsupportedFormatError):
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise CorruptFileError(f"the HDF5 file cannot be read: {e}", where=path) from None
    notes = [] if stored is not None else ["the file holds no model_weights: shapes come from the config alone"]
    return _build(config, path, stored, extras, metadata, notes)


def _dataset(walker: _Walker, group: Any, name: str) -> Any:
    node = group
    for part in name.split("/"):
        nxt = walker.child(node, part) if isinstance(node, walker.h5py.Group) else None
        if nxt is None:
            raise CorruptFileError(f"weight {name!r} is listed in {group.name} but not stored there", where=walker.where)
        node = nxt
    return node


def _legacy_weights(walker: _Walker, weights: Any, config: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``model_weights/<layer>`` groups, each listing its weights in ``weight_names``, by layer path."""
    stored: dict[str, list[Any]] = {}
    entries = {_entry_name(e): e for e in _layer_entries(config)} if _is_model(config) else {}
    for layer_name in _strings(_attr(weights, "layer_names", MAX_CONFIG_BYTES, walker.where)):
        group = walker.child(weights, layer_name)
        if group is None:
            raise CorruptFileError(f"layer {layer_name!r} is listed but has no weights group", where=walker.where)
        for wname in _strings(_attr(group, "weight_names", MAX_CONFIG_BYTES, walker.where)):
            path, local = _legacy_path(layer_name, wname, entries.get(layer_name))
            stored.setdefault(path, []).append(walker.stored(_dataset(walker, group, wname), local))
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
    while entry is not None and _is_model(entry) and len(parts) > 1:
        subs = {_entry_name(e): e for e in _layer_entries(entry)}
        if parts[0] not in subs:
            break
        path, entry, parts = f"{path}/{parts[0]}", subs[parts[0]], parts[1:]
    return path, "/".join(parts)
