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
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from math import ceil, prod
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.dtypes import n_bytes
from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.tree import FlatTensor
from paramscope.readers.distributed.layout import RankLayout, RankShare, RankSlice, fsdp_projection
from paramscope.readers.distributed.records import ClassName, Record
from paramscope.readers.distributed.torch_file import load_torch_file
from paramscope.readers.torch.tensor_pickle import TensorRef, TorchPickleRules
from paramscope.rules.names import anatomy_from_flat

__all__ = ["can_read", "read", "rank_layout", "DeepSpeedPickleRules"]

_OPTIM = re.compile(r"^(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_(\d+)_?optim_states\.pt$")
_MODEL = re.compile(r"^(?:zero_pp_rank_(\d+)_)?mp_rank_(\d+)_model_states\.pt$")
_MAX_LATEST = 256
#: One expert of a DeepSpeed MoE layer, saved by the rank holding it (``engine._get_expert_ckpt_name``).
_EXPERT_FILE = re.compile(r"^layer_(\d+)_expert_(\d+)_mp_rank_(\d+)_model_states\.pt$")
#: Where DeepSpeed's MoE layer numbers its experts (``engine._save_moe_checkpoint``'s ``moe_str_prefix``).
_EXPERT_NAME = re.compile(r"^(.*\.deepspeed_moe\.experts\.deepspeed_experts\.)(\d+)(\..*)$")


class DeepSpeedPickleRules(TorchPickleRules):
    """Torch's allow-list plus DeepSpeed's own classes as inert records (``deepspeed.*``, never imported)."""

    def resolve(self, module: str, name: str, offset: int) -> Any:
        if (module == "deepspeed" or module.startswith("deepspeed.")) and name.isidentifier():
            return ClassName(f"{module}.{name}")
        return super().resolve(module, name, offset)

    def reduce(self, func: Any, args: tuple[Any, ...], offset: int) -> Any:
        # An enum member is pickled as a call of its class with its value: kept as (class, value).
        if isinstance(func, ClassName):
            if all(isinstance(a, (int, str, float, bool)) or a is None for a in args):
                return Record(func.qualname, args=args)
            raise UnsafeFileError(f"the pickle calls {func.qualname} with objects at byte {offset}; paramscope refuses it", where=self.where)
        return super().reduce(func, args, offset)

    def newobj(self, cls: Any, args: tuple[Any, ...], offset: int) -> Any:
        if isinstance(cls, ClassName) and not args:
            return Record(cls.qualname)
        return super().newobj(cls, args, offset)

    def build(self, obj: Any, state: Any, offset: int) -> Any:
        if isinstance(obj, Record):
            if isinstance(state, dict):
                obj.state.update((k, v) for k, v in state.items() if isinstance(k, str))
            return obj
        return super().build(obj, state, offset)


def _tag_folder(source: Any) -> Path | None:
    """The folder holding the rank files: ``source`` itself, or ``source/<tag from latest>``."""
    if not isinstance(source, (str, os.PathLike)) or not os.path.isdir(source):
        return None
    root = Path(source)
    latest = root / "latest"
    if os.path.isfile(latest):
        try:
            tag = latest.read_bytes()[:_MAX_LATEST].decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not tag or "/" in tag or "\\" in tag or tag in (".", "..") or "\0" in tag:
            return None
        return root / tag if os.path.isdir(root / tag) else None
    return root


def _names(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def can_read(source: Any) -> bool:
    """Whether ``source`` is a DeepSpeed checkpoint folder (with ``latest``) or its tag folder.

    Example:
        >>> can_read("no-such-folder")
        False
    """
    folder = _tag_folder(source)
    if folder is None:
        return False
    names = _names(folder)
    return any(_OPTIM.match(n) for n in names) and any(_MODEL.match(n) for n in names)


@dataclass
class _Rank:
    rank: int
    file: str
    partitions: list[int]  # flat fp32 master elements per parameter group
    moments: list[tuple[str, tuple[int, ...], str]]  # (name, shape, dtype) of the inner optimizer's tensors


@dataclass
class _Folder:
    folder: Path
    model_file: str
    model: dict[str, Any]
    stage: int
    world: int
    ranks: list[_Rank]
    model_files: list[str]
    experts: list[tuple[str, int, int, dict[str, TensorRef]]] = field(default_factory=list)  # (file, layer, expert, tensors)


def _load(source: Any) -> _Folder:
    folder = _tag_folder(source)
    if folder is None:
        raise CorruptFileError("not a DeepSpeed checkpoint folder (its 'latest' names no tag folder)", where=os.fspath(source))
    names = _names(folder)
    model_files = [n for n in names if _MODEL.match(n)]
    first = next((n for n in model_files if n in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")), None)
    if first is None:
        raise CorruptFileError("no mp_rank_00 model states file", where=str(folder))
    model = load_torch_file(_inside(folder, first), DeepSpeedPickleRules(str(folder / first)))
    if not isinstance(model, dict) or "param_shapes" not in model:
        raise CorruptFileError("the model states file has no param_shapes: not a ZeRO checkpoint", where=str(folder / first))
    ranks: list[_Rank] = []
    stages: set[int] = set()
    world = 0
    for n in names:
        m = _OPTIM.match(n)
        if m is None or m.group(2) != "00":
            continue
        value = load_torch_file(_inside(folder, n), DeepSpeedPickleRules(str(folder / n)))
        osd = value.get("optimizer_state_dict") if isinstance(value, dict) else None
        if not isinstance(osd, dict) or "zero_stage" not in osd:
            raise CorruptFileError("no optimizer_state_dict with a zero_stage: not a ZeRO optimizer file", where=str(folder / n))
        stage = _int(osd["zero_stage"], "zero_stage", folder / n)
        stages.add(stage)
        count = osd.get("partition_count")
        counts = count if isinstance(count, list) else [count]
        world = max(world, max(_int(c, "partition_count", folder / n) for c in counts))
        key = "fp32_flat_groups" if stage == 3 else "single_partition_of_fp32_groups"
        groups = osd.get(key)
        if not isinstance(groups, list) or not all(isinstance(g, TensorRef) for g in groups):
            raise CorruptFileError(f"{key} is not a list of tensors", where=str(folder / n))
        inner = osd.get("optimizer_state_dict") if stage == 3 else osd.get("base_optimizer_state")
        moments = [(name, t.shape, t.dtype) for name, t in _tensors(inner, "")]
        ranks.append(_Rank(int(m.group(1)), n, [prod(g.shape) for g in groups], moments))
    if len(stages) != 1:
        raise CorruptFileError(f"the optimizer files disagree on the ZeRO stage ({sorted(stages)})", where=str(folder))
    stage = stages.pop()
    ranks.sort(key=lambda r: r.rank)
    if [r.rank for r in ranks] != list(range(world)):
        raise CorruptFileError(f"expected optimizer files for ranks 0..{world - 1} (partition_count {world}); found ranks "
                               f"{[r.rank for r in ranks]}: a rank's file is missing", where=str(folder))  # fmt: skip
    experts = []
    for n in names:
        m = _EXPERT_FILE.match(n)
        if m is None or m.group(3) != "00":
            continue
        value = load_torch_file(_inside(folder, n), DeepSpeedPickleRules(str(folder / n)))
        if not isinstance(value, dict) or not value or not all(isinstance(k, str) and isinstance(t, TensorRef) for k, t in value.items()):
            raise CorruptFileError("an expert file holds something other than the expert's named tensors", where=str(folder / n))
        experts.append((n, int(m.group(1)), int(m.group(2)), value))
    return _Folder(folder, first, model, stage, world, ranks, model_files, experts)


def _inside(folder: Path, name: str) -> Path:
    path = folder / name
    if os.path.islink(path) and os.path.commonpath([os.path.realpath(path), os.path.realpath(folder)]) != os.path.realpath(folder):
        raise UnsafeFileError(f"{name} is a link leading out of the checkpoint folder", where=str(folder))
    return path


def _int(value: Any, what: str, where: Path) -> int:
    if isinstance(value, Record) and len(value.args) == 1:
        value = value.args[0]  # ZeroStageEnum(2)
    if type(value) is not int or value < 0:
        raise CorruptFileError(f"{what} is {value!r}, not a count", where=str(where))
    return value


def _tensors(value: Any, prefix: str, depth: int = 0) -> Iterator[tuple[str, TensorRef]]:
    if depth > 32:
        return
    if isinstance(value, TensorRef):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _tensors(v, f"{prefix}.{i}" if prefix else str(i), depth + 1)


def _shapes(value: Any, where: str) -> list[list[tuple[str, tuple[int, ...]]]]:
    groups = value if isinstance(value, list) else [value] if isinstance(value, dict) else None
    if groups is None or not all(isinstance(g, dict) for g in groups):
        raise CorruptFileError("param_shapes is not a list of name -> shape dicts", where=where)
    out = []
    for g in groups:
        items = []
        for name, shape in g.items():
            if not isinstance(name, str) or not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
                raise CorruptFileError(f"param_shapes entry {name!r} is not a name and a shape", where=where)
            items.append((name, shape))
        out.append(items)
    return out


def _dtype(config: Any) -> str:
    """The parameters' dtype from ``ds_config`` (``bf16``/``fp16`` ``enabled``), else float32."""
    if isinstance(config, dict):
        for key, name in (("bf16", "bfloat16"), ("bfloat16", "bfloat16"), ("fp16", "float16")):
            section = config.get(key)
            if isinstance(section, dict) and section.get("enabled") is True:
                return name
    return "float32"


def _check_partitions(f: _Folder, groups: list[list[tuple[str, tuple[int, ...]]]]) -> None:
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
    f = _safe_load(source)
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
        n = sum(_count(_known(t.shape)) for t in recovered)
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


def _model(f: _Folder) -> tuple[list[FlatTensor], dict[str, str], list[FlatTensor]]:
    """The global model: parameters, frozen parameters and buffers; the ties; the frozen parameters found only in the module."""
    where = str(f.folder / f.model_file)
    groups = _shapes(f.model["param_shapes"], where)
    _check_partitions(f, groups)
    dtype = _dtype(f.model.get("ds_config"))
    found = f.model.get("module")
    module: dict[str, Any] = found if isinstance(found, dict) else {}
    flat = [FlatTensor(name, shape, _dtype_of(module, name, dtype), "", Role.TRAINABLE, True) for g in groups for name, shape in g]
    frozen = f.model.get("frozen_param_shapes")
    if isinstance(frozen, dict):
        flat += [FlatTensor(name, shape, _dtype_of(module, name, dtype), "", Role.FROZEN, True)
                 for name, shape in _shapes([frozen], where)[0]]  # fmt: skip
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


def _with_experts(f: _Folder, flat: list[FlatTensor]) -> list[FlatTensor]:
    """``flat`` with a MoE layer's local experts (rank 0's, in ``param_shapes``) replaced by every expert's file.

    Each file holds one expert under its global number; the local ones must have the same tensors.
    """
    if not f.experts:
        return flat
    where = str(f.folder)
    local: dict[str, tuple[int | None, ...] | None] = {}
    for ft in flat:
        m = _EXPERT_NAME.match(ft.name)
        if m:
            local[m.group(1) + "#" + m.group(3)] = ft.shape
    found: dict[str, set[int]] = {}
    added = []
    for file, _, expert, tensors in sorted(f.experts, key=lambda e: (e[1], e[2])):
        for name, t in tensors.items():
            m = _EXPERT_NAME.match(name)
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
    return [t for t in flat if not _EXPERT_NAME.match(t.name)] + added


def _unlisted_frozen(f: _Folder, module: dict[str, Any], known: set[str]) -> list[FlatTensor]:
    """ZeRO 1's frozen parameters: in the stored module but in no list (DeepSpeed fills
    ``frozen_param_shapes`` only from stage 2 on, ``engine._save_checkpoint``). ZeRO 3 stores an
    empty module, so there is nothing to find there."""
    if f.stage >= 3 or f.model.get("frozen_param_shapes") is not None:
        return []
    return [FlatTensor(name, t.shape, t.dtype, "", Role.FROZEN, True)
            for name, t in module.items() if isinstance(name, str) and isinstance(t, TensorRef) and name not in known]  # fmt: skip


def _merge(groups: Iterable[TensorGroup]) -> tuple[TensorGroup, ...]:
    tensors = tuple(t for g in groups for t in g.tensors)
    return (TensorGroup("optimizer", tensors, note="ZeRO optimizer partitions, one set per data-parallel rank"),) if tensors else ()


def _dtype_of(module: dict[str, Any], name: str, default: str) -> str:
    t = module.get(name)
    return t.dtype if isinstance(t, TensorRef) and _count(t.shape) else default


def _safe_load(source: Any) -> _Folder:
    try:
        return _load(source)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError, MemoryError) as e:
        raise CorruptFileError(f"malformed DeepSpeed checkpoint ({type(e).__name__}: {str(e)[:200]})", where=os.fspath(source)) from None


def rank_layout(source: Any, world_sizes: Iterable[int] = ()) -> RankLayout:
    """Per data-parallel rank: its files and the flat fp32 partitions and moments it holds."""
    f = _safe_load(source)
    model = [(t.name, _known(t.shape), t.dtype) for t in _model(f)[0] if t.is_param]
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
    total = sum(n_bytes(dt, _count(s)) or 0 for _, s, dt in model) + sum(
        s.n_bytes or 0 for sh in shares for s in sh.slices if s.optimizer)
    facts = (("zero_stage", str(f.stage)), ("dp_world_size", str(f.world)), ("tag", f.folder.name))
    return RankLayout(str(f.folder), "deepspeed", tuple(shares), total,
                      tuple(fsdp_projection(model, n) for n in world_sizes), facts)  # fmt: skip


def _expert_owners(f: _Folder) -> dict[str, int]:
    """Which rank saved each expert file: expert ``e`` of a layer holding ``k`` experts per rank
    lives on expert-parallel rank ``e // k``, and the ranks of the first expert-data-parallel
    group (global ranks ``0 .. ep-1``) save them."""
    groups = _shapes(f.model["param_shapes"], str(f.folder / f.model_file))
    local: dict[str, set[int]] = {}
    for name, _ in (x for g in groups for x in g):
        m = _EXPERT_NAME.match(name)
        if m:
            local.setdefault(m.group(1), set()).add(int(m.group(2)))
    owners = {}
    for file, _, expert, tensors in f.experts:
        m = _EXPERT_NAME.match(next(iter(tensors)))
        per_rank = len(local.get(m.group(1), ())) if m else 0
        owners[file] = expert // per_rank if per_rank else 0
    return owners


def _known(shape: tuple[int | None, ...] | None) -> tuple[int, ...]:
    """A shape this reader built from param_shapes or a stored tensor, typed as such: every dimension is known."""
    return tuple(d for d in shape or () if d is not None)


def _count(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _owner(model_file: str) -> int:
    m = _MODEL.match(model_file)
    return int(m.group(1)) if m and m.group(1) is not None else 0
