"""The one rule for files paramscope opens: regular files only, and inside the folder they came from.

A model folder is untrusted like a file. Its ``model.safetensors`` may be a symlink to
``~/.ssh/id_rsa``, its ``config.json`` a FIFO that blocks the first ``open`` forever, its index
may name ``../../etc/passwd``. Every path that comes from a folder (a name found by listing
it, a shard named by an index, an ONNX external data file, a GGUF split) goes through
:func:`folder_member`, and every file is opened through :func:`open_regular`:

- the path is resolved (symlinks followed) and must stay inside the folder's own resolved
  path; the Hugging Face cache's ``snapshots/<rev>/x -> ../../blobs/<sha>`` links are the one
  exception, and only into the same repository's blob store;
- it must be a regular file: FIFOs, sockets and devices are refused. ``open_regular`` opens
  with ``O_NONBLOCK`` (a FIFO without a writer then opens at once instead of blocking) and
  checks the opened descriptor, so a file swapped after the check is still refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from paramscope.core.errors import TargetError, UnsafeFileError

__all__ = ["open_regular", "read_head", "read_pointer", "folder_member", "is_inside", "kind_of"]

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)  # fmt: skip


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words.

    Example:
        >>> import stat
        >>> kind_of(stat.S_IFIFO)
        'a FIFO (named pipe)'
    """
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], *, where: str | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if, once opened, it is a regular file.

    Raises:
        TargetError: it cannot be opened.
        UnsafeFileError: it is a FIFO, socket, device or folder (reading it could block forever
            or never end).

    Example:
        >>> open_regular("/dev/null")
        Traceback (most recent call last):
        ...
        paramscope.core.errors.UnsafeFileError: /dev/null: is a device, not a regular file; paramscope reads only regular files (nothing was read)
    """
    spath = os.fspath(path)
    try:
        fd = os.open(spath, _FLAGS)
    except OSError as e:
        raise TargetError(f"cannot open file: {e.strerror or e}", where=where or spath) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFileError(
                f"is {kind_of(mode)}, not a regular file; paramscope reads only regular files "
                "(nothing was read)",
                where=where or spath,
            )
        if _FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_head(path: str | os.PathLike[str], limit: int) -> bytes | None:
    """At most ``limit + 1`` bytes of ``path`` if it is a regular file, else ``None``.

    For the small pointer files of checkpoint folders (DeepSpeed's ``latest``, Megatron's
    ``latest_checkpointed_iteration.txt``): one byte past ``limit`` tells the caller the file is
    too long, and a huge file, a FIFO or a device is never read whole or waited on.

    Example:
        >>> read_head("/dev/null", 64) is None
        True
    """
    try:
        with open_regular(path) as f:
            return f.read(limit + 1)
    except (OSError, TargetError, UnsafeFileError):
        return None


def read_pointer(path: str | os.PathLike[str], limit: int, encoding: str = "utf-8") -> str | None:
    """The stripped text of a pointer file (DeepSpeed's ``latest``, Megatron's tracker), or ``None``
    when it is not a regular file, holds more than ``limit`` bytes, or is not text in ``encoding``.

    Example:
        >>> read_pointer("/dev/null", 64) is None
        True
    """
    raw = read_head(path, limit)
    if raw is None or len(raw) > limit:
        return None
    try:
        return raw.decode(encoding).strip()
    except UnicodeDecodeError:
        return None


def is_inside(base: str, target: str) -> bool:
    """Whether resolved path ``target`` is ``base`` or lies under it.

    Example:
        >>> is_inside("/m", "/m/a.bin"), is_inside("/m", "/mx/a.bin")
        (True, False)
    """
    return os.path.commonpath([base, target]) == base


def _hub_blob(base: str, target: str) -> bool:
    # The hub cache keeps models--org--name/snapshots/<revision>/model.safetensors as a
    # symlink to models--org--name/blobs/<sha256>: leaving the snapshot folder, but only for
    # the repository's own blob store.
    snap = Path(base)
    repo = snap.parent.parent
    if snap.parent.name != "snapshots" or not repo.name.startswith(("models--", "datasets--", "spaces--")):
        return False
    return is_inside(str(repo / "blobs"), target)


def folder_member(folder: str | os.PathLike[str], name: str, *, what: str = "file", where: str | None = None,
                  must_exist: bool = True, noun: str = "the checkpoint folder") -> Path:  # fmt: skip
    """The resolved path of ``name`` inside ``folder``, refusing any that leaves it or is not a regular file.

    Nothing is opened: the path's text and the symlinks on the way are examined.

    Args:
        folder: the model's folder.
        name: a path relative to it (a file name found by listing it, or one a file names).
        what: what the file is, for messages (``"shard"``, ``"external data file"``).
        where: the file naming it, for messages (default: the folder).
        must_exist: refuse a missing file (else a missing file is returned as is).
        noun: the folder, in words, for messages.

    Raises:
        UnsafeFileError: the path is absolute, climbs out with ``..``, or is a symlink out of
            the folder; or it is a FIFO, socket, device or folder.
        TargetError: it does not exist (with ``must_exist``).

    Example:
        >>> folder_member("ckpt", "../secret.bin")
        Traceback (most recent call last):
        ...
        paramscope.core.errors.UnsafeFileError: ckpt: file '../secret.bin' leaves the checkpoint folder; refusing to open it
    """
    loc = where or os.fspath(folder)
    parts = name.replace("\\", "/").split("/")
    if not name or "\x00" in name or os.path.isabs(name) or name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
        raise UnsafeFileError(f"{what} {name!r} leaves {noun}; refusing to open it", where=loc)
    base = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(base, name))
    if not is_inside(base, target) and not _hub_blob(base, target):
        raise UnsafeFileError(
            f"{what} {name!r} is a symlink out of {noun} (to {target}); refusing to open it",
            where=loc,
        )
    try:
        mode = os.stat(target).st_mode
    except OSError:
        if must_exist:
            raise TargetError(f"{what} {name!r} does not exist", where=loc) from None
        return Path(target)
    if not stat.S_ISREG(mode):
        raise UnsafeFileError(
            f"{what} {name!r} is {kind_of(mode)}, not a regular file; refusing to read it", where=loc
        )
    return Path(target)
