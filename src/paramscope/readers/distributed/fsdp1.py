"""FSDP1 ``SHARDED_STATE_DICT`` rank files (``torch.save`` of ShardedTensors), one per rank.

Under ``FSDP.state_dict_type(model, StateDictType.SHARDED_STATE_DICT)`` each value is a
``ShardedTensor``; saving it with ``torch.save`` on every rank gives one file per rank. Its
pickle (``torch/distributed/_shard/sharded_tensor/api.py``) rebuilds the wrapper with the
*global* size and dtype (``_rebuild_from_type_v2(_rebuild_wrapper_subclass, ShardedTensor,
(..., dtype, size, ...), state)``) and carries a ``ShardedTensorMetadata`` listing every rank's
``ShardMetadata(shard_offsets, shard_sizes, placement)``, beside this rank's local shards.

This reader interprets those pickles with torch's allow-list plus exactly these sharded-tensor
classes kept as inert records; it reads every rank file of a folder, checks that each one's
local shards are the ones the metadata places on it and that the shards tile the global
tensor, and builds the global model. A single rank file is read too: its metadata already
names the global shapes.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

from paramscope.core.anatomy import Anatomy
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.tree import FlatTensor
from paramscope.readers.distributed.layout import RankLayout, RankShare, RankSlice, fsdp_projection
from paramscope.readers.distributed.records import MALFORMED, ClassName, Record
from paramscope.readers.distributed.torch_file import load_torch_file
from paramscope.parsers.pickle import Global
from paramscope.readers.torch.tensor_pickle import TensorRef, TorchPickleRules
from paramscope.rules.names import anatomy_from_flat, natural_key

__all__ = ["can_read", "read", "rank_layout"]

_ST = "torch.distributed._shard"
#: The sharded-tensor classes a ShardedTensor pickle names, each kept as an inert record.
_CLASSES = frozenset(
    {
        f"{_ST}.sharded_tensor.api.ShardedTensor", f"{_ST}.sharded_tensor.shard.Shard", f"{_ST}.metadata.ShardMetadata",
        f"{_ST}.sharded_tensor.metadata.ShardedTensorMetadata", f"{_ST}.sharded_tensor.metadata.TensorProperties",
        f"{_ST}.sharded_tensor.metadata.MEM_FORMAT_ENCODING", "torch.distributed.remote_device._remote_device",
        f"{_ST}.sharding_spec.chunk_sharding_spec.ChunkShardingSpec", "torch._utils._rebuild_wrapper_subclass",
        "torch.serialization._get_layout", "builtins.getattr", "__builtin__.getattr",
    }
)  # fmt: skip
_MARK = b"torch.distributed._shard.sharded_tensor"
_RANK = re.compile(r"(\d+)(?=\D*\.(?:pt|pth|bin)$)")


@dataclass(eq=False)
class _Sharded:
    """A ShardedTensor as data: global size and dtype, the metadata, this file's local shards."""

    size: tuple[int, ...]
    dtype: str
    parts: list[Any]


class _Rules(TorchPickleRules):
    def resolve(self, module: str, name: str, offset: int) -> Any:
        if f"{module}.{name}" in _CLASSES:
            return ClassName(f"{module}.{name}")
        return super().resolve(module, name, offset)

    def reduce(self, func: Any, args: tuple[Any, ...], offset: int) -> Any:
        if isinstance(func, Global) and func.name == "_rebuild_from_type_v2" and len(args) == 4 and isinstance(args[1], ClassName):
            if not args[1].qualname.endswith("ShardedTensor") or not isinstance(args[2], tuple) or len(args[2]) < 3:
                raise UnsafeFileError(f"the pickle rebuilds a {args[1].qualname} at byte {offset}; paramscope refuses it", where=self.where)
            size, dtype = args[2][2], getattr(args[2][1], "name", "")
            if not isinstance(size, tuple) or not all(type(d) is int and d >= 0 for d in size) or not dtype:
                raise CorruptFileError(f"a ShardedTensor at byte {offset} without a global size or dtype", where=self.where)
            parts = list(args[3]) if isinstance(args[3], (tuple, list)) else [args[3]]
            return _Sharded(size, dtype, parts)
        if isinstance(func, ClassName):
            if func.qualname.endswith("getattr"):
                if len(args) == 2 and isinstance(args[0], ClassName) and args[1] == "ProcessGroupState":
                    return ClassName(f"{args[0].qualname}.ProcessGroupState")
                raise UnsafeFileError(f"getattr at byte {offset} on something a ShardedTensor pickle never names", where=self.where)
            if func.qualname.endswith("_get_layout") and len(args) == 1 and isinstance(args[0], str):
                return args[0]
            if func.qualname.endswith(("MEM_FORMAT_ENCODING", "ProcessGroupState")):
                return Record(func.qualname, args=args)
        return super().reduce(func, args, offset)

    def newobj(self, cls: Any, args: tuple[Any, ...], offset: int) -> Any:
        if isinstance(cls, ClassName) and not cls.qualname.endswith(("getattr", "_get_layout", "_rebuild_wrapper_subclass")):
            return Record(cls.qualname, args=args)
        return super().newobj(cls, args, offset)

    def build(self, obj: Any, state: Any, offset: int) -> Any:
        if isinstance(obj, Record):
            # Slotted classes pickle their state as (dict or None, slot dict).
            for part in state if isinstance(state, tuple) else (state,):
                if isinstance(part, dict):
                    obj.state.update((k, v) for k, v in part.items() if isinstance(k, str))
            return obj
        return super().build(obj, state, offset)


def _is_sharded_file(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(names) != 1:
                return False
            with zf.open(names[0]) as f:
                return _MARK in f.read(1 << 16)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zlib.error):
        return False  # a damaged or odd archive is not ours: the torch checkpoint reader reports it


def _rank_files(source: Any) -> list[Path]:
    if not isinstance(source, (str, os.PathLike)):
        return []
    p = Path(source)
    if os.path.isfile(p):
        return [p] if p.suffix in (".pt", ".pth", ".bin") else []
    try:
        names = sorted(os.listdir(p), key=natural_key)
    except OSError:
        return []
    return [p / n for n in names if _RANK.search(n) and os.path.isfile(p / n)]


def can_read(source: Any) -> bool:
    """Whether ``source`` is an FSDP1 sharded rank file, or a folder of them.

    Example:
        >>> can_read("no-such-folder")
        False
    """
    files = _rank_files(source)
    return bool(files) and _is_sharded_file(files[0])


@dataclass
class _Global:
    name: str
    size: tuple[int, ...]
    dtype: str
    placed: dict[int, list[tuple[tuple[int, ...], tuple[int, ...]]]]  # rank -> its (offsets, sizes)


def _walk(value: Any, prefix: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if depth > 32:
        return
    if isinstance(value, (_Sharded, TensorRef)):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)


def _records(parts: Iterable[Any], cls: str) -> list[Record]:
    out: list[Record] = []
    for p in parts:
        if isinstance(p, Record) and p.cls.endswith(cls):
            out.append(p)
        elif isinstance(p, list):
            out += [x for x in p if isinstance(x, Record) and x.cls.endswith(cls)]
    return out


def _ints(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)) and all(type(v) is int and v >= 0 for v in value):
        return tuple(value)
    raise CorruptFileError("a shard's offsets or sizes are not counts", where=where)


def _load(source: Any) -> tuple[list[Path], dict[str, _Global], dict[str, TensorRef]]:
    files = _rank_files(source)
    found: dict[str, _Global] = {}
    plain: dict[str, TensorRef] = {}
    for path in files:
        where = str(path)
        rank_in_name = int(_RANK.findall(path.name)[-1]) if len(files) > 1 else None
        value = load_torch_file(path, _Rules(where))
        for name, t in _walk(value, ""):
            if isinstance(t, TensorRef):
                plain.setdefault(name, t)
                continue
            metas = _records(t.parts, "ShardedTensorMetadata")
            meta = metas[0] if len(metas) == 1 else None
            if meta is None:
                raise CorruptFileError(f"ShardedTensor {name!r} has no ShardedTensorMetadata", where=where)
            placed: dict[int, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
            for sm in meta.state.get("shards_metadata", []):
                dev = sm.state.get("placement") if isinstance(sm, Record) else None
                rank = dev.state.get("_rank") if isinstance(dev, Record) else None
                if type(rank) is not int:
                    raise CorruptFileError(f"a shard of {name!r} has no rank placement", where=where)
                placed.setdefault(rank, []).append((_ints(sm.state.get("shard_offsets"), where), _ints(sm.state.get("shard_sizes"), where)))
            g = _Global(name, t.size, t.dtype, placed)
            _check(g, where)
            if rank_in_name is not None:
                local = [(_ints(s.state["metadata"].state.get("shard_offsets"), where), _ints(s.state["metadata"].state.get("shard_sizes"), where))
                         for s in _records(t.parts, "sharded_tensor.shard.Shard") if isinstance(s.state.get("metadata"), Record)]  # fmt: skip
                if sorted(local) != sorted(placed.get(rank_in_name, [])):
                    raise CorruptFileError(f"{path.name} holds shards of {name!r} that its metadata places elsewhere", where=where)
            prev = found.setdefault(name, g)
            if (prev.size, prev.dtype, prev.placed) != (g.size, g.dtype, g.placed):
                raise CorruptFileError(f"rank files disagree on {name!r}'s global size or placement", where=where)
    if len(files) > 1:
        ranks = {r for g in found.values() for r in g.placed}
        in_names = {int(_RANK.findall(p.name)[-1]) for p in files}
        if not ranks <= in_names:
            raise CorruptFileError(f"the metadata places shards on ranks {sorted(ranks - in_names)} whose files are missing", where=os.fspath(source))
    return files, found, plain


def _check(g: _Global, where: str) -> None:
    boxes = [b for bs in g.placed.values() for b in bs]
    if any(len(o) != len(g.size) or len(s) != len(g.size) or any(a + b > d for a, b, d in zip(o, s, g.size)) for o, s in boxes):
        raise CorruptFileError(f"a shard of {g.name!r} lies outside its global size {list(g.size)}", where=where)
    if sum(prod(s) for _, s in boxes) != prod(g.size):
        raise CorruptFileError(f"the shards of {g.name!r} do not add up to its global size {list(g.size)}", where=where)
    for i, (o1, s1) in enumerate(boxes):
        for o2, s2 in boxes[i + 1 :]:
            if prod(s1) and prod(s2) and all(a < c + d and c < a + b for a, b, c, d in zip(o1, s1, o2, s2)):
                raise CorruptFileError(f"two shards of {g.name!r} overlap", where=where)


def read(source: Any, **options: Any) -> Anatomy:
    """The global model of FSDP1 sharded rank files (a folder of them, or one).

    Example:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> can_read(folder.name)  # an empty folder is no such checkpoint (tests build real ones)
        False
        >>> folder.cleanup()
    """
    files, found, plain = _safe(source)
    flat = [FlatTensor(g.name, g.size, g.dtype) for g in found.values()]
    flat += [FlatTensor(n, t.shape, t.dtype) for n, t in plain.items() if n not in found]
    world = len({r for g in found.values() for r in g.placed})
    meta = {"format": "FSDP1 SHARDED_STATE_DICT rank files (ShardedTensor)", "world_size": str(world), "rank_files": str(len(files))}
    notes = [f"Global shapes from the ShardedTensor metadata of {len(files)} rank file(s); no weight was loaded."]
    if len(files) == 1:
        notes.append("One rank's file: its metadata names every rank's shards, whose files were not checked.")
    path = Path(source)
    return anatomy_from_flat(flat, name=path.name, framework="torch", source=str(path), metadata=meta, notes=notes)


def _safe(source: Any) -> tuple[list[Path], dict[str, _Global], dict[str, TensorRef]]:
    try:
        return _load(source)
    except MALFORMED as e:
        raise CorruptFileError(f"malformed sharded rank file ({type(e).__name__}: {str(e)[:200]})", where=os.fspath(source)) from None


def rank_layout(source: Any, world_sizes: Iterable[int] = ()) -> RankLayout:
    """Per rank: the shards the metadata places on it."""
    files, found, _ = _safe(source)
    ranks = sorted({r for g in found.values() for r in g.placed})
    by_name = {int(_RANK.findall(p.name)[-1]): p for p in files} if len(files) > 1 else {}
    shares = []
    for r in ranks:
        slices = tuple(RankSlice(g.name, o, s, g.dtype) for g in found.values() for o, s in g.placed.get(r, []))
        f = by_name.get(r)
        shares.append(RankShare(r, (f.name,) if f else (), slices, os.path.getsize(f) if f else 0))
    model = [(g.name, g.size, g.dtype) for g in found.values()]
    total = sum(s.n_bytes or 0 for sh in shares for s in sh.slices)
    return RankLayout(os.fspath(source), "fsdp1", tuple(shares), total, tuple(fsdp_projection(model, n) for n in world_sizes))
