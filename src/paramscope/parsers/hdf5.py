"""What the HDF5 readers share: the file signature, the lazy import of ``h5py``, the child.

``h5py`` is an optional dependency (the ``files`` extra), imported only when an HDF5 file is
actually read, so that reading other formats never pays for it or needs it.

libhdf5 parses a file in C while holding Python's lock: on some damaged files (a corrupt global
heap under a variable-length string) it loops forever, beyond the reach of Ctrl-C or a timer,
and on others it may crash. So the Keras readers walk HDF5 files in a child process
(:mod:`paramscope.readers.keras.h5_child`) through :func:`run_h5_child`, under a time limit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

from paramscope.core.errors import CorruptFileError, MissingDependencyError, UnsafeFileError, UnsupportedFormatError

__all__ = ["HDF5_MAGIC", "H5_TIMEOUT_S", "child_argv", "import_h5py", "run_h5_child"]

#: The first eight bytes of an HDF5 file (the superblock signature).
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Time allowed to read a weights file's headers (ResNet50's take a fraction of a second).
H5_TIMEOUT_S = 60
#: Errors the child may answer with; any other type becomes a CorruptFileError.
_ERRORS: dict[str, type[CorruptFileError] | type[UnsupportedFormatError]] = {
    "CorruptFileError": CorruptFileError,
    "UnsafeFileError": UnsafeFileError,
    "UnsupportedFormatError": UnsupportedFormatError,
}


def import_h5py(purpose: str) -> Any:
    """The ``h5py`` module, imported now.

    Args:
        purpose: what needs it, for the error message (``"reading Keras .h5 weight files"``).

    Raises:
        MissingDependencyError: h5py is not installed; the message names the extra to install.

    Example:
        >>> import_h5py("reading HDF5 files").File
        <class 'h5py._hl.files.File'>
    """
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError("h5py", "files", purpose) from None
    return h5py


#: The child's whole program: load paramscope from the package directory given as ``argv[1]``
#: (the very package the parent runs: installed, editable or on ``PYTHONPATH``), then call
#: ``main()`` of the module named by ``argv[2]``. Nothing is added to ``sys.path``.
_BOOT = (
    "import importlib, importlib.util, os, sys\n"
    "root, name = sys.argv[1:3]\n"
    "del sys.argv[1:3]\n"
    "spec = importlib.util.spec_from_file_location("
    "'paramscope', os.path.join(root, '__init__.py'), submodule_search_locations=[root])\n"
    "package = importlib.util.module_from_spec(spec)\n"
    "sys.modules['paramscope'] = package\n"
    "spec.loader.exec_module(package)\n"
    "raise SystemExit(importlib.import_module(name).main())\n"
)


def child_argv(module: str) -> list[str]:
    """The command that runs paramscope's ``module`` in an isolated child Python.

    ``python -I`` (isolated mode) leaves the current directory and the script's directory off
    ``sys.path`` and ignores every ``PYTHON*`` variable and the user's site-packages: a model
    folder holding a ``json.py`` or ``h5py.py`` (the working directory when someone inspects a
    download) cannot inject code into the child. ``-I`` also ignores ``PYTHONPATH``, so the child
    is told where this paramscope lives and loads that package by its path, whether it is
    installed, editable or only on ``PYTHONPATH``; nothing else is added to ``sys.path``.

    Args:
        module: the paramscope module whose ``main()`` the child runs.

    Example:
        >>> child_argv("paramscope.readers.keras.h5_child")[1:3]
        ['-I', '-c']
    """
    # This file is paramscope/parsers/hdf5.py: the package is two folders up.
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [sys.executable, "-I", "-c", _BOOT, package_dir, module]


def run_h5_child(request: dict[str, Any], where: str, *, purpose: str, timeout_s: float = H5_TIMEOUT_S) -> dict[str, Any]:
    """Answer ``request`` in a child process running :mod:`paramscope.readers.keras.h5_child`.

    Args:
        request: the JSON request (``{"kind": ..., "path": ...}``).
        where: the file named in the errors raised here.
        purpose: what needs h5py, for the error message when it is missing.
        timeout_s: how long the child may run.

    Returns:
        The child's reply.

    Raises:
        MissingDependencyError: h5py is not installed.
        UnsafeFileError: the child did not finish in ``timeout_s`` (libhdf5 looping on a damaged
            file), or it answered with that error.
        CorruptFileError: the child stopped without a reply (a crash), or answered with that error.
        UnsupportedFormatError: the child answered with that error.

    Example:
        >>> run_h5_child({"kind": "weights", "path": "missing.weights.h5"}, "missing.weights.h5",
        ...              purpose="reading Keras .h5 weight files")
        Traceback (most recent call last):
        paramscope.core.errors.CorruptFileError: missing.weights.h5: cannot read the HDF5 file (...)
    """
    if importlib.util.find_spec("h5py") is None:
        raise MissingDependencyError("h5py", "files", purpose)
    try:
        done = subprocess.run(
            child_argv("paramscope.readers.keras.h5_child"),
            input=json.dumps(request), capture_output=True, text=True, timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise UnsafeFileError(
            f"the HDF5 library did not finish reading the file's headers in {timeout_s} s; "
            "a damaged file can send it into an endless loop",
            where=where,
        ) from None
    try:
        reply = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise CorruptFileError(
            f"the HDF5 library stopped while reading the file (exit status {done.returncode}){': ' if last else ''}{last}",
            where=where,
        ) from None
    error = reply.get("error")
    if error:
        cls = _ERRORS.get(error.get("type"), CorruptFileError)
        raise cls(str(error.get("message")), where=error.get("where"))
    return dict(reply)
