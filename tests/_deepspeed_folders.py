"""DeepSpeed ZeRO checkpoint folders built file by file with the layout ``engine.save_checkpoint`` writes.

Beside the checkpoints DeepSpeed's engine saves (``_deepspeed_jobs``: ZeRO 2 and 3), the tests
build folders themselves, for ZeRO 1 and for the damaged variants, from DeepSpeed's layout
(``deepspeed/runtime/engine.py`` ``_save_checkpoint``/``_save_zero_checkpoint``,
``deepspeed/runtime/zero/stage_1_and_2.py`` and ``stage3.py`` ``state_dict``), with DeepSpeed's
own classes in the pickles (``ZeroStageEnum``, ``LossScaler``), and the real parameter values
in the flat partitions: DeepSpeed's own ``zero_to_fp32.py`` then rebuilds the model from them,
which is the oracle the tests compare with.
"""

from __future__ import annotations

from collections import OrderedDict
from math import ceil
from pathlib import Path
from typing import Any


def write_zero_folder(root: Path, model: Any, stage: int, world: int = 2, tag: str = "global_step1") -> Path:
    """Write ``root/latest`` and ``root/<tag>/`` for ``model`` at ZeRO ``stage`` over ``world`` ranks."""
    import deepspeed
    import torch
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    folder = root / tag
    folder.mkdir(parents=True)
    (root / "latest").write_text(tag)
    config = {"train_batch_size": 2 * world, "zero_optimization": {"stage": stage}, "bf16": {"enabled": False}}
    params = [(n, p.detach().float()) for n, p in model.named_parameters()]
    buffers = [n for n, _ in model.named_buffers()]
    shapes = [OrderedDict((n, p.shape) for n, p in params)]
    common = dict(
        buffer_names=buffers, optimizer=None, param_shapes=shapes, frozen_param_shapes=None, shared_params={},
        frozen_param_fragments=None, lr_scheduler=None, data_sampler=None, random_ltd=None,
        sparse_tensor_module_names=set(), skipped_steps=0, global_steps=1, global_samples=2 * world,
        dp_world_size=world, mp_world_size=1, ds_config=config, ds_version=deepspeed.__version__,
    )  # fmt: skip
    if stage == 3:
        # Each parameter is split into ceil(numel / world) pieces, the last padded with zeros.
        pieces: list[list[torch.Tensor]] = [[] for _ in range(world)]
        for _, p in params:
            part = ceil(p.numel() / world)
            flat = torch.cat([p.flatten(), torch.zeros(part * world - p.numel())])
            for r in range(world):
                pieces[r].append(flat[r * part : (r + 1) * part])
        flats = [torch.cat(x) for x in pieces]
        for r in range(world):
            module = {n: torch.empty(0) for n, _ in params}
            torch.save(dict(module=module, **common), folder / f"zero_pp_rank_{r}_mp_rank_00_model_states.pt")
            inner = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(flats[r]),
                                   "exp_avg_sq": torch.zeros_like(flats[r])}},
                     "param_groups": [{"lr": 1e-3, "params": [0]}]}  # fmt: skip
            osd = dict(zero_stage=ZeroStageEnum.weights, loss_scaler=LossScaler(1), dynamic_loss_scale=False,
                       overflow=False, partition_count=world, optimizer_state_dict=inner, fp32_flat_groups=[flats[r]])  # fmt: skip
            torch.save(dict(optimizer_state_dict=osd, ds_config=config, ds_version=deepspeed.__version__),
                       folder / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt")  # fmt: skip
        return folder
    # ZeRO 1/2: one flat group padded to a multiple of 2 x world, split evenly; padding dropped on save.
    flat = torch.cat([p.flatten() for _, p in params])
    aligned = 2 * world * ceil(flat.numel() / (2 * world))
    part = aligned // world
    module = OrderedDict((n, p) for n, p in model.state_dict().items())
    torch.save(dict(module=module, **common), folder / "mp_rank_00_model_states.pt")
    for r in range(world):
        mine = flat[r * part : min((r + 1) * part, flat.numel())].clone()
        padding = part - mine.numel()
        base = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(mine), "exp_avg_sq": torch.zeros_like(mine)}},
                "param_groups": [{"lr": 1e-3, "params": [0]}]}  # fmt: skip
        osd = dict(
            loss_scaler=LossScaler(1), dynamic_loss_scale=False, overflow=False, clip_grad=0.0,
            base_optimizer_state=base, single_partition_of_fp32_groups=[mine],
            zero_stage=ZeroStageEnum.gradients if stage == 2 else ZeroStageEnum.optimizer_states,
            group_paddings=[padding], partition_count=[world], ds_version=deepspeed.__version__,
        )  # fmt: skip
        torch.save(dict(optimizer_state_dict=osd, ds_config=config, ds_version=deepspeed.__version__),
                   folder / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt")  # fmt: skip
    return folder
