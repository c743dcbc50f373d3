"""What a PyTorch checkpoint's pickle may name, rebuilt as inert records.

``torch.save`` writes tensors as calls to a few rebuild functions in ``torch._utils`` whose
first argument is a storage named by a persistent id. This module lists the globals a
checkpoint of plain tensors needs (the same idea as ``torch.load(weights_only=True)``), turns
each into a marker, and rebuilds storages and tensors as :class:`StorageRef` and
:class:`TensorRef` records. Anything else is refused with
:class:`~paramscope.core.errors.UnsafeFileError` naming the callable.

The argument orders are those of ``torch/_utils.py`` (``_rebuild_tensor_v2(storage,
storage_offset, size, stride, requires_grad, backward_hooks, metadata=None)``,
``_rebuild_tensor_v3(..., dtype, metadata=None)``, ``_rebuild_parameter(data, requires_grad,
backward_hooks)``) and ``torch/serialization.py`` (persistent ids ``('storage', storage_type,
key, location, numel[, view_metadata])``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paramscope.core.dtypes import canonical_dtype, lookup_dtype
from paramscope.core.errors import CorruptFileError, UnsafeFileError, UnsupportedFormatError
from paramscope.parsers.pickle import Global

__all__ = ["StorageRef", "TensorRef", "ModuleRecord", "TorchPickleRules", "STORAGE_DTYPES", "brief"]

#: Legacy typed storage classes and the dtype of their elements.
STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}

#: ``torch.<dtype>`` globals (written with untyped storages) that have a plain element size.
_TORCH_DTYPES = frozenset(
    {
        "float32", "float", "float64", "double", "float16", "half", "bfloat16",
        "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
        "complex32", "chalf", "complex64", "cfloat", "complex128", "cdouble",
        "int64", "long", "int32", "int", "int16", "short", "int8", "uint8",
        "uint16", "uint32", "uint64", "bool", "float4_e2m1fn_x2",
    }
)  # fmt: skip

#: Other torch dtypes: named as data, but paramscope has no element size for them.
_OTHER_DTYPES = frozenset(
    {"float4_e2m1fn_x2", "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "bits1x8", "bits2x4",
     "bits4x2", "bits8", "bits16", *(f"int{i}" for i in range(1, 8)), *(f"uint{i}" for i in range(1, 8))}
) - _TORCH_DTYPES  # fmt: skip

#: Values that may be set members or turned into text as they are.
_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})

_REBUILD = frozenset(
    {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
     "_rebuild_parameter_with_state"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StorageRef:
    """A storage named by a persistent id: where its bytes are and how many elements it holds.

    Attributes:
        key: the storage's key (zip: ``data/<key>`` entry; legacy: its position in the tail).
        dtype: element dtype, or ``""`` for an untyped (byte) storage.
        numel: elements declared (bytes for untyped storages).
        location: device it was saved from (``"cpu"``, ``"cuda:0"``).
        view_offset: legacy storage views: element offset into the root storage.
    """

    key: str
    dtype: str
    numel: int
    location: str
    view_offset: int = 0

    @property
    def n_bytes(self) -> int:
        """Bytes the storage declares."""
        dt = lookup_dtype(self.dtype) if self.dtype else None
        return self.numel * (int(dt.bits) // 8 if dt else 1)


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A tensor as the checkpoint describes it, without its data."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    requires_grad: bool
    is_parameter: bool = False

    @property
    def key(self) -> str:
        """Identity of the data: equal keys are one tensor (tied weights)."""
        return f"{self.storage.key}@{self.offset}:{self.shape}:{self.stride}:{self.dtype}"


@dataclass(frozen=True, slots=True)
class ModuleClass:
    """A ``torch.nn.modules`` (or TorchScript ``__torch__``) class named by a pickle; never imported."""

    module: str
    name: str

    @property
    def scripted(self) -> bool:
        """Whether it is a TorchScript class, whose attributes are stored flat."""
        return self.module == "__torch__" or self.module.startswith("__torch__.")


class ModuleRecord:
    """A pickled ``torch.nn`` module as an inert record of its ``__dict__`` (set by ``BUILD``).

    Attributes:
        cls: the module's class.
        state: its attributes: ``_parameters``, ``_buffers``, ``_modules``, ...
    """

    __slots__ = ("cls", "state")

    def __init__(self, cls: ModuleClass) -> None:
        self.cls = cls
        self.state: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class _Dtype:
    name: str


@dataclass(frozen=True, slots=True)
class _Type:
    """A class allowed only as a marker argument (``torch.Tensor``, ``Parameter``)."""

    qualname: str


def brief(value: Any) -> str:
    """A short description of an untrusted value that never recurses into it."""
    if isinstance(value, (str, bytes)):
        return repr(value[:40])
    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)[:40]
    return f"a {type(value).__name__}"


def _name_of(marker: Any) -> str:
    if isinstance(marker, (Global, _Type)):
        return marker.qualname
    if isinstance(marker, ModuleClass):
        return f"{marker.module}.{marker.name}"
    if isinstance(marker, _Dtype):
        return f"the storage type {marker.name or 'UntypedStorage'}"
    return f"a {type(marker).__name__}"


def _ints(value: Any, what: str, offset: int, where: str) -> tuple[int, ...]:
    if isinstance(value, tuple) and all(type(v) is int for v in value):
        return value
    raise CorruptFileError(f"tensor {what} {brief(value)} at byte {offset} is not a tuple of ints", where=where)


class TorchPickleRules:
    """``resolve``/``reduce``/``build``/``persistent`` callbacks for :func:`scan_pickle`.

    Args:
        where: the file (and entry) for messages.

    Attributes:
        storages: every storage referenced, by key.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.storages: dict[str, StorageRef] = {}
        self.module_classes: set[str] = set()

    def resolve(self, module: str, name: str, offset: int) -> Any:
        """An inert marker for an allowed global; refuse any other."""
        if module == "torch._utils" and name in _REBUILD:
            return Global(module, name)
        if module == "torch._tensor" and name == "_rebuild_from_type_v2":
            return Global(module, name)
        if (module, name) == ("collections", "OrderedDict") or (module == "torch" and name in ("Size", "device")):
            return Global(module, name)
        if module == "torch" and name in STORAGE_DTYPES:
            return _Dtype(STORAGE_DTYPES[name])
        if module == "torch.storage" and name in ("UntypedStorage", "_UntypedStorage"):
            return _Dtype("")
        if module == "torch" and name in _TORCH_DTYPES:
            return _Dtype(canonical_dtype(name))
        if module == "torch" and name in _OTHER_DTYPES:
            return _Dtype(f"torch.{name}")
        if (module, name) in (("torch", "Tensor"), ("torch.nn.parameter", "Parameter")):
            return _Type(f"{module}.{name}")
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset"):
            return Global("builtins", name)
        scripted = module == "__torch__" or module.startswith("__torch__.")
        if (module.startswith("torch.nn.modules.") or scripted) and name.isidentifier():
            # torch.nn classes of a pickled model, or TorchScript classes (compiled code that is
            # never run here). Recorded, never imported: NEWOBJ makes a ModuleRecord, BUILD fills it.
            self.module_classes.add(f"{module}.{name}")
            return ModuleClass(module, name)
        if module == "torch.nn.functional" and name.isidentifier():
            return _Type(f"{module}.{name}")  # an activation stored by reference; never called
        raise self._refuse(module, name, offset)

    def _refuse(self, module: str, name: str, offset: int) -> UnsafeFileError:
        qual = f"{module}.{name}"
        if module.startswith("torch.nn.") or module == "__main__" or name.lstrip("_")[:1].isupper():
            hint = (
                "if this is a whole pickled model (torch.save(model)) with classes outside torch.nn, it "
                "needs its code to load; save a state dict instead: torch.save(model.state_dict(), path)"
            )
        elif module == "torch._utils" and name.startswith("_rebuild_"):
            hint = (
                "it rebuilds a kind of tensor paramscope does not read (quantized, sparse, nested or "
                "subclass tensors); paramscope reads dense tensors only"
            )
        else:
            hint = "a checkpoint of tensors never needs it; load it only if you trust its author"
        return UnsafeFileError(
            f"the pickle names {qual} at byte {offset}, which paramscope does not allow because "
            f"it could run code (nothing was run); {hint}",
            where=self.where,
        )

    def reduce(self, func: Any, args: tuple[Any, ...], offset: int) -> Any:
        """Rebuild an allowed call as a record; refuse any other."""
        if not isinstance(func, Global):
            what = _name_of(func)
            raise UnsafeFileError(
                f"the pickle calls {what} at byte {offset}, which paramscope does not allow "
                "(nothing was run)",
                where=self.where,
            )
        name = func.name
        if name == "OrderedDict":
            return {}
        if name in ("set", "frozenset"):
            # Sets of names (``_non_persistent_buffers_set``): members must be plain scalars, so
            # hashing them is cheap whatever shared references the pickle holds.
            if args and not (isinstance(args[0], (list, tuple)) and all(type(v) in _SCALARS for v in args[0])):
                raise self._bad(func, offset)
            return frozenset(args[0]) if args else frozenset()
        if name == "Size":
            return _ints(args[0] if args else (), "size", offset, self.where)
        if name == "device":
            # torch.device("cuda", 0): only strings and ints are turned into text, so a shared
            # nested value can never be expanded by str().
            if len(args) > 2 or not all(type(a) in (str, int) for a in args):
                raise self._bad(func, offset)
            return ":".join(str(a) for a in args)
        if name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_tensor"):
            return self._tensor(name, args, offset)
        if name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            if len(args) < 2 or not isinstance(args[0], TensorRef):
                raise self._bad(func, offset)
            t = args[0]
            return TensorRef(t.storage, t.offset, t.shape, t.stride, t.dtype, bool(args[1]), True)
        if name == "_rebuild_from_type_v2":
            # (func, new_type, args, state): a tensor subclass or a tensor with attributes.
            if len(args) < 3 or not isinstance(args[0], Global) or not isinstance(args[2], tuple):
                raise self._bad(func, offset)
            inner = self.reduce(args[0], args[2], offset)
            if isinstance(inner, TensorRef) and isinstance(args[1], _Type) and args[1].qualname.endswith(
                "Parameter"
            ):
                return TensorRef(inner.storage, inner.offset, inner.shape, inner.stride, inner.dtype,
                                 inner.requires_grad, True)  # fmt: skip
            return inner
        raise self._bad(func, offset)

    def _bad(self, func: Global, offset: int) -> CorruptFileError:
        return CorruptFileError(f"{func.qualname} at byte {offset} has arguments torch never writes", where=self.where)

    def _tensor(self, name: str, args: tuple[Any, ...], offset: int) -> TensorRef:
        if len(args) < 4 or not isinstance(args[0], StorageRef) or type(args[1]) is not int:
            raise CorruptFileError(f"torch._utils.{name} at byte {offset} has malformed arguments", where=self.where)
        storage: StorageRef = args[0]
        shape = _ints(args[2], "size", offset, self.where)
        stride = _ints(args[3], "stride", offset, self.where)
        requires_grad = bool(args[4]) if len(args) > 4 else False
        dtype = storage.dtype
        if name == "_rebuild_tensor_v3":
            if len(args) < 7 or not isinstance(args[6], _Dtype) or not args[6].name:
                raise CorruptFileError(f"torch._utils.{name} at byte {offset} has no dtype", where=self.where)
            dtype = args[6].name
        if not dtype:
            raise CorruptFileError(f"a tensor at byte {offset} on an untyped storage has no dtype", where=self.where)
        if dtype.startswith("torch."):
            raise UnsupportedFormatError(
                f"a tensor at byte {offset} has dtype {dtype}, whose storage size paramscope does not know",
                where=self.where,
            )
        if len(shape) != len(stride) or any(d < 0 for d in shape) or any(s < 0 for s in stride):
            raise CorruptFileError(
                f"tensor at byte {offset} has size {shape} and stride {stride}, which do not fit together",
                where=self.where,
            )
        tensor = TensorRef(storage, args[1] + storage.view_offset, shape, stride, dtype, requires_grad)
        self._check_extent(tensor, offset)
        return tensor

    def _check_extent(self, t: TensorRef, offset: int) -> None:
        dt = lookup_dtype(t.dtype)
        if dt is None:
            raise CorruptFileError(f"unknown dtype {t.dtype} at byte {offset}", where=self.where)
        itemsize = max(1, int(dt.bits) // 8)
        if any(d == 0 for d in t.shape):
            return
        last = t.offset + sum((d - 1) * s for d, s in zip(t.shape, t.stride))
        available = t.storage.n_bytes // itemsize
        if t.offset < 0 or last >= available:
            raise CorruptFileError(
                f"a tensor at byte {offset} of size {t.shape} reaches element {last} of storage "
                f"{t.storage.key!r}, which holds {available} {t.dtype} elements",
                where=self.where,
            )

    def newobj(self, cls: Any, args: tuple[Any, ...], offset: int) -> Any:
        """``cls.__new__(cls)`` for a ``torch.nn`` module class: an empty record; refuse others."""
        if isinstance(cls, ModuleClass) and not args:
            return ModuleRecord(cls)
        what = _name_of(cls)
        raise UnsafeFileError(
            f"the pickle creates an object of {what} (NEWOBJ) at byte {offset}, which paramscope does "
            "not allow (nothing was run)",
            where=self.where,
        )

    def build(self, obj: Any, state: Any, offset: int) -> Any:
        """``BUILD`` sets attributes: recorded on a module record, dropped on a dict or tensor."""
        if isinstance(obj, ModuleRecord) and isinstance(state, dict):
            obj.state.update((k, v) for k, v in state.items() if isinstance(k, str))
            return obj
        if isinstance(obj, (dict, TensorRef)):
            return obj
        raise UnsafeFileError(
            f"the pickle sets the state of a {type(obj).__name__} at byte {offset}, which "
            "paramscope does not allow (nothing was run)",
            where=self.where,
        )

    def persistent(self, pid: Any, offset: int) -> Any:
        """A storage reference: ``('storage', type, key, location, numel[, view])``."""
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module" and isinstance(pid[1], ModuleClass):
            # Legacy files name module classes by ('module', class, source file, source text).
            return pid[1]
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CorruptFileError(f"persistent id {brief(pid)} at byte {offset} is not a storage", where=self.where)
        kind, key, location, numel = pid[1], pid[2], pid[3], pid[4]
        if (not isinstance(kind, _Dtype) or not isinstance(key, str) or type(numel) is not int or numel < 0
                or type(location) is not str):  # fmt: skip
            raise CorruptFileError(f"storage reference {brief(pid)} at byte {offset} is malformed", where=self.where)
        view = pid[5] if len(pid) > 5 else None
        prev = self.storages.get(key)
        if prev is not None and (prev.dtype, prev.numel) != (kind.name, numel):
            raise CorruptFileError(
                f"storage {key!r} is declared twice with different sizes (byte {offset})", where=self.where
            )
        ref = StorageRef(key, kind.name, numel, str(location))
        self.storages.setdefault(key, ref)
        if view is not None:
            # Legacy views: (view_key, element offset, view size) into the root storage.
            if not (isinstance(view, tuple) and len(view) == 3 and all(type(v) is int for v in view[1:])):
                raise CorruptFileError(f"storage view {brief(view)} at byte {offset} is malformed", where=self.where)
            if view[1] < 0 or view[1] + view[2] > numel:
                raise CorruptFileError(f"storage view at byte {offset} lies outside storage {key!r}", where=self.where)
            return StorageRef(key, kind.name, view[1] + view[2], str(location), view[1])
        return ref
