"""PyTorch checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) read without unpickling.

Two layouts exist (``torch/serialization.py``):

- zip (``torch.save`` since 1.6): ``<top>/data.pkl`` is a pickle whose persistent ids name
  storages, each stored raw in ``<top>/data/<key>``; ``<top>/byteorder`` says the byte order.
- legacy (``_use_new_zipfile_serialization=False``): four pickles in a row (magic number,
  protocol version, system info, the data), then a pickled list of storage keys, then for each
  key an 8-byte element count and the raw elements.

The data pickle is interpreted by :mod:`paramscope.readers._pickle_scan`, which rebuilds only
plain data and refuses every callable outside a short allow-list, so a hostile checkpoint
fails with :class:`~paramscope.core.errors.UnsafeFileError` and nothing in it runs. Storage
sizes are checked against the bytes present; tensor data is never read.

A training checkpoint (``{"model": ..., "optimizer": ..., "epoch": 3}``, Lightning's
``state_dict``/``optimizer_states``) yields the model's tensors as the anatomy, optimizer state
as :attr:`Anatomy.extras` and scalars as metadata.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.tree import FlatTensor
from paramscope.readers._pickle_scan import scan_pickle
from paramscope.readers._torch_pickle import StorageRef, TensorRef, TorchPickleRules, brief
from paramscope.rules.names import anatomy_from_flat

__all__ = ["can_read", "read", "MAX_PICKLE_BYTES"]

#: The most a data.pkl may inflate to; a real state dict's pickle is a few MiB.
MAX_PICKLE_BYTES = 64 * 2**20

#: First pickle of a legacy file: protocol 2, LONG1 of 10 bytes, torch's magic number.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_HEAD = b"\x80\x02\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")
_ZIP_MAGIC = b"PK\x03\x04"
_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")
_MODEL_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_state")
_MAX_DEPTH = 64
_MAX_METADATA = 200


def _head(path: Path, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def can_read(source: Any) -> bool:
    """Whether ``source`` is a PyTorch checkpoint file (zip with ``data.pkl``, legacy, or a pickle).

    Example:
        >>> can_read("missing.pt")
        False
    """
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source)
    if not path.is_file():
        return False
    head = _head(path)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as zf:
                return _pickle_entry(zf.namelist()) is not None
        except (zipfile.BadZipFile, OSError, ValueError, CorruptFileError):
            return False
    if head.startswith(_LEGACY_HEAD):
        return True
    # A bare pickle: claimed only with a checkpoint suffix, so that it is refused safely here.
    return len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5 and path.suffix.lower() in _SUFFIXES


def _pickle_entry(names: list[str]) -> str | None:
    found = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
    if len(found) > 1:
        raise CorruptFileError(f"the archive holds {len(found)} data.pkl entries; a checkpoint has one")
    return found[0] if found else None


def read(source: Any, **options: Any) -> Anatomy:
    """Read a checkpoint's tensors (names, shapes, dtypes, ties) without loading any data.

    Args:
        source: path to the file.
        **options: ignored (readers share one signature).

    Returns:
        The anatomy: model tensors as layers, optimizer state in ``extras``.

    Raises:
        UnsafeFileError: the pickle names a callable outside the allow-list (nothing runs).
        CorruptFileError: the file is malformed or a declared size exceeds the bytes present.

    Example:
        >>> read("model.pt").framework  # doctest: +SKIP
        'torch'
    """
    path = Path(source)
    try:
        return _read(path)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError, MemoryError) as e:
        # The readers above check what they rely on; this turns any check they missed into ours.
        raise CorruptFileError(f"malformed checkpoint ({type(e).__name__}: {str(e)[:200]})", where=str(path)) from None


def _read(path: Path) -> Anatomy:
    where = str(path)
    head = _head(path)
    notes: list[str] = []
    meta: dict[str, str] = {}
    if head.startswith(_ZIP_MAGIC):
        value, storages = _read_zip(path, meta, notes)
    elif head.startswith(_LEGACY_HEAD):
        value, storages = _read_legacy(path, meta)
    else:
        rules = TorchPickleRules(where)
        data = _read_capped(path)
        value = scan_pickle(data, where=where, resolve=rules.resolve, reduce=rules.reduce,
                            build=rules.build, persistent=rules.persistent).value  # fmt: skip
        storages = {}
        meta["format"] = "pickle"
        if rules.storages:
            raise CorruptFileError("a bare pickle references storages it does not hold", where=where)
    return _anatomy(path, value, storages, meta, notes)


def _read_capped(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise CorruptFileError(
            f"a {size}-byte pickle is larger than the {MAX_PICKLE_BYTES >> 20} MiB paramscope reads",
            where=str(path),
        )
    return path.read_bytes()


# -- zip layout ----------------------------------------------------------------------------


def _read_zip(path: Path, meta: dict[str, str], notes: list[str]) -> tuple[Any, dict[str, StorageRef]]:
    where = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            entry = _pickle_entry(list(infos))
            if entry is None:
                raise CorruptFileError("the zip holds no data.pkl: not a PyTorch checkpoint", where=where)
            prefix = entry[: -len("data.pkl")]
            data = _read_entry(zf, infos[entry], where, MAX_PICKLE_BYTES)
            order = infos.get(prefix + "byteorder")
            if order is not None:
                byteorder = _read_entry(zf, order, where, 16).decode("ascii", "replace").strip()
                meta["byteorder"] = byteorder
            version = infos.get(prefix + "version") or infos.get(prefix + ".format_version")
            if version is not None:
                meta["format"] = "torch zip (version " + _read_entry(zf, version, where, 16).decode(
                    "ascii", "replace").strip() + ")"  # fmt: skip
    except zipfile.BadZipFile as e:
        raise CorruptFileError(f"not a readable zip archive ({e})", where=where) from None
    except (OSError, EOFError, ValueError, NotImplementedError) as e:
        raise CorruptFileError(f"cannot read the zip archive ({type(e).__name__}: {e})", where=where) from None
    rules = TorchPickleRules(f"{where}: {entry}")
    value = scan_pickle(data, where=f"{where}: {entry}", resolve=rules.resolve, reduce=rules.reduce,
                        build=rules.build, persistent=rules.persistent).value  # fmt: skip
    file_size = path.stat().st_size
    for key, ref in rules.storages.items():
        info = infos.get(f"{prefix}data/{key}")
        if info is None:
            raise CorruptFileError(f"storage {key!r} has no entry {prefix}data/{key}", where=where)
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
                    f"entry {info.filename} inflates past {cap} bytes (a zip bomb or not a checkpoint); "
                    "paramscope stops reading",
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
                       reduce=rules.reduce, build=rules.build, persistent=rules.persistent)  # fmt: skip
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


# -- from the unpickled value to an anatomy ------------------------------------------------


def _walk(value: Any, prefix: str, depth: int, where: str, path_ids: tuple[int, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(dotted name, leaf) for every leaf of nested dicts, lists and tuples."""
    if depth > _MAX_DEPTH:
        raise CorruptFileError(f"values nested deeper than {_MAX_DEPTH} levels at {prefix!r}", where=where)
    if isinstance(value, (list, tuple)) and not any(isinstance(v, (dict, list, tuple, TensorRef)) for v in value):
        yield prefix, value  # a list of plain values (betas, parameter ids) is one fact
    elif isinstance(value, (dict, list, tuple)):
        if id(value) in path_ids:
            return  # a container that holds itself: its leaves were listed already
        ids = path_ids + (id(value),)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            label = k if isinstance(k, (str, int)) else brief(k)
            name = f"{prefix}.{label}" if prefix else str(label)
            yield from _walk(v, name, depth + 1, where, ids)
    else:
        yield prefix, value


def _has_tensor(value: Any, where: str) -> bool:
    return any(isinstance(v, TensorRef) for _, v in _walk(value, "", 0, where))


def _split(value: Any, where: str) -> tuple[Any, str, dict[str, Any]]:
    """(the model's tensors, under what key, every other top-level entry)."""
    if not isinstance(value, dict):
        return value, "", {}
    if all(isinstance(v, TensorRef) for v in value.values()):
        return value, "", {}
    for key in _MODEL_KEYS:
        inner = value.get(key)
        if isinstance(inner, dict) and _has_tensor(inner, where):
            return inner, key, {k: v for k, v in value.items() if k != key}
    model = {k: v for k, v in value.items() if not _is_optimizer(k) and _has_tensor(v, where)}
    rest = {k: v for k, v in value.items() if k not in model}
    return model, "", rest


def _is_optimizer(key: Any) -> bool:
    return isinstance(key, str) and ("optim" in key.lower() or key in ("lr_schedulers", "scaler", "amp"))


def _ref_tensor(name: str, t: TensorRef, why: str) -> Tensor:
    return Tensor(name, t.shape, t.dtype, Role.BUFFER, False, t.key, None, why)


def _anatomy(path: Path, value: Any, storages: dict[str, StorageRef], meta: dict[str, str], notes: list[str]) -> Anatomy:
    where = str(path)
    model, model_key, rest = _split(value, where)
    flat: list[FlatTensor] = []
    refs: dict[str, TensorRef] = {}
    for name, leaf in _walk(model, "", 0, where):
        if isinstance(leaf, TensorRef):
            refs[name] = leaf
            role = None
            is_param = None
            if leaf.is_parameter:
                role = Role.TRAINABLE if leaf.requires_grad else Role.FROZEN
                is_param = True
            flat.append(FlatTensor(name or "tensor", leaf.shape, leaf.dtype, leaf.key, role, is_param))
        elif leaf is not None and len(meta) < _MAX_METADATA:
            meta[f"{model_key + '.' if model_key else ''}{name}"] = _short(leaf)
    if model_key:
        notes.append(f"Model tensors are read from the checkpoint's {model_key!r} entry.")
    if flat and not any(ft.role is not None for ft in flat):
        notes.append(
            "A state dict does not say which tensors are parameters and which are buffers; "
            "roles come from the tensor names."
        )
    extras: list[TensorGroup] = []
    for key, entry in rest.items():
        tensors = [
            _ref_tensor(name, leaf, _why_extra(key, name))
            for name, leaf in _walk(entry, "", 0, where)
            if isinstance(leaf, TensorRef)
        ]
        if tensors:
            group = "optimizer" if _is_optimizer(key) else str(key)
            extras.append(TensorGroup(group, tuple(tensors), note=f"from the checkpoint's {key!r} entry"))
        for name, leaf in _walk(entry, str(key), 0, where):
            if not isinstance(leaf, TensorRef) and leaf is not None and len(meta) < _MAX_METADATA:
                meta[name] = _short(leaf)
    _view_notes(refs, notes)
    meta["storages"] = str(len(storages))
    meta["storage_bytes"] = str(sum(s.n_bytes for s in storages.values()))
    devices = sorted({s.location for s in storages.values()})
    if devices:
        meta["devices"] = ", ".join(devices)
    anatomy = anatomy_from_flat(flat, name=path.name, framework="torch", source=where, metadata=meta, notes=notes)
    return anatomy.with_(extras=tuple(extras), metadata=MappingProxyType(dict(anatomy.metadata)))


def _why_extra(key: Any, name: str) -> str:
    if not _is_optimizer(key):
        return f"stored in the checkpoint's {key!r} entry, not part of the model"
    last = name.rsplit(".", 1)[-1]
    what = {
        "exp_avg": "Adam's running mean of gradients (first moment)",
        "exp_avg_sq": "Adam's running mean of squared gradients (second moment)",
        "momentum_buffer": "SGD momentum",
        "step": "the optimizer's step counter",
        "square_avg": "RMSprop's running mean of squared gradients",
        "max_exp_avg_sq": "AMSGrad's running maximum of the second moment",
    }.get(last, "optimizer state")
    return f"{what}; not part of the model"


def _view_notes(refs: dict[str, TensorRef], notes: list[str]) -> None:
    by_storage: dict[str, dict[str, list[str]]] = {}
    for name, t in refs.items():
        by_storage.setdefault(t.storage.key, {}).setdefault(t.key, []).append(name)
    for key, views in by_storage.items():
        if len(views) > 1:
            names = ", ".join(v[0] for v in list(views.values())[:4])
            notes.append(
                f"{names} are different views of one stored buffer (storage {key!r}); each view's "
                "elements are counted, as torch's state dict counts them."
            )


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 16:
        return f"{len(value)} values: {', '.join(_short(v) for v in value[:8])}, ..."
    if isinstance(value, (set, frozenset)):
        return f"a set of {len(value)} values"
    text = repr(value) if isinstance(value, (bytes, bytearray)) else str(value)
    return text if len(text) <= 120 else text[:117] + "..."
