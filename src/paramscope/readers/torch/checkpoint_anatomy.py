"""From the value a checkpoint's pickle builds to an anatomy.

A state dict's tensors become layers by their dotted names; a training checkpoint's model entry
is the anatomy, its optimizer state the ``optimizer`` extras group, its scalars metadata; a
whole pickled model or TorchScript archive becomes layers from its module records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.tree import FlatTensor
from paramscope.readers.torch.module_records import Declarations, module_layers
from paramscope.readers.torch.tensor_pickle import ModuleRecord, StorageRef, TensorRef, brief
from paramscope.rules.names import anatomy_from_flat

__all__ = ["checkpoint_anatomy", "shard_tensors"]

_MODEL_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_state")
_MAX_DEPTH = 64
_MAX_METADATA = 200
_MAX_SHARED_NOTES = 20
_DEPTH_WHY = (
    ", paramscope's limit for a checkpoint (a training checkpoint nests a few levels: "
    "optimizer -> state -> parameter -> tensor); refused"
)


def _walk(value: Any, prefix: str, depth: int, where: str, seen: set[int] | None = None) -> Iterator[tuple[str, Any]]:
    """(dotted name, leaf) for every leaf of nested dicts, lists and tuples.

    A container reached a second time (a shared reference, or one that holds itself) is not
    walked again: its leaves were listed under the first name. So the walk is linear in the
    pickle's objects even when its references form a DAG of 2**40 paths.
    """
    if depth > _MAX_DEPTH:
        raise UnsafeFileError(f"values nested deeper than {_MAX_DEPTH} levels at {prefix[:120]!r}{_DEPTH_WHY}", where=where)
    seen = set() if seen is None else seen
    if isinstance(value, (list, tuple)) and not any(isinstance(v, (dict, list, tuple, TensorRef)) for v in value):
        yield prefix, value  # a list of plain values (betas, parameter ids) is one fact
    elif isinstance(value, (dict, list, tuple)):
        if id(value) in seen:
            return
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            label = k if isinstance(k, (str, int)) else brief(k)
            name = f"{prefix}.{label}" if prefix else str(label)
            yield from _walk(v, name, depth + 1, where, seen)
    else:
        yield prefix, value


class _TensorFinder:
    """Whether a value holds a tensor, each container answered once: asking about every
    top-level entry costs one pass over the pickle's objects, however they share references."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.known: dict[int, bool] = {}

    def __call__(self, value: Any, depth: int = 0) -> bool:
        if isinstance(value, TensorRef):
            return True
        if not isinstance(value, (dict, list, tuple)):
            return False
        if id(value) in self.known:
            return self.known[id(value)]
        if depth > _MAX_DEPTH:
            raise UnsafeFileError(f"values nested deeper than {_MAX_DEPTH} levels{_DEPTH_WHY}", where=self.where)
        self.known[id(value)] = False  # a container that holds itself adds nothing of its own
        items = value.values() if isinstance(value, dict) else value
        found = any(self(v, depth + 1) for v in items)
        self.known[id(value)] = found
        return found


def _split(value: Any, where: str) -> tuple[Any, str, dict[str, Any]]:
    """(the model's tensors, under what key, every other top-level entry)."""
    _has_tensor = _TensorFinder(where)
    if not isinstance(value, dict):
        return value, "", {}
    for key in _MODEL_KEYS:
        if isinstance(value.get(key), ModuleRecord):
            return value[key], key, {k: v for k, v in value.items() if k != key}
    if all(isinstance(v, TensorRef) for v in value.values()):
        return value, "", {}
    for key in _MODEL_KEYS:
        inner = value.get(key)
        if isinstance(inner, dict) and _has_tensor(inner):
            return inner, key, {k: v for k, v in value.items() if k != key}
    model = {k: v for k, v in value.items() if not _is_optimizer(k) and _has_tensor(v)}
    rest = {k: v for k, v in value.items() if k not in model}
    return model, "", rest


def _is_optimizer(key: Any) -> bool:
    return isinstance(key, str) and ("optim" in key.lower() or key in ("lr_schedulers", "scaler", "amp"))


def _ref_tensor(name: str, t: TensorRef, why: str) -> Tensor:
    return Tensor(name, t.shape, t.dtype, Role.BUFFER, False, t.key, None, why)


def checkpoint_anatomy(path: Path, value: Any, storages: dict[str, StorageRef], meta: dict[str, str],
                       notes: list[str], decls: Declarations) -> Anatomy:  # fmt: skip
    """The anatomy of a checkpoint from its unpickled value.

    Args:
        path: the file.
        value: what the data pickle built (dicts, lists, tensor and module records).
        storages: the storages it references, by key.
        meta: metadata gathered so far (format, byte order); scalars are added to it.
        notes: notes gathered so far; more are added.
        decls: TorchScript declarations (empty for other files).

    Returns:
        The anatomy, with optimizer state and other tensors in ``extras``.
    """
    where = str(path)
    model, model_key, rest = _split(value, where)
    if isinstance(model, ModuleRecord):
        return _module_anatomy(path, model, rest, storages, meta, notes, decls)
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
        elif _plain(leaf) and len(meta) < _MAX_METADATA:
            meta[f"{model_key + '.' if model_key else ''}{name}"] = _short(leaf)
    if model_key:
        notes.append(f"Model tensors are read from the checkpoint's {model_key!r} entry.")
    if flat and not any(ft.role is not None for ft in flat):
        notes.append(
            "A state dict does not say which tensors are parameters and which are buffers; "
            "roles come from the tensor names."
        )
    extras = _extras(rest, meta, where)
    _view_notes(refs, notes)
    _storage_meta(storages, meta)
    anatomy = anatomy_from_flat(flat, name=path.name, framework="torch", source=where, metadata=meta, notes=notes)
    return anatomy.with_(extras=tuple(extras), metadata=MappingProxyType(dict(anatomy.metadata)))


def _module_anatomy(
    path: Path, model: ModuleRecord, rest: dict[str, Any], storages: dict[str, StorageRef],
    meta: dict[str, str], notes: list[str], decls: Declarations,
) -> Anatomy:  # fmt: skip
    where = str(path)
    shared: list[tuple[str, str]] = []
    layers = module_layers(model, where, decls, shared)
    for second, first in shared[:_MAX_SHARED_NOTES]:
        notes.append(
            f"{second} is the same module object as {first}; it is listed once, under {first}, "
            "as torch's named_modules() lists it."
        )
    if len(shared) > _MAX_SHARED_NOTES:
        notes.append(f"{len(shared) - _MAX_SHARED_NOTES} more modules are shared the same way.")
    classes = sorted({la.type for top in layers for la in top.walk()} | {model.cls.name})
    if model.cls.scripted:
        notes.append(
            f"The file is a TorchScript archive (torch.jit.save) of {', '.join(classes[:12])}; paramscope read "
            "its modules as records and took parameters and buffers from the declarations in its code, "
            "which it never runs."
        )
    else:
        notes.append(
            f"The file is a whole pickled model (torch.save(model)) of torch.nn classes ({', '.join(classes[:12])}); "
            "paramscope read its modules as records without importing or calling anything. torch.load needs "
            "weights_only=False for it, which runs code from the file: prefer saving model.state_dict()."
        )
    owners: dict[str, list[str]] = {}
    for la in layers:
        for sub in la.walk():
            for t in sub.tensors:
                owners.setdefault(t.key, []).append(f"{sub.path}.{t.name}")
    for group in owners.values():
        if len(group) > 1:
            notes.append(f"{' and '.join(group)} are one tensor (tied), counted once.")
    extras = _extras(rest, meta, where)
    _storage_meta(storages, meta)
    meta["model_class"] = f"{model.cls.module}.{model.cls.name}"
    return Anatomy(name=path.name, framework="torch", layers=layers, source=where, extras=tuple(extras),
                   metadata=MappingProxyType(meta), notes=tuple(notes))  # fmt: skip


def shard_tensors(value: Any, where: str) -> list[tuple[str, TensorRef]]:
    """The named tensors of one shard of a sharded checkpoint (``pytorch_model-00001-of-00002.bin``).

    Args:
        value: what the shard's data pickle built; a state dict.
        where: the shard, for messages.

    Raises:
        CorruptFileError: the shard is a whole pickled model, not a state dict.

    Example:
        >>> shard_tensors({}, "shard.bin")
        []
    """
    model, _, _ = _split(value, where)
    if isinstance(model, ModuleRecord) or not isinstance(model, dict):
        raise CorruptFileError("a shard of a checkpoint folder must hold a state dict (tensor name -> tensor)", where=where)
    return [(name, leaf) for name, leaf in _walk(model, "", 0, where) if isinstance(leaf, TensorRef)]


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bytes, bytearray, list, tuple, frozenset, set))


def _storage_meta(storages: dict[str, StorageRef], meta: dict[str, str]) -> None:
    meta["storages"] = str(len(storages))
    meta["storage_bytes"] = str(sum(s.n_bytes for s in storages.values()))
    devices = sorted({s.location for s in storages.values()})
    if devices:
        meta["devices"] = ", ".join(devices)


def _extras(rest: dict[Any, Any], meta: dict[str, str], where: str) -> list[TensorGroup]:
    extras: list[TensorGroup] = []
    # One visited set per pass, shared by every entry: a container two entries share is walked once.
    seen_tensors: set[int] = set()
    seen_values: set[int] = set()
    for key, entry in rest.items():
        label = key if isinstance(key, (str, int)) else brief(key)
        tensors = [
            _ref_tensor(name, leaf, _why_extra(key, name))
            for name, leaf in _walk(entry, "", 0, where, seen_tensors)
            if isinstance(leaf, TensorRef)
        ]
        if tensors:
            group = "optimizer" if _is_optimizer(key) else str(label)
            extras.append(TensorGroup(group, tuple(tensors), note=f"from the checkpoint's {label!r} entry"))
        for name, leaf in _walk(entry, str(label), 0, where, seen_values):
            if _plain(leaf) and len(meta) < _MAX_METADATA:
                meta[name] = _short(leaf)
    return extras


def _why_extra(key: Any, name: str) -> str:
    if not _is_optimizer(key):
        label = key if isinstance(key, (str, int)) else brief(key)
        return f"stored in the checkpoint's {label!r} entry, not part of the model"
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
    text = _bounded_text(value, 121)
    return text if len(text) <= 120 else text[:117] + "..."


def _bounded_text(value: Any, limit: int) -> str:
    """``str(value)`` cut at about ``limit`` characters, built without ever writing more: values
    from a pickle may share references so that their full text would be astronomically long."""
    out: list[str] = []
    left = limit

    def put(text: str) -> None:
        nonlocal left
        out.append(text[: max(left, 0)])
        left -= len(text)

    def emit(v: Any, depth: int) -> None:
        if left <= 0:
            return
        if isinstance(v, (list, tuple, set, frozenset)) and depth < 8:
            brackets = {list: "[]", tuple: "()"}.get(type(v), "{}")
            put(brackets[0])
            for i, item in enumerate(v):
                if left <= 0:
                    return
                if i:
                    put(", ")
                emit(item, depth + 1)
            put(brackets[1])
        elif isinstance(v, (list, tuple, set, frozenset, dict)):
            put("...")
        elif isinstance(v, (bytes, bytearray)):
            put(repr(v[:limit]))
        elif isinstance(v, str):
            put(v[:limit])
        else:
            put(brief(v) if not isinstance(v, (int, float, bool)) and v is not None else str(v)[:limit])

    emit(value, 0)
    return "".join(out)
