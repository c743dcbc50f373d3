"""Read a saved Keras model: a ``.keras`` archive or a legacy full-model ``.h5`` file.

Nothing is loaded or run. A ``.keras`` file is a zip holding ``config.json`` (the model's
config), ``metadata.json`` and ``model.weights.h5``; the config is read with a bound on its
inflated size and parsed as strict JSON, and the weights file is opened in place with h5py to
read each weight's shape and dtype, never its data; that HDF5 half runs in a child process under
a time limit (:mod:`paramscope.readers.keras.h5_child`). A legacy ``.h5`` file keeps the config in
the root attribute ``model_config`` and the weights under ``model_weights/<layer>/``. Either
way the config engine (:mod:`paramscope.readers.keras.engine.graph`) builds the anatomy and checks every
rule-derived shape against the stored one; layers with no rule take their tensors from the file.
Keras, TensorFlow and PyTorch are never imported; Lambda code and custom classes are reported,
never decoded or imported.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from paramscope.core import limits, sniff
from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.strict_json import loads_strict
from paramscope.parsers.hdf5 import H5_TIMEOUT_S, HDF5_MAGIC, import_h5py, run_h5_child
from paramscope.parsers.zip import open_zip
from paramscope.readers.keras.h5_sniff import is_hdf5, names_model_config

__all__ = ["can_read", "read", "MAX_CONFIG_BYTES", "MAX_METADATA_BYTES", "H5_TIMEOUT_S"]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
#: Largest inflated ``config.json`` read: :data:`~paramscope.core.limits.MAX_KERAS_CONFIG_BYTES`
#: (the largest keras.applications config is under 1 MB), checked while inflating.
MAX_CONFIG_BYTES = limits.MAX_KERAS_CONFIG_BYTES
#: Largest ``metadata.json`` read (Keras writes about 70 bytes).
MAX_METADATA_BYTES = 1024 * 1024
_OPTIMIZER_WHY = "optimizer state saved with the model (step count, learning rate, moment estimates)"


def _h5py() -> Any:
    return import_h5py("reading Keras weights and .h5 files")


def can_read(source: object) -> bool:
    """Whether ``source`` is a ``.keras`` archive or a legacy full-model ``.h5`` file, by content."""
    found = sniff.file_path(source)
    if found is None:
        return False
    path = str(found)
    head = sniff.head(path, len(HDF5_MAGIC))
    if path.lower().endswith(".keras"):
        return True
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
            return False
        return "config.json" in names and bool(names & {"metadata.json", "model.weights.h5"})
    if is_hdf5(path):
        # Bytes only: libhdf5 runs in a time-limited child, never in this process, and not
        # for a mere "is it mine". Keras writes model_config before any weight, so its name
        # lies in the file's first MiB; files without it are weights (keras.weights).
        return names_model_config(path)
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
        >>> import os, tempfile, keras  # Keras writes the file; reading it needs no Keras
        >>> folder = tempfile.TemporaryDirectory()
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> path = os.path.join(folder.name, "model.keras")
        >>> model.save(path)
        >>> from paramscope.analysis import totals
        >>> anatomy = read(path)
        >>> anatomy.metadata["format"], totals(anatomy).params, model.count_params()
        ('keras v3 archive', 10, 10)
        >>> folder.cleanup()
    """
    path = os.fspath(source)
    if is_hdf5(path):
        return _read_legacy(path)
    return _read_archive(path)


# --- .keras archives -------------------------------------------------------------------------


def _bounded(zf: zipfile.ZipFile, member: str, cap: int, path: str, limit: str) -> bytes:
    info = zf.getinfo(member)
    if info.file_size > cap:
        raise limits.exceeded(
            f"archive entry {member} declares {info.file_size:,} bytes when inflated (refused "
            "without inflating it)", info.file_size, cap, limit, where=path,
        )
    buf = bytearray()
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(1 << 20):
                buf += chunk
                if len(buf) > cap:
                    raise limits.exceeded(
                        f"archive entry {member} inflates past {cap:,} bytes (stopped there)",
                        len(buf), cap, limit, where=path,
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as e:
        raise CorruptFileError(f"archive entry {member} cannot be read: {e}", where=path) from None
    return bytes(buf)


def _read_archive(path: str) -> Anatomy:
    try:
        zf = open_zip(path)  # refuses archives that other readers would read differently
    except UnsafeFileError:
        raise
    except CorruptFileError as e:
        raise CorruptFileError(f"{e.message}; a .keras file is the zip that model.save() writes", where=path) from None
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise CorruptFileError(
                "the archive has no config.json, so it is not a Keras model archive "
                "(model.save('model.keras') writes config.json, metadata.json and model.weights.h5)",
                where=path,
            )
        config = loads_strict(_bounded(zf, "config.json", MAX_CONFIG_BYTES, path, "MAX_KERAS_CONFIG_BYTES"), where=f"{path}: config.json")
        if not isinstance(config, Mapping):
            raise CorruptFileError("config.json is not a JSON object", where=f"{path}: config.json")
        metadata = {"format": "keras v3 archive"}
        if "metadata.json" in names:
            meta = loads_strict(
                _bounded(zf, "metadata.json", MAX_METADATA_BYTES, path, "MAX_METADATA_BYTES"), where=f"{path}: metadata.json"
            )
            if isinstance(meta, Mapping):
                metadata.update({k: str(v) for k, v in meta.items() if isinstance(v, (str, int, float))})
        notes: list[str] = []
        stored: dict[str, list[Any]] | None = None
        extras: tuple[TensorGroup, ...] = ()
        if "model.weights.h5" in names:
            reply = _isolated({"kind": "archive", "path": path, "config": config}, f"{path}: model.weights.h5")
            stored, extras = _stored(reply), _optimizer_from(reply)
        else:
            notes.append("the archive holds no model.weights.h5: shapes come from the config alone")
    return _build(config, path, stored, extras, metadata, notes)


def _isolated(request: dict[str, Any], where: str) -> dict[str, Any]:
    """Run the HDF5 half of the reading in a child process under :data:`H5_TIMEOUT_S` (read at
    call time, so that it can be changed)."""
    return run_h5_child(request, where, purpose="reading Keras weights and .h5 files", timeout_s=H5_TIMEOUT_S)


def _stored(reply: Mapping[str, Any]) -> dict[str, list[Any]] | None:
    from paramscope.readers.keras.engine.graph import StoredWeight

    raw = reply.get("stored")
    if raw is None:
        return None
    return {path: [StoredWeight(n, tuple(shape), dtype) for n, shape, dtype in ws] for path, ws in raw.items()}


def _optimizer_from(reply: Mapping[str, Any]) -> tuple[TensorGroup, ...]:
    from paramscope.readers.keras.engine.graph import StoredWeight

    weights = [StoredWeight(n, tuple(shape), dtype) for n, shape, dtype in reply.get("optimizer") or []]
    return _optimizer_group(weights, reply.get("optimizer_names"))


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
    from paramscope.readers.keras.engine.graph import anatomy_from_config

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


def _read_legacy(path: str) -> Anatomy:
    reply = _isolated({"kind": "legacy", "path": path}, path)
    stored = _stored(reply)
    notes = [] if stored is not None else ["the file holds no model_weights: shapes come from the config alone"]
    return _build(reply["config"], path, stored, _optimizer_from(reply), dict(reply["metadata"]), notes)
