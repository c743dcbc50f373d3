"""Megatron-LM tensor- and pipeline-parallel checkpoint folders, merged without loading a weight.

``save_checkpoint`` (``megatron/training/checkpointing.py``) writes, under the checkpoint
folder, ``latest_checkpointed_iteration.txt`` (an iteration number or ``release``) and
``iter_<7 digits>/`` (or ``release/``) holding one ``mp_rank_<tp:02d>/model_optim_rng.pt`` per
tensor-parallel rank, or ``mp_rank_<tp:02d>_<pp:03d>/`` with pipeline parallelism. Each file's
dict holds ``args`` (an ``argparse.Namespace`` with ``tensor_model_parallel_size``,
``pipeline_model_parallel_size``, ``num_layers``...), ``iteration``, ``model`` (that rank's
state dict), ``optimizer`` and ``rng_state``.

Tensor-parallel shards are merged by Megatron's partition rules
(``megatron/core/tensor_parallel/layers.py``): column-parallel layers split their output, dim 0
(the fused QKV ``linear_qkv``/``query_key_value``, ``linear_fc1``/``dense_h_to_4h``, the
vocabulary-parallel ``word_embeddings`` and ``output_layer``), row-parallel layers split their
input, dim 1 (``linear_proj``/``dense``, ``linear_fc2``/``dense_4h_to_h``) and keep their bias
whole, and norms are replicated. Pipeline stages hold consecutive layers, numbered from 0 in
each stage: stage ``p`` adds the number of layers of the stages before it.

With expert parallelism (``get_checkpoint_name``) the folders are ``mp_rank_<tp>[_<pp>]_<ep:03d>``
and each holds its ``num_experts / ep`` local experts (``mlp.experts.local_experts.<i>``, or
``linear_fc1.weight<i>`` for grouped experts): expert ``i`` of rank ``e`` is global expert
``e x local + i``; everything else is repeated on every expert-parallel rank and counted once.
Expert weights are split over ``expert_tensor_parallel_size`` ranks (default: the tensor-parallel
size); with 1 each is whole, and only the ranks of the first expert-data-parallel group save,
so the folder need not hold every (tp, ep) pair. With tied embeddings
(``untie_embeddings_and_output_weights`` false) and several stages, the last stage's
``output_layer.weight`` is a copy of the first stage's word embeddings: one tensor.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.dtypes import n_bytes
from paramscope.core.errors import CorruptFileError, UnsafeFileError, UnsupportedFormatError
from paramscope.core.tree import FlatTensor
from paramscope.readers.distributed.layout import RankLayout, RankShare, RankSlice, fsdp_projection
from paramscope.readers.distributed.records import ClassName, Record
from paramscope.readers.distributed.torch_file import load_torch_file
from paramscope.readers.torch.tensor_pickle import TensorRef, TorchPickleRules
from paramscope.rules.names import anatomy_from_flat

__all__ = ["can_read", "read", "rank_layout", "partition_dim"]

_RANK_DIR = re.compile(r"^mp_rank_(\d{2})(?:_(\d{3}))?(?:_(\d{3}))?$")
#: A local expert's index: ``experts.local_experts.<i>.`` (sequential experts) or ``experts.linear_fc1.weight<i>`` (grouped).
_EXPERT = re.compile(r"(\.experts\.local_experts\.)(\d+)(?=\.)|(\.experts\.linear_fc[12]\.(?:weight|bias))(\d+)$")
_ITER_DIR = re.compile(r"^(iter_\d{7}|release)$")
_LAYER = re.compile(r"(^|\.)layers\.(\d+)\.")
_FILE = "model_optim_rng.pt"
#: The distributed optimizer's state, beside the model file (``get_distributed_optimizer_checkpoint_name``).
_DISTRIB = "distrib_optim.pt"

#: Name tokens of column-parallel weights (split on dim 0, bias split too).
_COLUMN = ("linear_qkv", "query_key_value", "linear_fc1", "dense_h_to_4h", "word_embeddings", "output_layer", "linear_q", "linear_kv")
#: Name tokens of row-parallel weights (split on dim 1; bias replicated).
_ROW = ("linear_proj", "linear_fc2", "dense_4h_to_h", "self_attention.dense", "attention.dense")

#: Globals besides torch's that Megatron's files name, each kept as an inert record.
_EXTRA = {
    ("argparse", "Namespace"), ("io", "BytesIO"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    # Protocol 2 (torch.save's) has no bytes opcode: numpy's raw bytes arrive as _codecs.encode(text, "latin1").
    ("_codecs", "encode"),
}  # fmt: skip


class _Rules(TorchPickleRules):
    def resolve(self, module: str, name: str, offset: int) -> Any:
        if (module, name) in _EXTRA:
            return ClassName(f"{module}.{name}")
        return super().resolve(module, name, offset)

    def reduce(self, func: Any, args: tuple[Any, ...], offset: int) -> Any:
        if isinstance(func, ClassName) and func.qualname == "_codecs.encode":
            if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
                return args[0].encode("latin1")  # text already in memory: no size from a header
            raise UnsafeFileError(f"_codecs.encode at byte {offset} with arguments numpy never writes", where=self.where)
        if isinstance(func, ClassName):
            return Record(func.qualname, args=args)  # numpy arrays and BytesIO: recorded, never built
        return super().reduce(func, args, offset)

    def newobj(self, cls: Any, args: tuple[Any, ...], offset: int) -> Any:
        if isinstance(cls, ClassName) and not args:
            return Record(cls.qualname, {})
        return super().newobj(cls, args, offset)

    def build(self, obj: Any, state: Any, offset: int) -> Any:
        if isinstance(obj, Record):
            obj.state = state
            return obj
        return super().build(obj, state, offset)


def partition_dim(name: str) -> int | None:
    """The dim Megatron splits ``name`` on over tensor-parallel ranks; ``None``: replicated.

    Example:
        >>> partition_dim("decoder.layers.0.self_attention.linear_qkv.weight")
        0
        >>> partition_dim("decoder.layers.0.mlp.linear_fc2.weight"), partition_dim("decoder.layers.0.mlp.linear_fc2.bias")
        (1, None)
        >>> partition_dim("decoder.layers.0.self_attention.linear_qkv.layer_norm_weight") is None
        True
    """
    last = name.rsplit(".", 1)[-1]
    if ".experts." in name:  # grouped experts number their weights: linear_fc2.weight3
        last = last.rstrip("0123456789")
    if "norm" in last or last == "_extra_state":
        return None
    if any(f".{tok}." in f".{name}" for tok in _ROW):
        return 1 if last == "weight" else None
    if any(f".{tok}." in f".{name}" for tok in _COLUMN):
        return 0
    return None


def _iteration_folder(source: Any) -> Path | None:
    if not isinstance(source, (str, os.PathLike)) or not os.path.isdir(source):
        return None
    root = Path(source)
    tracker = root / "latest_checkpointed_iteration.txt"
    if os.path.isfile(tracker):
        try:
            text = tracker.read_bytes()[:64].decode("ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        name = "release" if text == "release" else f"iter_{int(text):07d}" if text.isdigit() else ""
        return root / name if name and os.path.isdir(root / name) else None
    return root


def _rank_dirs(folder: Path) -> list[tuple[int, tuple[int, ...], str]]:
    """(tensor rank, the folder name's other numbers, name): pipeline and/or expert rank, read with ``args``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for n in names:
        m = _RANK_DIR.match(n)
        if m and os.path.isfile(folder / n / _FILE):
            out.append((int(m.group(1)), tuple(int(g) for g in m.groups()[1:] if g is not None), n))
    return sorted(out)


def _pp_ep(rest: tuple[int, ...], pp_declared: Any, ep_declared: Any) -> tuple[int, int]:
    """The pipeline and expert rank a folder name's numbers stand for (``get_checkpoint_name``)."""
    if len(rest) == 2:
        return rest[0], rest[1]
    if len(rest) == 1:
        expert_only = isinstance(ep_declared, int) and ep_declared > 1 and (not isinstance(pp_declared, int) or pp_declared == 1)
        return (0, rest[0]) if expert_only else (rest[0], 0)
    return 0, 0


def can_read(source: Any) -> bool:
    """Whether ``source`` is a Megatron-LM checkpoint folder or one iteration of it.

    Example:
        >>> can_read("no-such-folder")
        False
    """
    folder = _iteration_folder(source)
    return folder is not None and bool(_rank_dirs(folder))


@dataclass
class _Shard:
    tp: int
    pp: int
    path: str
    tensors: dict[str, TensorRef]
    args: dict[str, Any] = field(default_factory=dict)
    iteration: Any = None
    ep: int = 0
    optimizer: list[tuple[str, TensorRef]] = field(default_factory=list)  # (file:path, tensor)
    files: list[str] = field(default_factory=list)  # besides model_optim_rng.pt: distrib_optim.pt


def _flatten(value: Any, prefix: str, depth: int = 0, lists: bool = False) -> Iterator[tuple[str, TensorRef]]:
    """The tensors in nested dicts (and lists, for optimizer state), by dotted path."""
    if depth > 32:
        return
    if isinstance(value, TensorRef):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1, lists)
    elif lists and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}.{i}" if prefix else str(i), depth + 1, lists)


def _load(source: Any) -> tuple[Path, list[_Shard], int, int]:
    folder = _iteration_folder(source)
    if folder is None:
        raise CorruptFileError("not a Megatron-LM checkpoint folder", where=os.fspath(source))
    shards = []
    dirs = _rank_dirs(folder)
    if len({len(rest) for _, rest, _ in dirs}) > 1:
        raise CorruptFileError(f"the rank folders mix naming schemes: {sorted(n for *_, n in dirs)[:4]}", where=str(folder))
    for tp, rest, name in dirs:
        path = folder / name / _FILE
        if os.path.islink(path) and not os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep):
            raise UnsafeFileError(f"{name}/{_FILE} is a link leading out of the checkpoint folder", where=str(folder))
        value = load_torch_file(path, _Rules(str(path)))
        if not isinstance(value, dict) or not isinstance(value.get("model"), dict):
            raise CorruptFileError("no 'model' state dict: not a Megatron-LM checkpoint file", where=str(path))
        args = value.get("args")
        fields = args.state if isinstance(args, Record) and isinstance(args.state, dict) else {}
        shard = _Shard(tp, 0, f"{name}/{_FILE}", dict(_flatten(value["model"], "")), fields, value.get("iteration"))
        shard.optimizer = [(f"{name}/{_FILE}:optimizer.{k}", t) for k, t in _flatten(value.get("optimizer"), "", lists=True)]
        distrib = folder / name / _DISTRIB
        if os.path.lexists(distrib):  # the distributed optimizer's state of this (tp, pp, ep) rank, gathered from its dp group
            if os.path.islink(distrib) and not os.path.realpath(distrib).startswith(os.path.realpath(folder) + os.sep):
                raise UnsafeFileError(f"{name}/{_DISTRIB} is a link leading out of the checkpoint folder", where=str(folder))
            state = load_torch_file(distrib, _Rules(str(distrib)))
            shard.optimizer += [(f"{name}/{_DISTRIB}:{k}", t) for k, t in _flatten(state, "", lists=True)]
            shard.files.append(f"{name}/{_DISTRIB}")
        shards.append(shard)
    declared = shards[0].args
    for shard, (_, rest, _) in zip(shards, dirs):
        shard.pp, shard.ep = _pp_ep(rest, declared.get("pipeline_model_parallel_size"), declared.get("expert_model_parallel_size"))
    tp_size = 1 + max(s.tp for s in shards)
    pp_size = 1 + max(s.pp for s in shards)
    ep_size = 1 + max(s.ep for s in shards)
    sizes = (("tensor_model_parallel_size", tp_size), ("pipeline_model_parallel_size", pp_size), ("expert_model_parallel_size", ep_size))
    for key, found in sizes:
        want = declared.get(key)
        if isinstance(want, int) and want != found:
            raise CorruptFileError(f"args say {key}={want} but the folder holds {found}: a rank's folder is missing", where=str(folder))
    # Every (tp, pp) and every (ep, pp) must be saved by some rank; which (tp, ep) pairs save depends on
    # the expert-tensor-parallel layout, and each tensor's pieces are checked when merged.
    for what, have, size in (("tp", {(s.tp, s.pp) for s in shards}, tp_size), ("ep", {(s.ep, s.pp) for s in shards}, ep_size)):
        missing = [(r, p) for r in range(size) for p in range(pp_size) if (r, p) not in have]
        if missing:
            raise CorruptFileError(f"the rank folders for ({what}, pp) {missing[:4]} are missing", where=str(folder))
    return folder, shards, tp_size, pp_size


def _merged(folder: Path, shards: list[_Shard], tp_size: int, pp_size: int) -> tuple[list[FlatTensor], list[str], dict[str, list[tuple[_Shard, str, tuple[int, ...], tuple[int, ...]]]]]:
    """(global tensors, notes, per global name its pieces: shard, local name, offsets, sizes)."""
    notes: list[str] = []
    offsets = [0] * pp_size
    for stage_no in range(1, pp_size):
        stage = [s for s in shards if s.pp == stage_no - 1 and s.tp == 0][0]
        layers = {int(m.group(2)) for n in stage.tensors for m in [_LAYER.search(n)] if m}
        offsets[stage_no] = offsets[stage_no - 1] + len(layers)
    etp = shards[0].args.get("expert_tensor_parallel_size")
    etp = etp if isinstance(etp, int) and etp > 0 else tp_size
    if etp not in (1, tp_size):
        raise UnsupportedFormatError(f"expert_tensor_parallel_size {etp} with tensor_model_parallel_size {tp_size}: "
                                     "paramscope merges expert weights split over 1 or all tensor-parallel ranks", where=str(folder))  # fmt: skip
    pieces: dict[str, list[tuple[_Shard, str, tuple[int, ...], tuple[int, ...]]]] = {}
    order: list[str] = []
    for s in sorted(shards, key=lambda s: (s.pp, s.ep, s.tp)):
        local_experts = _local_experts(s, folder)
        for local, t in s.tensors.items():
            name = _global_expert(local, s.ep, local_experts) if s.ep else local
            name = _LAYER.sub(lambda m: f"{m.group(1)}layers.{int(m.group(2)) + offsets[s.pp]}.", name, count=1)
            if name not in pieces:
                pieces[name] = []
                order.append(name)
            pieces[name].append((s, local, (), t.shape))
    flat = []
    for name in order:
        parts = pieces[name]
        stages = {s.pp for s, *_ in parts}
        if len(stages) > 1:  # a tied embedding kept on the first and the last stage
            notes.append(f"{name} is stored on pipeline stages {sorted(stages)}: one tensor (tied), counted once.")
            parts = [p for p in parts if p[0].pp == min(stages)]
        by_tp: dict[int, tuple[_Shard, str, tuple[int, ...], tuple[int, ...]]] = {}
        repeats = []  # repeated on every expert-parallel rank (all but the experts): counted once per tensor rank
        for part in parts:
            first = by_tp.setdefault(part[0].tp, part)
            if first is not part:
                if first[3] != part[3]:
                    raise CorruptFileError(f"{name} differs between {first[0].path} and {part[0].path}, which both hold it whole", where=str(folder))
                repeats.append(part)
        parts = list(by_tp.values())
        whole_expert = etp == 1 and _EXPERT.search(name) is not None
        dim = None if whole_expert else partition_dim(name)
        shapes = [p[3] for p in sorted(parts, key=lambda p: p[0].tp)]
        if len(parts) != tp_size and not whole_expert:
            raise CorruptFileError(f"{name} is in {len(parts)} of {tp_size} tensor-parallel shards", where=str(folder))
        t0 = parts[0][0].tensors[parts[0][1]]
        if dim is None or not shapes[0]:
            if len(set(shapes)) != 1:
                raise CorruptFileError(f"{name} is replicated by Megatron's rules but its shards differ: {shapes}", where=str(folder))
            shape = shapes[0]
            pieces[name] = [(p[0], p[1], tuple(0 for _ in shape), shape) for p in parts]
        else:
            if any(len(x) != len(shapes[0]) or x[:dim] + x[dim + 1:] != shapes[0][:dim] + shapes[0][dim + 1:] for x in shapes):
                raise CorruptFileError(f"the shards of {name} do not fit together on dim {dim}: {shapes}", where=str(folder))
            start = 0
            placed = []
            for part in sorted(parts, key=lambda x: x[0].tp):
                off = tuple(start if d == dim else 0 for d in range(len(part[3])))
                placed.append((part[0], part[1], off, part[3]))
                start += part[3][dim]
            pieces[name] = placed
            shape = tuple(start if d == dim else x for d, x in enumerate(shapes[0]))
        at = {p[0].tp: p[2] for p in pieces[name]}
        pieces[name] += [(p[0], p[1], at.get(p[0].tp, tuple(0 for _ in p[3])), p[3]) for p in repeats]  # the layout shows every copy
        if name.endswith("_extra_state"):
            continue
        flat.append(FlatTensor(name, shape, t0.dtype))
    return flat, notes, pieces


def _local_experts(shard: _Shard, folder: Path) -> dict[str, int]:
    """Per expert block of one rank file (its name up to the expert index): how many local experts it holds."""
    found: dict[str, set[int]] = {}
    for local in shard.tensors:
        m = _EXPERT.search(local)
        if m:
            found.setdefault(local[: m.start(2) if m.group(1) else m.start(4)], set()).add(int(m.group(2) or m.group(4)))
    for block, ids in found.items():
        if ids != set(range(len(ids))):
            raise CorruptFileError(f"{shard.path} numbers the local experts of {block} {sorted(ids)[:8]}, not 0..{len(ids) - 1}", where=str(folder))
    return {block: len(ids) for block, ids in found.items()}


def _global_expert(local: str, ep: int, counts: dict[str, int]) -> str:
    """``local`` with its local expert index made global: rank ``ep``'s expert ``i`` is ``ep x count + i``."""
    m = _EXPERT.search(local)
    if m is None:
        return local
    start, end = (m.start(2), m.end(2)) if m.group(1) else (m.start(4), m.end(4))
    return f"{local[:start]}{ep * counts[local[:start]] + int(local[start:end])}{local[end:]}"


def read(source: Any, **options: Any) -> Anatomy:
    """Read a Megatron-LM folder's global model, merging tensor- and pipeline-parallel shards.

    Example:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> can_read(folder.name)  # an empty folder is no such checkpoint (tests build real ones)
        False
        >>> folder.cleanup()
    """
    folder, shards, tp_size, pp_size = _safe(source)
    flat, notes, _ = _merged(folder, shards, tp_size, pp_size)
    args = shards[0].args
    ep_size = 1 + max(s.ep for s in shards)
    meta = {
        "format": "Megatron-LM checkpoint",
        "tensor_parallel": str(tp_size),
        "pipeline_parallel": str(pp_size),
        "world_size": str(tp_size * pp_size),
        "iteration": str(shards[0].iteration),
    }
    if ep_size > 1:
        meta["expert_parallel"] = str(ep_size)
        etp = args.get("expert_tensor_parallel_size")
        experts_group = ep_size * (etp if isinstance(etp, int) and etp > 0 else tp_size)
        meta["world_size"] = f"a multiple of {pp_size * math.lcm(tp_size, experts_group)} (experts ride on data-parallel ranks)"
        meta["rank_files"] = str(len(shards))
    for key in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "padded_vocab_size", "num_experts",
                "expert_tensor_parallel_size", "params_dtype"):  # fmt: skip
        if key in args and args[key] is not None:
            meta[key] = str(getattr(args[key], "name", args[key]))  # a torch dtype is kept by its name
    experts = f" x {ep_size} expert-parallel" if ep_size > 1 else ""
    notes.insert(0, f"Merged {len(shards)} rank files ({tp_size} tensor-parallel x {pp_size} pipeline stages{experts}) by "
                    "Megatron's partition rules; no weight was loaded.")  # fmt: skip
    tied = _tied(args, flat, pp_size)
    notes += [f"{alias} on the last pipeline stage is its copy of {target} ({_TIE_REASON})." for alias, target in tied.items()]
    anatomy = anatomy_from_flat(flat, name=folder.parent.name if _ITER_DIR.match(folder.name) else folder.name,
                                framework="megatron", source=str(folder), metadata=meta, notes=notes,
                                tied=tied, tie_reason=_TIE_REASON)  # fmt: skip
    optimizer = tuple(Tensor(name, t.shape, t.dtype, Role.BUFFER, False, "", None, "optimizer state of this rank; not part of the model")
                      for s in sorted(shards, key=lambda s: (s.pp, s.ep, s.tp)) for name, t in s.optimizer)  # fmt: skip
    extras = (TensorGroup("optimizer", optimizer, note="each rank file's optimizer state as stored"),) if optimizer else ()
    return anatomy.with_(extras=extras, metadata=MappingProxyType(dict(anatomy.metadata)))


_TIE_REASON = "untie_embeddings_and_output_weights: false"


def _tied(args: dict[str, Any], flat: list[FlatTensor], pp_size: int) -> dict[str, str]:
    """The output layer's copy of the word embeddings on the last stage, when ``args`` tie them."""
    names = {f.name for f in flat}
    pairs = (("output_layer.weight", "embedding.word_embeddings.weight"),)
    if pp_size < 2 or args.get("untie_embeddings_and_output_weights") is not False:
        return {}
    shapes = {f.name: f.shape for f in flat}
    return {alias: target for alias, target in pairs if alias in names and target in names and shapes[alias] == shapes[target]}


def _safe(source: Any) -> tuple[Path, list[_Shard], int, int]:
    try:
        return _load(source)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError, MemoryError) as e:
        raise CorruptFileError(f"malformed Megatron-LM checkpoint ({type(e).__name__}: {str(e)[:200]})", where=os.fspath(source)) from None


def rank_layout(source: Any, world_sizes: Iterable[int] = ()) -> RankLayout:
    """Per (tensor, pipeline) rank: the slices of the global tensors its file holds."""
    folder, shards, tp_size, pp_size = _safe(source)
    flat, _, pieces = _merged(folder, shards, tp_size, pp_size)
    ep_size = 1 + max(s.ep for s in shards)
    copies = set(_tied(shards[0].args, flat, pp_size))
    dtypes = {f.name: f.dtype for f in flat}
    by_shard: dict[str, list[RankSlice]] = {s.path: [] for s in shards}
    for name, parts in pieces.items():
        if name in dtypes:
            for shard, _, off, size in parts:
                by_shard[shard.path].append(RankSlice(name, off, size, dtypes[name]))
    for s in shards:
        by_shard[s.path] += [RankSlice(name, tuple(0 for _ in t.shape), t.shape, t.dtype, True) for name, t in s.optimizer]
    shares = tuple(
        RankShare((s.pp * ep_size + s.ep) * tp_size + s.tp, (s.path, *s.files), tuple(by_shard[s.path]),
                  sum(os.path.getsize(folder / f) for f in (s.path, *s.files)))
        for s in sorted(shards, key=lambda s: (s.pp, s.ep, s.tp))
    )
    total = sum(n_bytes(f.dtype, _count(f.shape)) or 0 for f in flat if f.name not in copies)
    total += sum(sl.n_bytes or 0 for sh in shares for sl in sh.slices if sl.optimizer)
    model = [(f.name, tuple(d or 0 for d in f.shape or ()), f.dtype) for f in flat if f.name not in copies]
    facts: tuple[tuple[str, str], ...] = (("tensor_parallel", str(tp_size)), ("pipeline_parallel", str(pp_size)))
    if ep_size > 1:
        facts += (("expert_parallel", str(ep_size)), ("rank", "(pp_stage x ep_size + ep_rank) x tp_size + tp_rank"))
    else:
        facts += (("rank", "pp_stage x tp_size + tp_rank"),)
    return RankLayout(str(folder), "megatron", shares, total, tuple(fsdp_projection(model, n) for n in world_sizes), facts)


def _count(shape: Any) -> int:
    out = 1
    for d in shape or ():
        out *= d
    return out
