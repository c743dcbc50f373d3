"""A real DeepSpeed job for the tests: two gloo processes on 127.0.0.1 train one step and save.

DeepSpeed runs here on its CPU accelerator. Its communication backend would first JIT-compile a
shared-memory op (``deepspeed.comm.torch.build_shm_op``), minutes on a small machine and of no
use with gloo, so the job skips that build; everything else is DeepSpeed's own engine:
``deepspeed.initialize`` with the ZeRO stages asked for and ``engine.save_checkpoint``, and the same
for a model with a tied head and frozen parameters at stages 1, 2 and 3, and for a model with one
of DeepSpeed's MoE layers, its experts spread over the two ranks, at stages 1 and 2.
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


def moe_model(ep_size: int) -> object:
    """An embedding, one DeepSpeed MoE layer of 4 linear experts spread over ``ep_size`` ranks, and a head."""
    import torch
    from deepspeed.moe.layer import MoE

    torch.manual_seed(0)

    class MoEModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(50, 16)
            self.moe = MoE(hidden_size=16, expert=torch.nn.Linear(16, 16), num_experts=4, ep_size=ep_size, k=1)
            self.head = torch.nn.Linear(16, 50)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.moe(self.embed(x))[0])  # type: ignore[no-any-return]

    return MoEModel()


def _moe_oracle(model: object, path: Path, rank: int) -> None:
    """What the live MoE model holds over all ranks: every expert once (each rank holds its own), the rest once."""
    import json

    import torch
    import torch.distributed as dist
    from deepspeed.utils import groups

    moe = model.moe.deepspeed_moe  # type: ignore[attr-defined]
    experts = [p for n, p in model.named_parameters() if ".experts." in n]  # type: ignore[attr-defined]
    dense = sum(p.numel() for n, p in model.named_parameters() if ".experts." not in n)  # type: ignore[attr-defined]
    ep_rank = groups._get_expert_parallel_rank(moe.ep_group_name)
    local = torch.tensor([sum(p.numel() for p in experts)])
    ids = torch.zeros(dist.get_world_size(), moe.num_local_experts, dtype=torch.long)
    ids[rank] = torch.arange(moe.num_local_experts) + ep_rank * moe.num_local_experts
    saves = torch.zeros(dist.get_world_size(), dtype=torch.long)
    saves[rank] = int(groups._get_expert_data_parallel_rank(moe.ep_group_name) == 0)
    for t in (local, ids, saves):
        dist.all_reduce(t)  # each expert-parallel group holds every expert once; there are world / ep of them
    groups_count = dist.get_world_size() // groups._get_expert_parallel_world_size(moe.ep_group_name)
    if rank == 0:
        saved = {r: ids[r].tolist() for r in range(dist.get_world_size()) if saves[r]}
        path.write_text(json.dumps({"params": dense + int(local) // groups_count, "experts_saved_by_rank": saved}))


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
    from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer

    for stage in (1, 2):  # DeepSpeed's own MoE layer runs with ZeRO 1 and 2 only
        model = moe_model(ep_size=world)  # type: ignore[assignment]
        groups = split_params_into_different_moe_groups_for_optimizer({"params": list(model.parameters()), "name": "dense"})
        config = {"train_batch_size": 2 * world, "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True}
        engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(groups, lr=1e-3), config=config)
        engine.backward(engine(torch.randint(0, 50, (2, 5))).sum())
        engine.step()
        engine.save_checkpoint(os.path.join(out, f"moe_zero{stage}"))
        _moe_oracle(model, Path(out) / f"moe_zero{stage}.json", rank)
    # Every group (the MoE layer adds its expert groups) torn down before the process exits: gloo
    # threads still alive at exit end the process in std::terminate ("without an active exception").
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


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
    """Write ``out/zero<stage>/`` with DeepSpeed's engine for each stage, ``out/tied_frozen_zero{1,2,3}/``, and
    ``out/moe_zero{1,2}/`` beside ``out/moe_zero{1,2}.json`` (the live model's global count and who saved which expert)."""
    import torch.multiprocessing as mp

    mp.spawn(_job, args=(world, _free_port(), str(out), stages), nprocs=world, join=True)
