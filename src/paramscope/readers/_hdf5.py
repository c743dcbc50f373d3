"""What the HDF5 readers share: the file signature and the lazy import of ``h5py``.

``h5py`` is an optional dependency (the ``files`` extra), imported only when an HDF5 file is
actually read, so that reading other formats never pays for it or needs it.
"""

from __future__ import annotations

from typing import Any

from paramscope.core.errors import MissingDependencyError

__all__ = ["HDF5_MAGIC", "import_h5py"]

#: The first eight bytes of an HDF5 file (the superblock signature).
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def import_h5py(purpose: str) -> Any:
    """The ``h5py`` module, imported now.

    Args:
        purpose: what needs it, for the error message (``"reading Keras .h5 weight files"``).

    Raises:
        MissingDependencyError: h5py is not installed; the message names the extra to install.

    Example:
        >>> import_h5py("reading HDF5 files").File  # doctest: +SKIP
        <class 'h5py._hl.files.File'>
    """
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError("h5py", "files", purpose) from None
    return h5py
