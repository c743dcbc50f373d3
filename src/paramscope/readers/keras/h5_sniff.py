"""Is it HDF5, and does it hold a Keras model config: answered from bytes, without libhdf5.

``can_read`` runs for every file given to paramscope; libhdf5 can hang or crash on a hostile
file, so it only ever runs in the time-limited child (:mod:`paramscope.parsers.hdf5`). The HDF5
superblock starts with an 8-byte signature at offset 0, or at 512, 1024, 2048, ... when the
file begins with a user block (HDF5 File Format Specification, "Format Signature").
"""

from __future__ import annotations

import os

from paramscope.core.files import open_regular
from paramscope.core.errors import ParamscopeError

__all__ = ["HDF5_SIGNATURE", "is_hdf5", "names_model_config"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Offsets searched for the signature: 0, then powers of two from 512 up to 1 MiB.
_OFFSETS = (0, *(512 << k for k in range(12)))
#: Bytes searched for the ``model_config`` attribute name.
_CONFIG_WINDOW = 1 << 20


def is_hdf5(path: str | os.PathLike[str]) -> bool:
    """Whether the file has the HDF5 signature at one of the places the format allows.

    Example:
        >>> is_hdf5("no/such/file.h5")
        False
    """
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            for offset in _OFFSETS:
                if offset + len(HDF5_SIGNATURE) > size:
                    return False
                f.seek(offset)
                if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    return True
    except (ParamscopeError, OSError):
        return False
    return False


def names_model_config(path: str | os.PathLike[str]) -> bool:
    """Whether the attribute name ``model_config`` appears in the file's first MiB.

    Keras (``model.save("m.h5")``) writes the model config as a root attribute before any
    weight, so a full-model file names it near its start; a weights-only file never does.

    Example:
        >>> names_model_config("no/such/file.h5")
        False
    """
    try:
        with open_regular(path) as f:
            return b"model_config" in f.read(_CONFIG_WINDOW)
    except (ParamscopeError, OSError):
        return False
