"""The ``.metadata`` pickle of a Distributed Checkpoint, rebuilt as inert records.

``torch.distributed.checkpoint`` pickles one ``Metadata`` dataclass
(``torch/distributed/checkpoint/metadata.py``): ``state_dict_metadata`` maps each key of the
saved state dict to a ``TensorStorageMetadata`` (``properties``, global ``size``, ``chunks`` of
``ChunkStorageMetadata(offsets, sizes)``) or a ``BytesStorageMetadata``; ``storage_data`` maps a
``MetadataIndex(fqn, offset)`` to the ``_StorageInfo(relative_path, offset, length)`` that says
which file and byte range hold it (``torch/distributed/checkpoint/filesystem.py``).

The pickle is interpreted by :mod:`paramscope.parsers.pickle` with an allow-list of exactly
the globals DCP writes: those dataclasses (created with ``NEWOBJ`` and filled with ``BUILD``,
never constructed), ``torch.Size``, dtypes, ``torch.serialization._get_layout``, the
memory-format enum, and ``pathlib`` paths (``StorageMeta.checkpoint_id``, a path kept as
text); for checkpoints written by torch 2.0 to 2.2, ``TensorProperties`` and the enum where
those versions kept them (``torch.distributed._shard.sharded_tensor.metadata``); and DCP's
save-plan dataclasses and ``WriteItemType`` enum, which Megatron-core's ``torch_dist``
checkpoints keep in ``Metadata.all_local_plans``. Every other global is refused before anything
is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paramscope.core.dtypes import lookup_dtype
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.parsers.pickle import scan_pickle

__all__ = ["Record", "parse_metadata", "ALLOWED"]

_METADATA = "torch.distributed.checkpoint.metadata"
_FILESYSTEM = "torch.distributed.checkpoint.filesystem"
_PLANNER = "torch.distributed.checkpoint.planner"
#: Where torch 2.0 to 2.2 kept ``TensorProperties`` and its memory-format enum: their .metadata
#: files name this module (the classes and their pickled state are otherwise the same).
_SHARD_METADATA = "torch.distributed._shard.sharded_tensor.metadata"

#: The dataclasses DCP writes; each becomes a :class:`Record` named after it.
_DATACLASSES: dict[tuple[str, str], str] = {
    (_METADATA, "Metadata"): "Metadata",
    (_METADATA, "TensorStorageMetadata"): "TensorStorageMetadata",
    (_METADATA, "ChunkStorageMetadata"): "ChunkStorageMetadata",
    (_METADATA, "TensorProperties"): "TensorProperties",
    (_SHARD_METADATA, "TensorProperties"): "TensorProperties",
    (_METADATA, "BytesStorageMetadata"): "BytesStorageMetadata",
    (_METADATA, "MetadataIndex"): "MetadataIndex",
    (_METADATA, "StorageMeta"): "StorageMeta",
    (_FILESYSTEM, "_StorageInfo"): "_StorageInfo",
    # Megatron-core's torch_dist checkpoints keep every rank's save plan beside the metadata
    # (``Metadata.all_local_plans``, for its cached-plan loads): DCP's planner dataclasses.
    (_PLANNER, "SavePlan"): "SavePlan",
    (_PLANNER, "WriteItem"): "WriteItem",
    (_PLANNER, "TensorWriteData"): "TensorWriteData",
    (_FILESYSTEM, "_StoragePrefix"): "_StoragePrefix",
}

_RECORDS = frozenset(_DATACLASSES.values())
_MEM_FORMATS = frozenset({f"{_METADATA}._MEM_FORMAT_ENCODING", f"{_SHARD_METADATA}.MEM_FORMAT_ENCODING"})

#: Every global the pickle may name: the dataclasses and the plain values they hold.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        *_DATACLASSES,
        (_METADATA, "_MEM_FORMAT_ENCODING"),
        (_SHARD_METADATA, "MEM_FORMAT_ENCODING"),
        (_PLANNER, "WriteItemType"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),
        ("pathlib", "PosixPath"),
        ("pathlib", "WindowsPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "PureWindowsPath"),
    }
)

#: ``torch.<dtype>`` globals a tensor's properties may name.
_TORCH_DTYPES = frozenset(
    {
        "float32", "float64", "float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
        "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "complex32", "complex64", "complex128",
        "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool",
    }
)  # fmt: skip

#: The most a ``.metadata`` file may hold; Llama-2-70B's with Adam state is about 3 MB.
MAX_METADATA_BYTES = 256 * 2**20


@dataclass(eq=False, slots=True)
class Record:
    """One of DCP's dataclasses, as data: its class name and the fields ``BUILD`` gave it.

    Hashed by identity, because ``MetadataIndex`` records are dict keys in ``storage_data``.
    """

    cls: str
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Marker:
    """An allowed global, named; never imported or called."""

    kind: str


@dataclass(frozen=True, slots=True)
class Dtype:
    """A ``torch.<dtype>`` global, kept as its canonical name."""

    name: str


class _Rules:
    def __init__(self, where: str) -> None:
        self.where = where

    def resolve(self, module: str, name: str, offset: int) -> Any:
        if (module, name) in _DATACLASSES:
            return _Marker(_DATACLASSES[module, name])
        if module == "torch" and name in _TORCH_DTYPES:
            known = lookup_dtype(name)
            return Dtype(known.name if known is not None else name)
        if (module, name) in ALLOWED:
            return _Marker(f"{module}.{name}")
        raise UnsafeFileError(
            f"the .metadata pickle names {module}.{name} at byte {offset}, which a Distributed "
            "Checkpoint never holds; paramscope refuses it and ran nothing",
            where=self.where,
        )

    def reduce(self, func: Any, args: tuple[Any, ...], offset: int) -> Any:
        kind = func.kind if type(func) is _Marker else ""
        if kind == "torch.Size" and len(args) == 1 and type(args[0]) is tuple:
            for d in args[0]:
                if type(d) is not int or d < 0:
                    raise CorruptFileError(f"a torch.Size at byte {offset} holds a value that is not a size", where=self.where)
            return args[0]
        if kind == "torch.serialization._get_layout" and len(args) == 1 and isinstance(args[0], str):
            return args[0]
        if kind in _MEM_FORMATS and len(args) == 1 and isinstance(args[0], int):
            return ("memory_format", args[0])
        if kind == f"{_PLANNER}.WriteItemType" and len(args) == 1 and type(args[0]) is int:
            return ("WriteItemType", args[0])
        if kind.startswith("pathlib.") and all(isinstance(a, str) for a in args):
            return "/".join(args)
        raise CorruptFileError(f"an unexpected call of {kind or type(func).__name__} at byte {offset}", where=self.where)

    def newobj(self, cls: Any, args: tuple[Any, ...], offset: int) -> Any:
        if type(cls) is _Marker and cls.kind in _RECORDS and args == ():
            return Record(cls.kind)
        raise UnsafeFileError(f"the .metadata pickle creates {cls!r} at byte {offset}; paramscope refuses it", where=self.where)

    def build(self, obj: Any, state: Any, offset: int) -> Any:
        if type(obj) is not Record or obj.state:
            raise CorruptFileError(f"BUILD on a {type(obj).__name__} at byte {offset}", where=self.where)
        if type(state) is dict and all(type(k) is str for k in state):
            obj.state = dict(state)
        elif obj.cls == "TensorProperties" and isinstance(state, tuple) and len(state) == 5:
            # TensorProperties.__getstate__: (dtype, layout, requires_grad, memory format, pin_memory).
            obj.state = dict(zip(("dtype", "layout", "requires_grad", "memory_format", "pin_memory"), state))
        else:
            raise CorruptFileError(f"BUILD of {obj.cls} at byte {offset} with a {type(state).__name__}", where=self.where)
        return obj


def parse_metadata(data: bytes, where: str) -> Record:
    """The ``Metadata`` record a ``.metadata`` file holds.

    Raises:
        UnsafeFileError: the pickle names a global outside :data:`ALLOWED` (nothing runs).
        CorruptFileError: it is malformed or is not a ``Metadata``.

    Example:
        >>> parse_metadata(b"\\x80\\x04N.", "x/.metadata")
        Traceback (most recent call last):
        ...
        paramscope.core.errors.CorruptFileError: x/.metadata: the .metadata pickle holds a NoneType, not DCP's Metadata
    """
    rules = _Rules(where)
    value = scan_pickle(data, where=where, resolve=rules.resolve, reduce=rules.reduce, build=rules.build,
                        newobj=rules.newobj).value  # fmt: skip
    if not isinstance(value, Record) or value.cls != "Metadata":
        raise CorruptFileError(f"the .metadata pickle holds a {type(value).__name__}, not DCP's Metadata", where=where)
    return value
