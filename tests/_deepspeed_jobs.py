"""A real DeepSpeed job for the tests: two gloo processes on 127.0.0.1 train one step and save.

DeepSpeed runs here on its CPU accelerator. Its communication backend would first JIT-compile a
shared-memory op (``deepspeed.comm.torch.build_shm_op``), minutes on a small machine and of no
use with gloo, so the job skips that build; everything else is DeepSpeed's own engine:
``deepspeed.initialize`` with the ZeRO stages asked for and ``engine.save_checkpoint``, and the same
for a model with a tied head and frozen parameters at stages 1, 2 and 3.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _dcp_jobs import _free_port, small_model


def tied_frozen_model() -> object:
    """``small_model`` with its head tied to the embedding and two frozen parameters."""
    model = small_model()
    model.head.weight = model.embed.weight  # type: ignore[attr-defined]
    model.q_proj.weight.requires_grad_(False)  # type: ignore[attr-defined]
    model.norm.bias.requires_grad_(False)  # type: ignore[attr-defined]
    return model


def _job(rank: int, world: int, port: int, out: str, stages: tuple[int, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_SIZE=str(world))  # fmt: skip
    import importlib

    import deepspeed
    import torch

    sys.modules["deepspeed.comm.torch"] = importlib.import_module("deepspeed.comm.torch")
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None  # type: ignore[attr-defined]
    deepspeed.init_distributed(dist_backend="gloo")
    runs = [(f"zero{stage}", small_model, stage) for stage in stages]
    runs += [(f"tied_frozen_zero{stage}", tied_frozen_model, stage) for stage in (1, 2, 3)]
    for name, build, stage in runs:
        model: torch.nn.Module = build()  # type: ignore[assignment]
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        zero: dict[str, object] = {"stage": stage}
        if stage == 3:
            zero["stage3_param_persistence_threshold"] = 0  # partition even this small model's parameters
        config = {"train_batch_size": 2 * world, "zero_optimization": zero, "zero_allow_untested_optimizer": True}
        engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=config)
        engine.backward(engine(torch.randint(0, 50, (2, 5))).sum())
        engine.step()
        engine.save_checkpoint(os.path.join(out, name))
        if name == "zero3" and rank == 0:
            _count_live(engine.module, Path(out) / "zero3_live.json")


def _count_live(module: object, path: Path) -> None:
    """paramscope's count of the live ZeRO-3 module, beside what the partitioned parameters say."""
    import json

    from paramscope.analysis.totals import totals
    from paramscope.readers.distributed import live

    anatomy = live.read(module)
    params = list(module.parameters())  # type: ignore[attr-defined]
    path.write_text(json.dumps({
        "paramscope": totals(anatomy).params,
        "sharding": anatomy.metadata.get("sharding"),
        "local_numel": sum(p.numel() for p in params),
        "ds_numel": sum(p.ds_numel for p in params),
    }))  # fmt: skip


def save_zero_checkpoints(out: Path, stages: tuple[int, ...] = (2, 3), world: int = 2) -> None:
    """Write ``out/zero<stage>/`` with DeepSpeed's engine for each stage, and ``out/tied_frozen_zero{1,2,3}/``."""
    import torch.multiprocessing as mp

    mp.spawn(_job, args=(world, _free_port(), str(out), stages), nprocs=world, join=True)
