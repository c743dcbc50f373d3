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
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Role, Tensor, TensorGroup
from paramscope.core.dtypes import n_bytes
from paramscope.core.errors import CorruptFileError, UnsupportedFormatError
from paramscope.core.tree import FlatTensor
from paramscope.readers.distributed.layout import RankLayout, RankShare, RankSlice, fsdp_projection
from paramscope.readers.distributed.megatron_folder import ITER_DIR, Shard, iteration_folder, rank_dirs, safe_load
from paramscope.rules.names import anatomy_from_flat

__all__ = ["can_read", "read", "rank_layout", "partition_dim"]

#: A local expert's index: ``experts.local_experts.<i>.`` (sequential experts) or ``experts.linear_fc1.weight<i>`` (grouped).
_EXPERT = re.compile(r"(\.experts\.local_experts\.)(\d+)(?=\.)|(\.experts\.linear_fc[12]\.(?:weight|bias))(\d+)$")
_LAYER = re.compile(r"(^|\.)layers\.(\d+)\.")

#: Name tokens of column-parallel weights (split on dim 0, bias split too).
_COLUMN = ("linear_qkv", "query_key_value", "linear_fc1", "dense_h_to_4h", "word_embeddings", "output_layer", "linear_q", "linear_kv")
#: Name tokens of row-parallel weights (split on dim 1; bias replicated).
_ROW = ("linear_proj", "linear_fc2", "dense_4h_to_h", "self_attention.dense", "attention.dense")



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


def can_read(source: Any) -> bool:
    """Whether ``source`` is a Megatron-LM checkpoint folder or one iteration of it.

    Example:
        >>> can_read("no-such-folder")
        False
    """
    folder = iteration_folder(source)
    return folder is not None and bool(rank_dirs(folder))


def _merged(folder: Path, shards: list[Shard], tp_size: int, pp_size: int) -> tuple[list[FlatTensor], list[str], dict[str, list[tuple[Shard, str, tuple[int, ...], tuple[int, ...]]]]]:
    """(global tensors, notes, per global name its pieces: shard, local name, offsets, sizes)."""
    notes: list[str] = []
    offsets = [0] * pp_size
    for stage_no in range(1, pp_size):
        stage = [s for s in shards if s.pp == stage_no - 1 and s.tp == 0][0]
        layers = {int(m.group(2)) for n in stage.tensors for m in [_LAYER.search(n)] if m}
        offsets[stage_no] = offsets[stage_no - 1] + len(layers)
    etp = _expert_tp(shards[0].args, tp_size)
    if etp not in (1, tp_size):
        raise UnsupportedFormatError(f"expert_tensor_parallel_size {etp} with tensor_model_parallel_size {tp_size}: "
                                     "paramscope merges expert weights split over 1 or all tensor-parallel ranks", where=str(folder))  # fmt: skip
    pieces: dict[str, list[tuple[Shard, str, tuple[int, ...], tuple[int, ...]]]] = {}
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
        by_tp: dict[int, tuple[Shard, str, tuple[int, ...], tuple[int, ...]]] = {}
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


def _expert_tp(args: dict[str, Any], tp_size: int) -> int:
    """Over how many tensor-parallel ranks expert weights are split: ``expert_tensor_parallel_size``, default the TP size."""
    etp = args.get("expert_tensor_parallel_size")
    return etp if isinstance(etp, int) and etp > 0 else tp_size


def _local_experts(shard: Shard, folder: Path) -> dict[str, int]:
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
    folder, shards, tp_size, pp_size = safe_load(source)
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
        experts_group = ep_size * _expert_tp(args, tp_size)
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
    anatomy = anatomy_from_flat(flat, name=folder.parent.name if ITER_DIR.match(folder.name) else folder.name,
                                framework="megatron", source=str(folder), metadata=meta, notes=notes,
                                tied=tied, tie_reason=_TIE_REASON)  # fmt: skip
    optimizer = tuple(Tensor(name, t.shape, t.dtype, Role.BUFFER, False, "", None, "optimizer state of this rank; not part of the model")
                      for s in sorted(shards, key=lambda s: (s.pp, s.ep, s.tp)) for name, t in s.optimizer)  # fmt: skip
    extras = (TensorGroup("optimizer", optimizer, note="each rank file's optimizer state as stored"),) if optimizer else ()
    return anatomy.with_(extras=extras, metadata=MappingProxyType(dict(anatomy.metadata)))


_TIE_REASON = "untie_embeddings_and_output_weights: false"


def _tied(args: dict[str, Any], flat: list[FlatTensor], pp_size: int) -> dict[str, str]:
    """The output layer's copy of the word embeddings on the last stage, when ``args`` tie them."""
    pairs = (("output_layer.weight", "embedding.word_embeddings.weight"),)
    if pp_size < 2 or args.get("untie_embeddings_and_output_weights") is not False:
        return {}
    shapes = {f.name: f.shape for f in flat}
    return {alias: target for alias, target in pairs if alias in shapes and target in shapes and shapes[alias] == shapes[target]}


def rank_layout(source: Any, world_sizes: Iterable[int] = ()) -> RankLayout:
    """Per (tensor, pipeline) rank: the slices of the global tensors its file holds."""
    folder, shards, tp_size, pp_size = safe_load(source)
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
