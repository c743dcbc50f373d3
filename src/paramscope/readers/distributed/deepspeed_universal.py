"""DeepSpeed universal checkpoints (what ``ds_to_universal`` writes), read from their pickles without loading a weight.

``python -m deepspeed.checkpoint.ds_to_universal --input_folder ckpt/global_stepN --output_folder
ckpt/global_stepN_universal`` (``deepspeed/checkpoint/ds_to_universal.py``) merges a ZeRO
checkpoint's per-rank partitions into one folder that loads at any world size:

- the model states file(s) copied unchanged (``mp_rank_00_model_states.pt`` from ZeRO 1/2,
  one ``zero_pp_rank_<dp>_mp_rank_00_model_states.pt`` per rank from ZeRO 3), with
  ``param_shapes``, ``frozen_param_shapes``, ``buffer_names``, ``shared_params``, ``ds_config``,
  ``ds_version`` and, when the model declared it, ``universal_checkpoint_info``;
- ``zero/<parameter name>/fp32.pt``, ``exp_avg.pt``, ``exp_avg_sq.pt`` and (ZeRO 1/2) ``step.pt``:
  one ``torch.save`` file per optimizer state of each parameter, holding the whole merged
  tensor. From ZeRO 1/2 it is a dict (``param`` plus ``cat_dim``, ``vocab_tensor``... as the
  tensor-parallel merge recorded) shaped like the parameter; from ZeRO 3 (no tensor
  parallelism) it is the bare tensor, flat. At ZeRO 1/2 every tensor of the stored module also
  gets an ``fp32.pt`` (frozen parameters, buffers, tied aliases); at ZeRO 3 frozen parameters
  get none;
- ``zero/optimizer_state.pt``: the optimizer's settings (``param_groups``, ``zero_stage``,
  ``partition_count``); from ZeRO 3 it is rank 0's whole optimizer state, flat partitions included;
- ``latest_universal`` beside the folder, naming it.

The model is the ``zero/`` folders, each checked against the model states: trainable
parameters against ``param_shapes``, frozen ones against ``frozen_param_shapes`` (or, at ZeRO 1,
which records none, the stored module), buffers against the module. The ``zero/`` files are
counted as optimizer extras; their pickles are read, never their tensor data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.dtypes import n_bytes
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.files import folder_member, is_inside, open_regular
from paramscope.core.limits import MAX_TENSORS, check
from paramscope.core.tree import FlatTensor
from paramscope.readers.distributed.deepspeed_folder import (
    MAX_LATEST, MODEL_FILE, DeepSpeedPickleRules, as_int, config_dtype, dtype_of, known, list_names, plain_name, shapes_of,
)
from paramscope.readers.distributed.layout import RankLayout, RankShare, RankSlice, fsdp_projection
from paramscope.readers.distributed.records import MALFORMED
from paramscope.readers.distributed.torch_file import load_torch_file, tensors_in
from paramscope.readers.torch.tensor_pickle import TensorRef
from paramscope.rules.names import anatomy_from_flat

__all__ = ["can_read", "read", "rank_layout"]

_LATEST = "latest_universal"
#: The files ``ds_to_universal`` writes per parameter, in the order they are listed.
_STATES = ("fp32", "exp_avg", "exp_avg_sq", "step")
_WHY = {
    "fp32": "the float32 copy of the tensor written by ds_to_universal (a trained parameter's master weights); not part of the model",
    "exp_avg": "Adam's first moment of this parameter, merged over the ranks",
    "exp_avg_sq": "Adam's second moment of this parameter, merged over the ranks",
    "step": "the optimizer's step count",
}


def _is_universal(folder: Path) -> bool:
    return os.path.isdir(folder / "zero") and any(MODEL_FILE.match(n) for n in list_names(folder))


def can_read(source: Any) -> bool:
    """Whether ``source`` is a universal checkpoint folder, or the folder whose ``latest_universal`` names one.

    Example:
        >>> can_read("no-such-folder")
        False
    """
    if not isinstance(source, (str, os.PathLike)) or not os.path.isdir(source):
        return False
    return os.path.isfile(Path(source) / _LATEST) or _is_universal(Path(source))


def _folder(source: Any) -> Path:
    """The universal folder: ``source`` itself, or ``source/<tag from latest_universal>``."""
    root = Path(source)
    if _is_universal(root) or not os.path.lexists(root / _LATEST):
        return root
    # A link out of the folder is refused before reading: the tag is echoed in messages. A FIFO must not block.
    with open_regular(folder_member(root, _LATEST)) as fh:
        raw = fh.read(MAX_LATEST + 1)
    try:
        tag = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CorruptFileError("latest_universal is not UTF-8 text", where=str(root)) from None
    if len(raw) > MAX_LATEST or not tag:
        raise CorruptFileError(f"latest_universal holds {len(raw)} bytes, not a folder name", where=str(root))
    if not plain_name(tag):
        raise UnsafeFileError(f"latest_universal names {tag!r}, which is not a folder inside the checkpoint folder; refusing it", where=str(root))
    if not is_inside(os.path.realpath(root), os.path.realpath(root / tag)):
        raise UnsafeFileError(f"{tag} is a link out of the checkpoint folder; refusing it", where=str(root))
    if not os.path.isdir(root / tag):
        raise CorruptFileError(f"latest_universal names {tag!r}, which is not a folder here", where=str(root))
    return root / tag


@dataclass
class _Param:
    """One ``zero/<name>/`` folder: its tensors by state, and the bytes of its files."""

    name: str
    states: dict[str, TensorRef]
    stored_bytes: int


@dataclass
class _Universal:
    folder: Path
    model_file: str
    model: dict[str, Any]
    model_files: list[str]
    trainable: list[tuple[str, tuple[int, ...]]]
    frozen: list[tuple[str, tuple[int, ...]]] | None  # None: the model states record no frozen_param_shapes (ZeRO 1)
    params: dict[str, _Param]
    optimizer: dict[str, Any] = field(default_factory=dict)
    stored_bytes: int = 0


def _load(source: Any) -> _Universal:
    folder = _folder(source)
    where = str(folder)
    # One model states file per model-parallel rank (at ZeRO 3 the data-parallel copies agree; rank 0's is read).
    model_files = [n for n in list_names(folder) if (m := MODEL_FILE.match(n)) and m.group(1) in (None, "0")]
    if not model_files:
        raise CorruptFileError("no mp_rank model states file: not a DeepSpeed universal checkpoint", where=where)
    states = []
    for name in model_files:
        value = load_torch_file(folder_member(folder, name, what="model states file"), DeepSpeedPickleRules(str(folder / name)))
        if not isinstance(value, dict) or "param_shapes" not in value:
            raise CorruptFileError("the model states file has no param_shapes: not a ZeRO checkpoint", where=str(folder / name))
        states.append(value)
    trainable = _union(states, model_files, "param_shapes", folder)
    has_frozen = any(isinstance(s.get("frozen_param_shapes"), dict) for s in states)
    frozen = _union(states, model_files, "frozen_param_shapes", folder) if has_frozen else None
    zero = folder / "zero"
    if not is_inside(os.path.realpath(folder), os.path.realpath(zero)):
        raise UnsafeFileError("zero is a link out of the checkpoint folder; refusing it", where=where)
    if not os.path.isdir(zero):
        raise CorruptFileError("no zero/ folder: not a DeepSpeed universal checkpoint", where=where)
    out = _Universal(folder, model_files[0], states[0], model_files, trainable, frozen, {})
    out.stored_bytes = sum(os.path.getsize(folder / n) for n in model_files)
    for name in _entries(zero):
        rel = f"zero/{name}"
        if os.path.isdir(zero / name):  # one tensor's folder
            out.params[name] = _param(folder, name)
            out.stored_bytes += out.params[name].stored_bytes
            continue
        folder_member(folder, rel, what="entry", must_exist=False)  # a link out or a FIFO is refused, even unread
        if name == "optimizer_state.pt":  # any other file is not DeepSpeed's, and is left alone
            out.optimizer = _optimizer(folder, rel)
            out.stored_bytes += os.path.getsize(folder / rel)
    return out


def _union(states: list[dict[str, Any]], files: list[str], key: str, folder: Path) -> list[tuple[str, tuple[int, ...]]]:
    """``key``'s names and shapes over the model states files, each name once, first file first.

    Pipeline stages name different parameters (and replicate tied ones); tensor-parallel ranks
    name the same ones with their shard shapes."""
    out: dict[str, tuple[int, ...]] = {}
    for value, name in zip(states, files):
        groups = value.get(key)
        for group in shapes_of(groups, str(folder / name)) if groups is not None else ():
            for param, shape in group:
                out.setdefault(param, shape)
    return list(out.items())


def _entries(zero: Path) -> list[str]:
    """The names in ``zero/``, at most :data:`~paramscope.core.limits.MAX_TENSORS` of them (one per parameter)."""
    names = []
    with os.scandir(zero) as it:
        for entry in it:
            names.append(entry.name)
            check("entries in zero/", len(names), MAX_TENSORS, "MAX_TENSORS", where=str(zero))
    return sorted(names)


def _optimizer(folder: Path, rel: str) -> dict[str, Any]:
    value = load_torch_file(folder_member(folder, rel, what="optimizer state file"), DeepSpeedPickleRules(str(folder / rel)))
    if not isinstance(value, dict):
        raise CorruptFileError("optimizer_state.pt does not hold a dict", where=str(folder / rel))
    return value


def _param(folder: Path, name: str) -> _Param:
    """``zero/<name>/``: its state files, each a merged tensor (``step`` may be a number)."""
    base = folder / "zero" / name
    if not is_inside(os.path.realpath(folder), os.path.realpath(base)):
        raise UnsafeFileError(f"zero/{name} is a link out of the checkpoint folder; refusing it", where=str(folder))
    if not os.path.lexists(base / "fp32.pt"):
        raise CorruptFileError(f"zero/{name} has no fp32.pt: the parameter's value is missing", where=str(folder))
    states: dict[str, TensorRef] = {}
    stored = 0
    for state in _STATES:
        rel = f"zero/{name}/{state}.pt"
        if not os.path.lexists(folder / rel):
            continue
        path = folder_member(folder, rel, what="parameter state file")
        value = load_torch_file(path, DeepSpeedPickleRules(str(path)))
        stored += os.path.getsize(path)
        tensor = value.get("param") if isinstance(value, dict) else value
        if isinstance(tensor, TensorRef):
            states[state] = tensor
        elif not (state == "step" and type(tensor) in (int, float)):
            raise CorruptFileError(f"{state}.pt holds no tensor (neither a tensor nor a dict with 'param')", where=str(path))
    fp32 = states["fp32"]
    for state, t in states.items():
        if state != "step" and prod(t.shape) != prod(fp32.shape):
            raise CorruptFileError(f"zero/{name}/{state}.pt holds {prod(t.shape)} elements but fp32.pt {prod(fp32.shape)}", where=str(folder))
    return _Param(name, states, stored)


def _agree(u: _Universal, p: _Param, shape: tuple[int, ...], what: str, exact: bool) -> tuple[int, ...]:
    """The parameter's global shape: ``fp32.pt``'s, checked against ``shape`` from ``what``.

    ZeRO 3 writes the tensor flat, so a 1-d tensor of the same count takes ``shape``. With
    tensor parallelism the model states hold one rank's shard shape: the merged tensor is kept."""
    got = p.states["fp32"].shape
    if got == shape or not exact:
        return got
    if len(got) == 1 and got[0] == prod(shape):
        return shape
    raise CorruptFileError(f"zero/{p.name}/fp32.pt holds a tensor of shape {list(got)}, but {what} in {u.model_file} says {list(shape)}",
                           where=str(u.folder))  # fmt: skip


def _model(u: _Universal) -> tuple[list[FlatTensor], dict[str, str], list[str]]:
    """The global model (parameters, frozen parameters, buffers), the ties, and notes on what was found where."""
    where = str(u.folder / u.model_file)
    dims = u.model.get("checkpoint_parallel_dimensions")
    tp = str(dims.get("tp_degree", "1")) if isinstance(dims, dict) else str(u.model.get("mp_world_size", 1))
    exact = tp == "1"
    dtype = config_dtype(u.model.get("ds_config"))
    found = u.model.get("module")
    module: dict[str, Any] = found if isinstance(found, dict) else {}
    shared = u.model.get("shared_params")
    tied = {k: v for k, v in shared.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(shared, dict) else {}
    flat: list[FlatTensor] = []
    seen: set[str] = set()
    notes: list[str] = []

    def add(name: str, shape: tuple[int, ...], role: Role, what: str) -> None:
        p = u.params.get(name)
        if name in seen:
            raise CorruptFileError(f"{name} is named by more than one of param_shapes, frozen_param_shapes and buffer_names", where=where)
        seen.add(name)
        if p is not None:
            shape = _agree(u, p, shape, what, exact)
        elif role is Role.TRAINABLE:
            raise CorruptFileError(f"param_shapes names {name}, but zero/ has no folder for it", where=str(u.folder))
        flat.append(FlatTensor(name, shape, dtype_of(module, name, dtype), "", role, role is not Role.BUFFER))

    for name, shape in u.trainable:
        add(name, shape, Role.TRAINABLE, "param_shapes")
    if u.frozen is not None:
        for name, shape in u.frozen:
            add(name, shape, Role.FROZEN, "frozen_param_shapes")
        missing = [n for n, _ in u.frozen if n not in u.params]
        if missing:
            notes.append(f"{len(missing)} frozen parameters have no zero/ folder (ds_to_universal writes none for them "
                         "from ZeRO 3): their shapes come from frozen_param_shapes.")  # fmt: skip
    buffers = u.model.get("buffer_names")
    for name in buffers if isinstance(buffers, list) else []:
        t = module.get(name)
        if isinstance(name, str) and isinstance(t, TensorRef):
            add(name, t.shape, Role.BUFFER, "the stored module")
    # ZeRO 1/2 write a tied alias its own zero/ folder (a copy): it is shown, sharing its target's storage key.
    named = {t.name: t for t in flat}
    for alias, target in tied.items():
        t = named.get(target)
        if alias in u.params and alias not in seen and t is not None:
            add(alias, known(t.shape), t.role or Role.TRAINABLE, f"shared_params (tied to {target})")
    recovered = 0
    for name in u.params:
        if name in seen or name in tied:
            continue
        t = module.get(name)
        # ZeRO 1 records no frozen_param_shapes; ds_to_universal still writes an fp32.pt for every tensor of the module.
        if u.frozen is None and isinstance(t, TensorRef):
            add(name, t.shape, Role.FROZEN, "the stored module")
            recovered += 1
        else:
            raise CorruptFileError(f"zero/{name} is no parameter, frozen parameter or buffer the model states name", where=str(u.folder))
    if recovered:
        notes.append(f"ZeRO stage 1 records no frozen_param_shapes: {recovered} frozen parameters are the module's "
                     f"tensors that no list names, as stored in {u.model_file}.")  # fmt: skip
    return flat, tied, notes


def _extras(u: _Universal, order: list[str]) -> tuple[TensorGroup, ...]:
    tensors = [Tensor(f"{name}.{state}", t.shape, t.dtype, Role.BUFFER, False, "", None, _WHY[state])
               for name in order if name in u.params for state, t in u.params[name].states.items()]  # fmt: skip
    tensors += [Tensor(f"optimizer_state.{name}", t.shape, t.dtype, Role.BUFFER, False, "", None,
                       "rank 0's flat partition, copied into zero/optimizer_state.pt from the ZeRO 3 optimizer file")
                for name, t in _optimizer_tensors(u.optimizer)]  # fmt: skip
    note = "per-parameter optimizer state merged by ds_to_universal, one set per parameter"
    return (TensorGroup("optimizer", tuple(tensors), note=note),) if tensors else ()


def _optimizer_tensors(optimizer: dict[str, Any]) -> Iterator[tuple[str, TensorRef]]:
    for key in ("fp32_flat_groups", "optimizer_state_dict", "base_optimizer_state", "single_partition_of_fp32_groups"):
        yield from tensors_in(optimizer.get(key), key)


def _safe_load(source: Any) -> tuple[_Universal, list[FlatTensor], dict[str, str], list[str]]:
    """The folder and its model; a malformed pickle value (a list where a name goes) is a CorruptFileError."""
    try:
        u = _load(source)
        return (u, *_model(u))
    except OSError as e:  # a folder that cannot be listed, a file gone while reading
        raise CorruptFileError(f"cannot read the DeepSpeed universal checkpoint ({e.strerror or e})", where=os.fspath(source)) from None
    except MALFORMED as e:
        raise CorruptFileError(f"malformed DeepSpeed universal checkpoint ({type(e).__name__}: {str(e)[:200]})", where=os.fspath(source)) from None


def _facts(u: _Universal) -> dict[str, str]:
    meta = {"format": "DeepSpeed universal checkpoint", "tag": u.folder.name, "ds_version": str(u.model.get("ds_version", "?"))}
    stage = u.optimizer.get("zero_stage")
    if stage is not None:
        meta["saved_zero_stage"] = str(as_int(stage, "zero_stage", u.folder / "zero" / "optimizer_state.pt"))
    for key in ("dp_world_size", "mp_world_size", "global_steps"):
        if type(u.model.get(key)) is int:
            meta[f"saved_{key}" if key.endswith("world_size") else key] = str(u.model[key])
    dims = u.model.get("checkpoint_parallel_dimensions")
    for key, value in (dims.items() if isinstance(dims, dict) else ()):
        if isinstance(key, str) and isinstance(value, (int, str)):
            meta[f"saved_{key}"] = str(value)[:40]
    info = u.model.get("universal_checkpoint_info")
    for key, value in (info.items() if isinstance(info, dict) else ()):
        if isinstance(key, str) and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            meta[key] = str(value)[:80]
        elif isinstance(key, str) and isinstance(value, list):
            meta[key] = f"{len(value)} patterns"
    return meta


def read(source: Any, **options: Any) -> Anatomy:
    """Read a DeepSpeed universal checkpoint's global model; the ``zero/`` state files counted as optimizer extras.

    Example:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> can_read(folder.name)  # an empty folder is no such checkpoint (tests convert real ones)
        False
        >>> folder.cleanup()
    """
    u, flat, tied, notes = _safe_load(source)
    meta = _facts(u)
    notes = [
        f"A universal checkpoint from ds_to_universal: one zero/<name>/ folder per tensor, holding the whole merged tensor "
        f"and its optimizer state, checked against param_shapes of {u.model_file}. Dtypes from the stored module where it "
        "holds the parameter, else from ds_config; no weight was loaded.",
        *notes,
    ]
    anatomy = anatomy_from_flat(flat, name=u.folder.name, framework="deepspeed", source=str(u.folder), metadata=meta,
                                notes=notes, tied=tied, tie_reason="DeepSpeed's shared_params")  # fmt: skip
    return anatomy.with_(extras=_extras(u, [t.name for t in flat]), metadata=MappingProxyType(dict(anatomy.metadata)))


def rank_layout(source: Any, world_sizes: Iterable[int] = ()) -> RankLayout:
    """The folder as one share: a universal checkpoint is not split by rank, so one share holds
    every tensor whole, with the FSDP2 projection at ``world_sizes``."""
    u, flat, _, _ = _safe_load(source)
    model = [(t.name, known(t.shape), t.dtype) for t in flat if t.is_param]
    slices = [RankSlice(name, tuple(0 for _ in shape), shape, dt) for name, shape, dt in model]
    slices += [RankSlice(t.name, tuple(0 for _ in known(t.shape)), known(t.shape), t.dtype, True)
               for g in _extras(u, [t.name for t in flat]) for t in g.tensors]  # fmt: skip
    files = (*u.model_files, f"zero/ ({len(u.params)} tensor folders)")
    share = RankShare(None, files, tuple(slices), u.stored_bytes)
    total = sum(n_bytes(s.dtype, s.count) or 0 for s in slices)
    facts = (("ranks", "none: every tensor is stored whole"), ("tag", u.folder.name))
    return RankLayout(str(u.folder), "deepspeed universal", (share,), total,
                      tuple(fsdp_projection(model, n) for n in world_sizes), facts)  # fmt: skip
