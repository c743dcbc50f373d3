"""DeepSpeed ZeRO checkpoint folders, read from their pickles without loading a weight.

``engine.save_checkpoint(dir)`` writes ``dir/latest`` (the tag, e.g. ``global_step14``) and
``dir/<tag>/`` holding (``deepspeed/runtime/engine.py``, ``deepspeed/checkpoint/constants.py``):

- the model states: ``mp_rank_00_model_states.pt`` (ZeRO 1 and 2), or one
  ``zero_pp_rank_<dp>_mp_rank_00_model_states.pt`` per data-parallel rank (ZeRO 3). Its dict
  holds ``param_shapes`` (one ordered ``name -> torch.Size`` per parameter group: the global
  model), ``frozen_param_shapes``, ``buffer_names`` and the buffers in ``module``,
  ``shared_params`` (tied names), ``ds_config``, ``dp_world_size``, ``ds_version``;
- per data-parallel rank ``[bf16_]zero_pp_rank_<dp>_mp_rank_00_optim_states.pt`` whose
  ``optimizer_state_dict`` holds ``zero_stage``, ``partition_count`` and that rank's flat
  float32 master partitions (``single_partition_of_fp32_groups`` for ZeRO 1/2,
  ``fp32_flat_groups`` for ZeRO 3) beside the inner optimizer's moments.

With DeepSpeed's MoE layers, each expert is saved on its own by the rank holding it
(``layer_<l>_expert_<e>_mp_rank_00_model_states.pt``, the expert's global number in its names),
and rank 0's ``param_shapes`` list only its own experts: the experts are read from those files.

The model is counted from ``param_shapes`` exactly as ``zero_to_fp32.py`` rebuilds it, plus the
frozen parameters: ``frozen_param_shapes`` from stage 2 on; at stage 1 DeepSpeed records none, so
they are the stored module's tensors that no list names (``zero_to_fp32.py`` drops them). The flat
partitions are counted, never loaded, and checked against the parameter sizes the way
``zero_to_fp32.py`` checks them. DeepSpeed's own classes in the pickles (a loss scaler, the
ZeRO stage enum) are kept as inert records: named, never imported or called.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from math import ceil, prod
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.dtypes import n_bytes
from paramscope.core.errors import CorruptFileError
from paramscope.core.tree import FlatTensor
from paramscope.readers.distributed.deepspeed_folder import (
    EXPERT_NAME, MODEL_FILE, OPTIM_FILE, DeepSpeedPickleRules, Folder, config_dtype, count, dtype_of, known, list_names,
    safe_load, shapes_of, tag_folder,
)  # fmt: skip
from paramscope.readers.distributed.layout import RankLayout, RankShare, RankSlice, fsdp_projection
from paramscope.readers.torch.tensor_pickle import TensorRef
from paramscope.rules.names import anatomy_from_flat

__all__ = ["can_read", "read", "rank_layout", "DeepSpeedPickleRules"]

def can_read(source: Any) -> bool:
    """Whether ``source`` is a DeepSpeed checkpoint folder (with ``latest``) or its tag folder.

    Example:
        >>> can_read("no-such-folder")
        False
    """
    folder = tag_folder(source)
    if folder is None:
        return False
    names = list_names(folder)
    return any(OPTIM_FILE.match(n) for n in names) and any(MODEL_FILE.match(n) for n in names)


def _check_partitions(f: Folder, groups: list[list[tuple[str, tuple[int, ...]]]]) -> None:
    """The flat fp32 partitions hold the parameters, as zero_to_fp32.py checks before merging."""
    where = str(f.folder)
    if any(len(r.partitions) != len(f.ranks[0].partitions) for r in f.ranks):
        raise CorruptFileError("ranks hold different numbers of fp32 parameter groups", where=where)
    if f.stage == 3:
        wanted = sum(ceil(prod(s) / f.world) for g in groups for _, s in g) * f.world
        avail = sum(f.ranks[0].partitions) * f.world
        if wanted != avail:
            raise CorruptFileError(f"the fp32 partitions hold {avail} elements over {f.world} ranks; the parameters need {wanted}", where=where)
        return
    if len(groups) != len(f.ranks[0].partitions):
        raise CorruptFileError(f"{len(groups)} parameter groups in param_shapes but {len(f.ranks[0].partitions)} fp32 groups", where=where)
    align = 2 * f.world  # ZeRO 1/2 pad each group to a multiple of 2 x world size

    def aligned(x: int) -> int:
        return align * ceil(x / align)

    for i, g in enumerate(groups):
        avail = sum(r.partitions[i] for r in f.ranks)
        wanted = sum(prod(s) for _, s in g)
        if aligned(wanted) != aligned(avail) and wanted > avail:
            raise CorruptFileError(f"fp32 group {i} holds {avail} elements over {f.world} ranks; its parameters need {wanted}", where=where)


def read(source: Any, **options: Any) -> Anatomy:
    """Read a DeepSpeed ZeRO folder's global model; optimizer partitions counted as extras.

    Example:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> can_read(folder.name)  # an empty folder is no such checkpoint (tests build real ones)
        False
        >>> folder.cleanup()
    """
    f = safe_load(source)
    flat, tied, recovered = _model(f)
    extras = []
    for r in f.ranks:
        tensors = [Tensor(f"rank{r.rank}.fp32_master.group{i}", (n,), "float32", Role.BUFFER, False, "", None,
                          "this rank's flat float32 master copy of its partition of the parameters; not part of the model")
                   for i, n in enumerate(r.partitions)]  # fmt: skip
        tensors += [Tensor(f"rank{r.rank}.{name}", shape, dt, Role.BUFFER, False, "", None, "optimizer state of this rank's partition")
                    for name, shape, dt in r.moments]  # fmt: skip
        extras.append(TensorGroup("optimizer", tuple(tensors), note=f"from {r.file}"))
    meta = {
        "format": "DeepSpeed ZeRO checkpoint",
        "zero_stage": str(f.stage),
        "dp_world_size": str(f.world),
        "world_size": str(f.world),
        "tag": f.folder.name,
        "ds_version": str(f.model.get("ds_version", "?")),
        "mp_world_size": str(f.model.get("mp_world_size", "?")),
        "global_steps": str(f.model.get("global_steps", "?")),
    }
    notes = [
        f"ZeRO stage {f.stage} over {f.world} data-parallel ranks; the model is param_shapes of {f.model_file}, as "
        "zero_to_fp32.py rebuilds it. Dtypes from the stored module where it holds the parameter, else from "
        "ds_config; no weight was loaded.",
    ]
    if recovered:
        n = sum(count(known(t.shape)) for t in recovered)
        notes.append(f"ZeRO stage {f.stage} records no frozen_param_shapes: {len(recovered)} frozen parameters "
                     f"({n:,} elements) were read from the module state dict stored in {f.model_file}. "
                     "zero_to_fp32.py leaves them out of its state dict.")  # fmt: skip
    if f.experts:
        layers = sorted({layer for _, layer, _, _ in f.experts})
        meta["moe_layers"] = str(len(layers))
        meta["experts"] = str(len(f.experts))
        notes.append(f"{len(f.experts)} experts of {len(layers)} MoE layers read from their own files "
                     "(layer_<l>_expert_<e>_mp_rank_00_model_states.pt, one per expert under its global number); "
                     f"the param_shapes of {f.model_file} hold only rank 0's own experts.")  # fmt: skip
    anatomy = anatomy_from_flat(flat, name=f.folder.name, framework="deepspeed", source=str(f.folder), metadata=meta,
                                notes=notes, tied=tied, tie_reason="DeepSpeed's shared_params")  # fmt: skip
    return anatomy.with_(extras=_merge(extras), metadata=MappingProxyType(dict(anatomy.metadata)))


def _model(f: Folder) -> tuple[list[FlatTensor], dict[str, str], list[FlatTensor]]:
    """The global model: parameters, frozen parameters and buffers; the ties; the frozen parameters found only in the module."""
    where = str(f.folder / f.model_file)
    groups = shapes_of(f.model["param_shapes"], where)
    _check_partitions(f, groups)
    dtype = config_dtype(f.model.get("ds_config"))
    found = f.model.get("module")
    module: dict[str, Any] = found if isinstance(found, dict) else {}
    flat = [FlatTensor(name, shape, dtype_of(module, name, dtype), "", Role.TRAINABLE, True) for g in groups for name, shape in g]
    frozen = f.model.get("frozen_param_shapes")
    if isinstance(frozen, dict):
        flat += [FlatTensor(name, shape, dtype_of(module, name, dtype), "", Role.FROZEN, True)
                 for name, shape in shapes_of([frozen], where)[0]]  # fmt: skip
    buffers = f.model.get("buffer_names")
    buffer_names = [n for n in buffers if isinstance(n, str)] if isinstance(buffers, list) else []
    for name in buffer_names:
        t = module.get(name)
        if isinstance(t, TensorRef):
            flat.append(FlatTensor(name, t.shape, t.dtype, "", Role.BUFFER, False))
    shared = f.model.get("shared_params")
    tied = {k: v for k, v in shared.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(shared, dict) else {}
    recovered = _unlisted_frozen(f, module, {t.name for t in flat} | set(buffer_names) | set(tied))
    return _with_experts(f, flat) + recovered, tied, recovered


def _with_experts(f: Folder, flat: list[FlatTensor]) -> list[FlatTensor]:
    """``flat`` with a MoE layer's local experts (rank 0's, in ``param_shapes``) replaced by every expert's file.

    Each file holds one expert under its global number; the local ones must have the same tensors.
    """
    if not f.experts:
        return flat
    where = str(f.folder)
    local: dict[str, tuple[int | None, ...] | None] = {}
    for ft in flat:
        m = EXPERT_NAME.match(ft.name)
        if m:
            local[m.group(1) + "#" + m.group(3)] = ft.shape
    found: dict[str, set[int]] = {}
    added = []
    for file, _, expert, tensors in sorted(f.experts, key=lambda e: (e[1], e[2])):
        for name, t in tensors.items():
            m = EXPERT_NAME.match(name)
            if m is None or int(m.group(2)) != expert:
                raise CorruptFileError(f"{file} holds {name!r}, which is not expert {expert}'s", where=where)
            template = m.group(1) + "#" + m.group(3)
            if template in local and local[template] != t.shape:
                raise CorruptFileError(f"{name} is {t.shape} in {file} but {local[template]} in param_shapes", where=where)
            found.setdefault(m.group(1), set()).add(expert)
            added.append(FlatTensor(name, t.shape, t.dtype, "", Role.TRAINABLE, True))
    declared = f.model.get("num_experts")
    counts = sorted(len(ids) for ids in found.values())
    for prefix, ids in found.items():
        if ids != set(range(len(ids))):
            raise CorruptFileError(f"the expert files of {prefix} number experts {sorted(ids)[:8]}: an expert's file is missing", where=where)
    if isinstance(declared, list) and all(isinstance(n, int) for n in declared) and sorted(declared) != counts:
        raise CorruptFileError(f"num_experts says {declared} but the expert files hold {counts}: an expert's file is missing", where=where)
    return [t for t in flat if not EXPERT_NAME.match(t.name)] + added


def _unlisted_frozen(f: Folder, module: dict[str, Any], listed: set[str]) -> list[FlatTensor]:
    """ZeRO 1's frozen parameters: in the stored module but in no list (DeepSpeed fills
    ``frozen_param_shapes`` only from stage 2 on, ``engine._save_checkpoint``). ZeRO 3 stores an
    empty module, so there is nothing to find there."""
    if f.stage >= 3 or f.model.get("frozen_param_shapes") is not None:
        return []
    return [FlatTensor(name, t.shape, t.dtype, "", Role.FROZEN, True)
            for name, t in module.items() if isinstance(name, str) and isinstance(t, TensorRef) and name not in listed]  # fmt: skip


def _merge(groups: Iterable[TensorGroup]) -> tuple[TensorGroup, ...]:
    tensors = tuple(t for g in groups for t in g.tensors)
    return (TensorGroup("optimizer", tensors, note="ZeRO optimizer partitions, one set per data-parallel rank"),) if tensors else ()


def rank_layout(source: Any, world_sizes: Iterable[int] = ()) -> RankLayout:
    """Per data-parallel rank: its files and the flat fp32 partitions and moments it holds."""
    f = safe_load(source)
    model = [(t.name, known(t.shape), t.dtype) for t in _model(f)[0] if t.is_param]
    owners = _expert_owners(f)  # expert file -> the rank that saved it
    in_expert_files = {name for _, _, _, tensors in f.experts for name in tensors}
    shares = []
    offsets = [0] * len(f.ranks[0].partitions)
    for r in f.ranks:
        slices = []
        for i, n in enumerate(r.partitions):
            slices.append(RankSlice(f"fp32 flat group {i}", (offsets[i],), (n,), "float32", True))
            offsets[i] += n
        slices += [RankSlice(name, tuple(0 for _ in shape), shape, dt, True) for name, shape, dt in r.moments]
        files = [r.file] + [m for m in f.model_files if _owner(m) == r.rank]
        if f.stage < 3 and r.rank == 0:  # ZeRO 1/2 keep the whole model in mp_rank_00, but for the experts
            slices = [RankSlice(name, tuple(0 for _ in s), s, dt) for name, s, dt in model if name not in in_expert_files] + slices
        for file, _, _, tensors in f.experts:
            if owners[file] == r.rank:
                files.append(file)
                slices += [RankSlice(name, tuple(0 for _ in t.shape), t.shape, t.dtype) for name, t in tensors.items()]
        stored = sum(os.path.getsize(f.folder / x) for x in files)
        shares.append(RankShare(r.rank, tuple(files), tuple(slices), stored))
    total = sum(n_bytes(dt, count(s)) or 0 for _, s, dt in model) + sum(
        s.n_bytes or 0 for sh in shares for s in sh.slices if s.optimizer)
    facts = (("zero_stage", str(f.stage)), ("dp_world_size", str(f.world)), ("tag", f.folder.name))
    return RankLayout(str(f.folder), "deepspeed", tuple(shares), total,
                      tuple(fsdp_projection(model, n) for n in world_sizes), facts)  # fmt: skip


def _expert_owners(f: Folder) -> dict[str, int]:
    """Which rank saved each expert file: expert ``e`` of a layer holding ``k`` experts per rank
    lives on expert-parallel rank ``e // k``, and the ranks of the first expert-data-parallel
    group (global ranks ``0 .. ep-1``) save them."""
    groups = shapes_of(f.model["param_shapes"], str(f.folder / f.model_file))
    local: dict[str, set[int]] = {}
    for name, _ in (x for g in groups for x in g):
        m = EXPERT_NAME.match(name)
        if m:
            local.setdefault(m.group(1), set()).add(int(m.group(2)))
    owners = {}
    for file, _, expert, tensors in f.experts:
        m = EXPERT_NAME.match(next(iter(tensors)))
        per_rank = len(local.get(m.group(1), ())) if m else 0
        owners[file] = expert // per_rank if per_rank else 0
    return owners


def _owner(model_file: str) -> int:
    m = MODEL_FILE.match(model_file)
    return int(m.group(1)) if m and m.group(1) is not None else 0
