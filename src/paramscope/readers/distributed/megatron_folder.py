"""Megatron-LM checkpoint folders: finding the rank files and reading their pickles as data.

:mod:`.megatron` describes the layout and merges the shards; this module finds the iteration
folder (``latest_checkpointed_iteration.txt``), lists the ``mp_rank_<tp>[_<pp>][_<ep>]`` folders,
reads each ``model_optim_rng.pt`` (and ``distrib_optim.pt``) with the few globals Megatron's
files name kept as inert records, tells pipeline from expert ranks by ``args``, and checks that
no rank's folder is missing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.files import folder_member, read_pointer
from paramscope.readers.distributed.records import MALFORMED, ClassName, Record
from paramscope.readers.distributed.torch_file import load_torch_file, tensors_in
from paramscope.readers.torch.tensor_pickle import TensorRef, TorchPickleRules

__all__ = ["MegatronPickleRules", "Shard", "iteration_folder", "rank_dirs", "load_folder", "safe_load"]

RANK_DIR = re.compile(r"^mp_rank_(\d{2})(?:_(\d{3}))?(?:_(\d{3}))?$")
ITER_DIR = re.compile(r"^(iter_\d{7}|release)$")
MODEL_FILE = "model_optim_rng.pt"
#: The distributed optimizer's state, beside the model file (``get_distributed_optimizer_checkpoint_name``).
DISTRIB_FILE = "distrib_optim.pt"
#: Globals besides torch's that Megatron's files name, each kept as an inert record.
EXTRA_GLOBALS = {
    ("argparse", "Namespace"), ("io", "BytesIO"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    # Protocol 2 (torch.save's) has no bytes opcode: numpy's raw bytes arrive as _codecs.encode(text, "latin1").
    ("_codecs", "encode"),
}  # fmt: skip


class MegatronPickleRules(TorchPickleRules):
    def resolve(self, module: str, name: str, offset: int) -> Any:
        if (module, name) in EXTRA_GLOBALS:
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


_MAX_TRACKER = 64


def iteration_folder(source: Any) -> Path | None:
    """The folder holding the rank folders: ``source`` itself, or the iteration its tracker file names."""
    if not isinstance(source, (str, os.PathLike)) or not os.path.isdir(source):
        return None
    root = Path(source)
    tracker = root / "latest_checkpointed_iteration.txt"
    if os.path.isfile(tracker):
        text = read_pointer(tracker, _MAX_TRACKER, "ascii")
        if text is None:
            return None
        name = "release" if text == "release" else f"iter_{int(text):07d}" if text.isdigit() else ""
        return root / name if name and os.path.isdir(root / name) else None
    return root


def rank_dirs(folder: Path) -> list[tuple[int, tuple[int, ...], str]]:
    """(tensor rank, the folder name's other numbers, name): pipeline and/or expert rank, read with ``args``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for n in names:
        m = RANK_DIR.match(n)
        if m and os.path.isfile(folder / n / MODEL_FILE):
            out.append((int(m.group(1)), tuple(int(g) for g in m.groups()[1:] if g is not None), n))
    return sorted(out)


def pp_ep(rest: tuple[int, ...], pp_declared: Any, ep_declared: Any) -> tuple[int, int]:
    """The pipeline and expert rank a folder name's numbers stand for (``get_checkpoint_name``)."""
    if len(rest) == 2:
        return rest[0], rest[1]
    if len(rest) == 1:
        expert_only = isinstance(ep_declared, int) and ep_declared > 1 and (not isinstance(pp_declared, int) or pp_declared == 1)
        return (0, rest[0]) if expert_only else (rest[0], 0)
    return 0, 0


@dataclass
class Shard:
    tp: int
    pp: int
    path: str
    tensors: dict[str, TensorRef]
    args: dict[str, Any] = field(default_factory=dict)
    iteration: Any = None
    ep: int = 0
    optimizer: list[tuple[str, TensorRef]] = field(default_factory=list)  # (file:path, tensor)
    files: list[str] = field(default_factory=list)  # besides model_optim_rng.pt: distrib_optim.pt


def load_folder(source: Any) -> tuple[Path, list[Shard], int, int]:
    folder = iteration_folder(source)
    if folder is None:
        raise CorruptFileError("not a Megatron-LM checkpoint folder", where=os.fspath(source))
    shards = []
    dirs = rank_dirs(folder)
    if len({len(rest) for _, rest, _ in dirs}) > 1:
        raise CorruptFileError(f"the rank folders mix naming schemes: {sorted(n for *_, n in dirs)[:4]}", where=str(folder))
    for tp, rest, name in dirs:
        path = folder_member(folder, f"{name}/{MODEL_FILE}", what="rank file")  # a rank folder or file linked out is refused
        value = load_torch_file(path, MegatronPickleRules(str(folder / name / MODEL_FILE)))
        if not isinstance(value, dict) or not isinstance(value.get("model"), dict):
            raise CorruptFileError("no 'model' state dict: not a Megatron-LM checkpoint file", where=str(folder / name / MODEL_FILE))
        args = value.get("args")
        fields = args.state if isinstance(args, Record) and isinstance(args.state, dict) else {}
        shard = Shard(tp, 0, f"{name}/{MODEL_FILE}", dict(tensors_in(value["model"], lists=False)), fields, value.get("iteration"))
        shard.optimizer = [(f"{name}/{MODEL_FILE}:optimizer.{k}", t) for k, t in tensors_in(value.get("optimizer"))]
        if os.path.lexists(folder / name / DISTRIB_FILE):  # the distributed optimizer's state of this (tp, pp, ep) rank
            distrib = folder_member(folder, f"{name}/{DISTRIB_FILE}", what="distributed optimizer file")
            state = load_torch_file(distrib, MegatronPickleRules(str(folder / name / DISTRIB_FILE)))
            shard.optimizer += [(f"{name}/{DISTRIB_FILE}:{k}", t) for k, t in tensors_in(state)]
            shard.files.append(f"{name}/{DISTRIB_FILE}")
        shards.append(shard)
    declared = shards[0].args
    for shard, (_, rest, _) in zip(shards, dirs):
        shard.pp, shard.ep = pp_ep(rest, declared.get("pipeline_model_parallel_size"), declared.get("expert_model_parallel_size"))
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


def safe_load(source: Any) -> tuple[Path, list[Shard], int, int]:
    try:
        return load_folder(source)
    except MALFORMED as e:
        raise CorruptFileError(f"malformed Megatron-LM checkpoint ({type(e).__name__}: {str(e)[:200]})", where=os.fspath(source)) from None
