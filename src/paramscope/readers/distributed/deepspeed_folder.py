"""DeepSpeed ZeRO checkpoint folders: finding their files and reading their pickles as data.

The folder layout (``deepspeed/runtime/engine.py``, ``deepspeed/checkpoint/constants.py``) is
described in :mod:`.deepspeed`; this module finds the tag folder (``latest``), lists the model
states, optimizer and expert files, reads each with DeepSpeed's classes kept as inert records, and
checks what the optimizer files say about the ZeRO stage and the ranks. :mod:`.deepspeed` builds
the model and the layout from it; :mod:`.deepspeed_universal` reuses the pieces.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

from paramscope.core.errors import CorruptFileError, UnsafeFileError
from paramscope.core.files import folder_member, read_pointer
from paramscope.readers.distributed.records import MALFORMED, ClassName, Record
from paramscope.readers.distributed.torch_file import load_torch_file, tensors_in
from paramscope.readers.torch.tensor_pickle import TensorRef, TorchPickleRules

__all__ = ["DeepSpeedPickleRules", "Folder", "Rank", "load_folder", "safe_load", "tag_folder", "list_names"]

OPTIM_FILE = re.compile(r"^(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_(\d+)_?optim_states\.pt$")
MODEL_FILE = re.compile(r"^(?:zero_pp_rank_(\d+)_)?mp_rank_(\d+)_model_states\.pt$")
MAX_LATEST = 256
#: One expert of a DeepSpeed MoE layer, saved by the rank holding it (``engine._get_expert_ckpt_name``).
EXPERT_FILE = re.compile(r"^layer_(\d+)_expert_(\d+)_mp_rank_(\d+)_model_states\.pt$")
#: Where DeepSpeed's MoE layer numbers its experts (``engine._save_moe_checkpoint``'s ``moe_str_prefix``).
EXPERT_NAME = re.compile(r"^(.*\.deepspeed_moe\.experts\.deepspeed_experts\.)(\d+)(\..*)$")


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


def tag_folder(source: Any) -> Path | None:
    """The folder holding the rank files: ``source`` itself, or ``source/<tag from latest>``."""
    if not isinstance(source, (str, os.PathLike)) or not os.path.isdir(source):
        return None
    root = Path(source)
    latest = root / "latest"
    if os.path.isfile(latest):
        tag = read_pointer(latest, MAX_LATEST)
        if tag is None or not plain_name(tag):
            return None
        return root / tag if os.path.isdir(root / tag) else None
    return root


def plain_name(tag: str) -> bool:
    """Whether a tag read from a pointer file names a folder right here: no separator, no ``..``, no NUL.

    Example:
        >>> plain_name("global_step14"), plain_name("../x"), plain_name("")
        (True, False, False)
    """
    return bool(tag) and not any(c in tag for c in "/\\\0") and tag not in (".", "..")


def list_names(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


@dataclass
class Rank:
    rank: int
    file: str
    partitions: list[int]  # flat fp32 master elements per parameter group
    moments: list[tuple[str, tuple[int, ...], str]]  # (name, shape, dtype) of the inner optimizer's tensors


@dataclass
class Folder:
    folder: Path
    model_file: str
    model: dict[str, Any]
    stage: int
    world: int
    ranks: list[Rank]
    model_files: list[str]
    experts: list[tuple[str, int, int, dict[str, TensorRef]]] = field(default_factory=list)  # (file, layer, expert, tensors)


def load_folder(source: Any) -> Folder:
    folder = tag_folder(source)
    if folder is None:
        raise CorruptFileError("not a DeepSpeed checkpoint folder (its 'latest' names no tag folder)", where=os.fspath(source))
    names = list_names(folder)
    model_files = [n for n in names if MODEL_FILE.match(n)]
    first = next((n for n in model_files if n in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")), None)
    if first is None:
        raise CorruptFileError("no mp_rank_00 model states file", where=str(folder))
    model = load_torch_file(folder_member(folder, first, what="model states file"), DeepSpeedPickleRules(str(folder / first)))
    if not isinstance(model, dict) or "param_shapes" not in model:
        raise CorruptFileError("the model states file has no param_shapes: not a ZeRO checkpoint", where=str(folder / first))
    ranks: list[Rank] = []
    stages: set[int] = set()
    world = 0
    for n in names:
        m = OPTIM_FILE.match(n)
        if m is None or m.group(2) != "00":
            continue
        value = load_torch_file(folder_member(folder, n, what="optimizer file"), DeepSpeedPickleRules(str(folder / n)))
        osd = value.get("optimizer_state_dict") if isinstance(value, dict) else None
        if not isinstance(osd, dict) or "zero_stage" not in osd:
            raise CorruptFileError("no optimizer_state_dict with a zero_stage: not a ZeRO optimizer file", where=str(folder / n))
        stage = as_int(osd["zero_stage"], "zero_stage", folder / n)
        stages.add(stage)
        count = osd.get("partition_count")
        counts = count if isinstance(count, list) else [count]
        world = max(world, max(as_int(c, "partition_count", folder / n) for c in counts))
        key = "fp32_flat_groups" if stage == 3 else "single_partition_of_fp32_groups"
        groups = osd.get(key)
        if not isinstance(groups, list) or not all(isinstance(g, TensorRef) for g in groups):
            raise CorruptFileError(f"{key} is not a list of tensors", where=str(folder / n))
        inner = osd.get("optimizer_state_dict") if stage == 3 else osd.get("base_optimizer_state")
        moments = [(name, t.shape, t.dtype) for name, t in tensors_in(inner, "")]
        ranks.append(Rank(int(m.group(1)), n, [prod(g.shape) for g in groups], moments))
    if len(stages) != 1:
        raise CorruptFileError(f"the optimizer files disagree on the ZeRO stage ({sorted(stages)})", where=str(folder))
    stage = stages.pop()
    ranks.sort(key=lambda r: r.rank)
    if [r.rank for r in ranks] != list(range(world)):
        raise CorruptFileError(f"expected optimizer files for ranks 0..{world - 1} (partition_count {world}); found ranks "
                               f"{[r.rank for r in ranks]}: a rank's file is missing", where=str(folder))  # fmt: skip
    experts = []
    for n in names:
        m = EXPERT_FILE.match(n)
        if m is None or m.group(3) != "00":
            continue
        value = load_torch_file(folder_member(folder, n, what="expert file"), DeepSpeedPickleRules(str(folder / n)))
        if not isinstance(value, dict) or not value or not all(isinstance(k, str) and isinstance(t, TensorRef) for k, t in value.items()):
            raise CorruptFileError("an expert file holds something other than the expert's named tensors", where=str(folder / n))
        experts.append((n, int(m.group(1)), int(m.group(2)), value))
    return Folder(folder, first, model, stage, world, ranks, model_files, experts)


def as_int(value: Any, what: str, where: Path) -> int:
    if isinstance(value, Record) and len(value.args) == 1:
        value = value.args[0]  # ZeroStageEnum(2)
    if type(value) is not int or value < 0:
        raise CorruptFileError(f"{what} is {value!r}, not a count", where=str(where))
    return value


def shapes_of(value: Any, where: str) -> list[list[tuple[str, tuple[int, ...]]]]:
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


def config_dtype(config: Any) -> str:
    """The parameters' dtype from ``ds_config`` (``bf16``/``fp16`` ``enabled``), else float32."""
    if isinstance(config, dict):
        for key, name in (("bf16", "bfloat16"), ("bfloat16", "bfloat16"), ("fp16", "float16")):
            section = config.get(key)
            if isinstance(section, dict) and section.get("enabled") is True:
                return name
    return "float32"


def dtype_of(module: dict[str, Any], name: str, default: str) -> str:
    t = module.get(name)
    return t.dtype if isinstance(t, TensorRef) and count(t.shape) else default


def safe_load(source: Any) -> Folder:
    try:
        return load_folder(source)
    except MALFORMED as e:
        raise CorruptFileError(f"malformed DeepSpeed checkpoint ({type(e).__name__}: {str(e)[:200]})", where=os.fspath(source)) from None


def known(shape: tuple[int | None, ...] | None) -> tuple[int, ...]:
    """A shape this reader built from param_shapes or a stored tensor, typed as such: every dimension is known."""
    return tuple(d for d in shape or () if d is not None)


def count(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out
