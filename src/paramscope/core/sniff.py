"""Cheap, safe looks at a file before a reader claims it: is it a file, how does it start.

Readers' ``can_read`` must never raise on an odd argument or an unreadable path; they answer
"not mine" instead, so these helpers turn every such case into ``None`` or ``b""``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["file_path", "head"]


def file_path(source: object) -> Path | None:
    """The path ``source`` names when it is a path naming an existing regular file, else ``None``.

    Example:
        >>> file_path(123) is None, file_path("no/such/file.bin") is None
        (True, True)
    """
    # os.path.isfile, unlike Path.is_file, answers False for every error (a path it may not
    # look at, a name too long), which is what a "not mine" answer needs.
    if not isinstance(source, (str, os.PathLike)) or not os.path.isfile(source):
        return None
    return Path(source)


def head(path: str | os.PathLike[str], n: int) -> bytes:
    """The first ``n`` bytes of the file at ``path`` (fewer if it is shorter); ``b""`` if it
    cannot be read.

    Example:
        >>> head("no/such/file.bin", 8)
        b''
    """
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""
