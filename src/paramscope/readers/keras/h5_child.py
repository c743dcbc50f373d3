"""The HDF5 half of reading a saved Keras model or weights file, run in a child process.

libhdf5 parses the file in C while holding Python's lock: on some damaged files (a corrupt
global heap under a variable-length string) it loops forever, and neither Ctrl-C nor a timer
can stop it; on others it may crash. So :mod:`paramscope.readers.keras.archive` and
:mod:`paramscope.readers.keras.weights` run this module as
``python -m paramscope.readers.keras.h5_child`` (through
:func:`paramscope.parsers.hdf5.run_h5_child`), send a JSON request on stdin and read a JSON
reply on stdout, under a time limit. The functions here are plain and can also be called
in-process (the tests do).

Request: ``{"kind": "archive", "path": ..., "config": {...}}`` (a ``.keras`` file, whose config
the parent has read), ``{"kind": "legacy", "path": ...}`` (a full-model ``.h5``) or
``{"kind": "weights", "path": ...}`` (a weights-only ``.h5``, answered by
:func:`paramscope.readers.keras.weights_h5.weights_part`).
Reply: ``{"stored": {layer path: [[name, shape, dtype], ...]} | null, "optimizer": [...],
"optimizer_names": [...] | null, "config": {...}, "metadata": {...}}`` (or, for weights, the
file's groups as plain data), or
``{"error": {"type": "CorruptFileError", "message": ..., "where": ...}}``.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from typing import IO, Any, cast

from paramscope.core.errors import CorruptFileError, ParamscopeError, UnsupportedFormatError
from paramscope.core.limits import MAX_KERAS_CONFIG_BYTES
from paramscope.core.strict_json import loads_strict
from paramscope.readers.keras.h5_layout import MAX_NAMES_BYTES, H5Walker, legacy_weights, read_attr, strings
from paramscope.readers.keras.weights_h5 import weights_part
from paramscope.rules.keras.configs import entry_name, is_model_entry

__all__ = ["archive_part", "legacy_part", "open_member", "main"]

#: Largest ``keras_version`` / ``backend`` attribute read.
_MAX_SHORT_BYTES = 1024 * 1024
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, RuntimeError, NotImplementedError,
                zipfile.BadZipFile, zlib.error)


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``start`` of an open file."""

    def __init__(self, raw: io.BufferedReader, start: int, size: int) -> None:
        super().__init__()
        self._raw, self._start, self._size, self._pos = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        if n == 0:
            return 0
        self._raw.seek(self._start + self._pos)
        got = self._raw.readinto(view[:n]) or 0
        self._pos += got
        return got

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_member(zf: zipfile.ZipFile, name: str, path: str) -> IO[bytes]:
    """A seekable file object for one archive member.

    A stored (uncompressed) member, as Keras writes ``model.weights.h5``, is read straight from
    the archive file: zipfile's own member objects seek by reading every byte in between, which
    would read all the weights. Its bounds are checked against the archive's real size first.
    """
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return zf.open(info)
    raw = open(path, "rb")
    try:
        raw.seek(info.header_offset)
        header = raw.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise CorruptFileError(f"no local header for {name} at byte offset {info.header_offset}", where=path)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        end = os.fstat(raw.fileno()).st_size
        if info.compress_size != info.file_size or start + info.file_size > end:
            raise CorruptFileError(
                f"archive entry {name} claims {info.file_size:,} bytes from byte offset {start}, "
                f"past the end of the {end:,}-byte file",
                where=path,
            )
    except BaseException:
        raw.close()
        raise
    return cast(IO[bytes], _Window(raw, start, info.file_size))


def _plain(weights: Sequence[Any]) -> list[list[Any]]:
    return [[w.name, list(w.shape), w.dtype] for w in weights]


def archive_part(path: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Shapes and dtypes in a ``.keras`` archive's ``model.weights.h5``, by layer path."""
    import h5py

    where = f"{path}: model.weights.h5"
    try:
        with zipfile.ZipFile(path) as zf, open_member(zf, "model.weights.h5", path) as member:
            # h5py reads the member in place, seeking to the headers it needs; no data is read.
            with h5py.File(member, "r") as f:
                walker = H5Walker(h5py, where)
                stored: dict[str, list[Any]] = {}
                layers = walker.child(f, "layers")
                if is_model_entry(config) and layers is not None:
                    walker.model(layers, config, "", stored)
                elif layers is not None or walker.child(f, "vars") is not None:
                    stored[entry_name(config)] = walker.collect(f, "", 0, skip=("optimizer",))
                opt = walker.child(f, "optimizer")
                optimizer = walker.collect(opt, "", 0) if opt is not None else []
    except ParamscopeError:
        raise
    except _READ_ERRORS as e:
        raise CorruptFileError(f"the weights file cannot be read: {e}", where=where) from None
    return {
        "stored": {k: _plain(v) for k, v in stored.items()},
        "optimizer": _plain(optimizer),
        "optimizer_names": None,
    }


def legacy_part(path: str) -> dict[str, Any]:
    """Config, metadata, shapes and dtypes of a legacy full-model ``.h5`` file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except _READ_ERRORS as e:
        raise CorruptFileError(f"not a readable HDF5 file: {e}", where=path) from None
    with f:
        try:
            raw = read_attr(f, "model_config", MAX_KERAS_CONFIG_BYTES, path)
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
                value = strings(read_attr(f, key, _MAX_SHORT_BYTES, path))
                if value:
                    metadata[key] = value[0]
            walker = H5Walker(h5py, path)
            weights = walker.child(f, "model_weights")
            stored = legacy_weights(walker, weights, config) if weights is not None else None
            opt = walker.child(f, "optimizer_weights")
            names = strings(read_attr(opt, "weight_names", MAX_NAMES_BYTES, path)) if opt is not None else []
            optimizer = [walker.stored(walker.dataset(opt, n), n) for n in names]
        except ParamscopeError:
            raise
        except _READ_ERRORS as e:
            raise CorruptFileError(f"the HDF5 file cannot be read: {e}", where=path) from None
    return {
        "config": config,
        "metadata": metadata,
        "stored": None if stored is None else {k: _plain(v) for k, v in stored.items()},
        "optimizer": _plain(optimizer),
        "optimizer_names": names,
    }


def main() -> int:
    """Answer one JSON request from stdin on stdout; errors are replies too."""
    request = json.loads(sys.stdin.read())
    try:
        if request["kind"] == "archive":
            reply = archive_part(request["path"], request["config"])
        elif request["kind"] == "weights":
            reply = weights_part(request["path"])
        else:
            reply = legacy_part(request["path"])
    except ParamscopeError as e:
        reply = {"error": {"type": type(e).__name__, "message": e.message, "where": e.where}}
    sys.stdout.write(json.dumps(reply))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
