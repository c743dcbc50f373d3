"""PyTorch checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) read without unpickling.

Two layouts exist (``torch/serialization.py``):

- zip (``torch.save`` since 1.6): ``<top>/data.pkl`` is a pickle whose persistent ids name
  storages, each stored raw in ``<top>/data/<key>``; ``<top>/byteorder`` says the byte order.
- legacy (``_use_new_zipfile_serialization=False``): four pickles in a row (magic number,
  protocol version, system info, the data), then a pickled list of storage keys, then for each
  key an 8-byte element count and the raw elements.

A zip is opened through :func:`paramscope.parsers.zip.open_zip`, which refuses an archive that
another reader (torch's among them) could read differently, so the pickle read here is the one
torch would load. The data pickle is interpreted by :mod:`paramscope.parsers.pickle`, which
rebuilds only plain data, refuses every callable outside a short allow-list and bounds its work,
so a hostile checkpoint fails with :class:`~paramscope.core.errors.UnsafeFileError` and nothing
in it runs. Storage sizes are checked against the bytes present; tensor data is never read.

A Hugging Face folder (``pytorch_model.bin`` beside ``config.json``, or shards listed in
``pytorch_model.bin.index.json``) is read shard by shard and merged
(:mod:`paramscope.readers.torch.folder`).

A training checkpoint (``{"model": ..., "optimizer": ..., "epoch": 3}``, Lightning's
``state_dict``/``optimizer_states``) yields the model's tensors as the anatomy, optimizer state
as :attr:`Anatomy.extras` and scalars as metadata.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

from paramscope.core import sniff
from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.parsers.pickle import scan_pickle
from paramscope.parsers.zip import open_zip
from paramscope.readers.torch.checkpoint_anatomy import checkpoint_anatomy
from paramscope.readers.torch.folder import claims_folder, is_index, read_folder
from paramscope.readers.torch.module_records import script_declarations
from paramscope.readers.torch.tensor_pickle import StorageRef, TorchPickleRules, brief

__all__ = ["can_read", "read", "MAX_PICKLE_BYTES"]

#: The most a data.pkl may inflate to (checked while inflating): a state dict's pickle takes about
#: 100 bytes per tensor (its data is in other entries), so 64 MiB is far past any real one.
MAX_PICKLE_BYTES = 64 * 2**20
#: The most one TorchScript code file may inflate to (only its declarations are read).
MAX_CODE_BYTES = 4 * 2**20

#: First pickle of a legacy file: protocol 2, LONG1 of 10 bytes, torch's magic number.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_HEAD = b"\x80\x02\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")
_ZIP_MAGIC = b"PK\x03\x04"
#: Enough of a file's start to tell the layouts apart (the legacy magic pickle is 14 bytes).
_HEAD_BYTES = 16
_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def can_read(source: Any) -> bool:
    """Whether ``source`` is a PyTorch checkpoint file (zip with ``data.pkl``, legacy, or a pickle),
    a ``*.bin.index.json`` shard index, or a folder of ``.bin`` weights without safetensors.

    Example:
        >>> can_read("missing.pt")
        False
    """
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            return claims_folder(p)
        if is_index(p.name):
            return p.is_file()
    path = sniff.file_path(source)
    if path is None:
        return False
    head = sniff.head(path, _HEAD_BYTES)
    if _is_zip(path, head):
        # Claimed even when ambiguous (two data.pkl, data before the archive), so that read refuses it.
        try:
            with zipfile.ZipFile(path) as zf:
                return any(_is_pickle_name(n) for n in zf.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return False
    if head.startswith(_LEGACY_HEAD):
        return True
    # A bare pickle: claimed only with a checkpoint suffix, so that it is refused safely here.
    return len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5 and path.suffix.lower() in _SUFFIXES


def _is_zip(path: Path, head: bytes) -> bool:
    """A zip, or a checkpoint-named file with a zip at its end (data before it is refused later)."""
    return head.startswith(_ZIP_MAGIC) or (path.suffix.lower() in _SUFFIXES and zipfile.is_zipfile(path))


def _is_pickle_name(name: str) -> bool:
    return name == "data.pkl" or (name.endswith("/data.pkl") and name.count("/") == 1)


def _pickle_entry(names: list[str]) -> str | None:
    found = [n for n in names if _is_pickle_name(n)]
    if len(found) > 1:
        raise CorruptFileError(f"the archive holds {len(found)} data.pkl entries; a checkpoint has one")
    return found[0] if found else None


def read(source: Any, **options: Any) -> Anatomy:
    """Read a checkpoint's tensors (names, shapes, dtypes, ties) without loading any data.

    Args:
        source: path to the file, a shard index, or a folder of ``.bin`` weights.
        **options: ignored (readers share one signature).

    Returns:
        The anatomy: model tensors as layers, optimizer state in ``extras``.

    Raises:
        UnsafeFileError: the pickle names a callable outside the allow-list (nothing runs).
        CorruptFileError: the file is malformed or a declared size exceeds the bytes present;
            an index lists a tensor its shard does not store, or a shard that does not exist.

    Example:
        >>> import os, tempfile, torch  # torch writes the file; reading it needs no torch
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "model.pt")
        >>> torch.save(torch.nn.Linear(4, 2).state_dict(), path)
        >>> from paramscope.analysis import totals
        >>> anatomy = read(path)
        >>> anatomy.framework, totals(anatomy).params
        ('torch', 10)
        >>> folder.cleanup()
    """
    path = Path(source)
    try:
        if path.is_dir() or is_index(path.name):
            return read_folder(path, _load)
        return _read(path)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError, MemoryError) as e:
        # The readers above check what they rely on; this turns any check they missed into ours.
        raise CorruptFileError(f"malformed checkpoint ({type(e).__name__}: {str(e)[:200]})", where=str(path)) from None


def _read(path: Path) -> Anatomy:
    notes: list[str] = []
    decls: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    value, storages, meta = _load(path, notes, decls)
    return checkpoint_anatomy(path, value, storages, meta, notes, decls)


def _load(path: Path, notes: list[str] | None = None, decls: dict[str, Any] | None = None,
          ) -> tuple[Any, dict[str, StorageRef], dict[str, str]]:  # fmt: skip
    """(the data pickle's value, its storages, metadata) of one checkpoint file."""
    notes = [] if notes is None else notes
    decls = {} if decls is None else decls
    where = str(path)
    head = sniff.head(path, _HEAD_BYTES)
    meta: dict[str, str] = {}
    if _is_zip(path, head):
        value, storages = _read_zip(path, meta, notes, decls)
    elif head.startswith(_LEGACY_HEAD):
        value, storages = _read_legacy(path, meta)
    else:
        rules = TorchPickleRules(where)
        data = _read_capped(path)
        value = scan_pickle(data, where=where, resolve=rules.resolve, reduce=rules.reduce,
                            build=rules.build, persistent=rules.persistent, newobj=rules.newobj).value  # fmt: skip
        storages = {}
        meta["format"] = "pickle"
        if rules.storages:
            raise CorruptFileError("a bare pickle references storages it does not hold", where=where)
    return value, storages, meta


def _read_capped(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise UnsafeFileError(
            f"a {size:,}-byte pickle is larger than the {MAX_PICKLE_BYTES >> 20} MiB paramscope reads (its limit "
            "for one pickle; a state dict's pickle is a few MiB, tensors are stored apart): refused, nothing ran",
            where=str(path),
        )
    return path.read_bytes()


# -- zip layout ----------------------------------------------------------------------------


def _read_zip(path: Path, meta: dict[str, str], notes: list[str], decls: dict[str, Any]) -> tuple[Any, dict[str, StorageRef]]:
    where = str(path)
    try:
        with open_zip(path, where=where) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            entry = _pickle_entry(list(infos))
            if entry is None:
                raise CorruptFileError("the zip holds no data.pkl: not a PyTorch checkpoint", where=where)
            prefix = entry[: -len("data.pkl")]
            _check_prefix(zf.infolist(), prefix, where)
            data = _read_entry(zf, infos[entry], where, MAX_PICKLE_BYTES)
            order = infos.get(prefix + "byteorder")
            if order is not None:
                byteorder = _read_entry(zf, order, where, 16).decode("ascii", "replace").strip()
                meta["byteorder"] = byteorder
            version = infos.get(prefix + "version") or infos.get(prefix + ".format_version")
            if version is not None:
                meta["format"] = "torch zip (version " + _read_entry(zf, version, where, 16).decode(
                    "ascii", "replace").strip() + ")"  # fmt: skip
            code = {n[len(prefix) + 5 :]: infos[n] for n in infos if n.startswith(prefix + "code/") and n.endswith(".py")}
            if code:
                meta["format"] = "TorchScript archive (torch.jit.save)"
                budget = MAX_PICKLE_BYTES
                texts = {}
                for name, code_info in code.items():
                    raw = _read_entry(zf, code_info, where, min(budget, MAX_CODE_BYTES))
                    budget -= len(raw)
                    texts[name] = raw.decode("utf-8", "replace")
                decls.update(script_declarations(texts))
    except zipfile.BadZipFile as e:
        raise CorruptFileError(f"not a readable zip archive ({e})", where=where) from None
    except (OSError, EOFError, ValueError, NotImplementedError, zlib.error) as e:
        raise CorruptFileError(f"cannot read the zip archive ({type(e).__name__}: {e})", where=where) from None
    rules = TorchPickleRules(f"{where}: {entry}")
    value = scan_pickle(data, where=f"{where}: {entry}", resolve=rules.resolve, reduce=rules.reduce,
                        build=rules.build, persistent=rules.persistent, newobj=rules.newobj).value  # fmt: skip
    file_size = path.stat().st_size
    for key, ref in rules.storages.items():
        found = infos.get(f"{prefix}data/{key}")
        if found is None:
            raise CorruptFileError(f"storage {key!r} has no entry {prefix}data/{key}", where=where)
        info = found
        if info.compress_type == zipfile.ZIP_STORED and info.header_offset + info.compress_size > file_size:
            raise CorruptFileError(
                f"entry {info.filename} claims {info.compress_size} bytes past the end of the file", where=where
            )
        if ref.n_bytes > info.file_size:
            raise CorruptFileError(
                f"storage {key!r} declares {ref.numel} elements ({ref.n_bytes} bytes) but entry "
                f"{info.filename} holds {info.file_size} bytes",
                where=where,
            )
    return value, rules.storages


def _check_prefix(infos: list[zipfile.ZipInfo], prefix: str, where: str) -> None:
    """torch looks every record up under the folder of the archive's *first* member
    (``PyTorchStreamReader``): a data.pkl in another folder is not the one torch would load."""
    first = infos[0].filename if infos else ""
    top = first.split("/", 1)[0] + "/" if "/" in first else ""
    if top != prefix:
        raise UnsafeFileError(
            f"ambiguous checkpoint: its first member {first[:80]!r} puts torch in folder {top!r}, but the data "
            f"pickle is {prefix + 'data.pkl'!r}; torch would not load the pickle paramscope reads",
            where=where,
        )


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, cap: int) -> bytes:
    if info.flag_bits & 0x1:
        raise CorruptFileError(f"entry {info.filename} is encrypted; a checkpoint never is", where=where)
    chunks: list[bytes] = []
    total = 0
    with zf.open(info) as f:
        while True:
            chunk = f.read(min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise UnsafeFileError(
                    f"entry {info.filename} inflates past {cap:,} bytes, paramscope's limit for it (checked "
                    "while inflating; a zip bomb or not a checkpoint: a real state dict's pickle is a few MiB "
                    "because tensors are stored in other entries); refused, nothing ran",
                    where=where,
                )
    return b"".join(chunks)


# -- legacy layout -------------------------------------------------------------------------


def _read_legacy(path: Path, meta: dict[str, str]) -> tuple[Any, dict[str, StorageRef]]:
    where = str(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        # The pickles come first and are small; the storages after them are never read.
        head = f.read(MAX_PICKLE_BYTES)
        value, storages, pos, keys = _parse_legacy(head, where, meta)
        for key in keys:
            ref = storages[key]
            f.seek(pos)
            raw = f.read(8)
            if len(raw) < 8:
                raise CorruptFileError(f"storage {key!r}: the file ends at byte {pos} before its size", where=where)
            numel = int.from_bytes(raw, "little", signed=True)
            itemsize = ref.n_bytes // ref.numel if ref.numel else 1
            need = numel * itemsize
            if numel < 0 or numel != ref.numel or pos + 8 + need > size:
                raise CorruptFileError(
                    f"storage {key!r} at byte {pos} declares {numel} elements ({need} bytes); the pickle "
                    f"says {ref.numel} and {size - pos - 8} bytes are left",
                    where=where,
                )
            pos += 8 + need
    return value, storages


def _parse_legacy(buf: bytes, where: str, meta: dict[str, str]) -> tuple[Any, dict[str, StorageRef], int, list[str]]:
    plain = TorchPickleRules(where)
    pos = 0
    values = []
    for what in ("magic number", "protocol version", "system info"):
        scan = scan_pickle(buf, start=pos, where=f"{where}: {what}", resolve=plain.resolve, reduce=plain.reduce)
        values.append(scan.value)
        pos = scan.end
    if values[0] != _LEGACY_MAGIC:
        raise CorruptFileError("bad magic number in the legacy header", where=where)
    sys_info = values[2] if isinstance(values[2], dict) else {}
    meta["format"] = f"torch legacy (protocol {brief(values[1])})"
    if sys_info.get("little_endian") is False:
        meta["byteorder"] = "big"
    rules = TorchPickleRules(f"{where}: data pickle")
    scan = scan_pickle(buf, start=pos, where=f"{where}: data pickle", resolve=rules.resolve,
                       reduce=rules.reduce, build=rules.build, persistent=rules.persistent, newobj=rules.newobj)  # fmt: skip
    keys_scan = scan_pickle(buf, start=scan.end, where=f"{where}: storage keys", resolve=plain.resolve,
                            reduce=plain.reduce)  # fmt: skip
    keys = keys_scan.value
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CorruptFileError("the storage key list is not a list of strings", where=where)
    if len(set(keys)) != len(keys) or set(keys) != set(rules.storages):
        raise CorruptFileError(
            f"the storage key list ({len(keys)} keys) does not match the {len(rules.storages)} storages "
            "the data pickle references",
            where=where,
        )
    return scan.value, rules.storages, keys_scan.end, keys
