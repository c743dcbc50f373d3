"""Real distributed jobs for the tests: two gloo processes on 127.0.0.1 writing real checkpoints.

:func:`write_checkpoints` spawns a 2-rank job that saves, with ``torch.distributed.checkpoint``:

- ``plain/``: a replicated model's state dict;
- ``fsdp2/``: an FSDP2 ``fully_shard`` model and its Adam state from ``get_state_dict``, after one
  step, so the optimizer moments exist and every parameter is a sharded DTensor;
- ``fsdp1/rank<r>.pt``: an FSDP1 model's ``SHARDED_STATE_DICT`` (ShardedTensors) saved with
  ``torch.save`` on each rank, and ``fsdp1_placements.json``: torch's own shard metadata;
- ``hf_fsdp2/``, ``hf_split/``, ``hf_plain/``: the FSDP2 model, the same split over two files per
  rank, and the replicated model, saved with ``HuggingFaceStorageWriter(save_distributed=True)``:
  one ``shard-<rank + 1>-model-<i>-of-<n>.safetensors`` per rank and file, no ``.metadata``.

Each job also writes ``expected.json`` from the unsharded model (``sum(p.numel())``, names,
shapes, dtypes), the oracle the tests compare with.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def small_model() -> object:
    """A small transformer-like block: embedding, attention projections, a norm, an MLP, a head."""
    import torch

    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(50, 16)
            self.q_proj = torch.nn.Linear(16, 16, bias=False)
            self.norm = torch.nn.LayerNorm(16)
            self.up = torch.nn.Linear(16, 36)
            self.down = torch.nn.Linear(36, 16)
            self.head = torch.nn.Linear(16, 50, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.norm(self.q_proj(self.embed(x)))
            return self.head(h + self.down(torch.relu(self.up(h))))

    return Block()


def _job(rank: int, world: int, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        plain = small_model()
        dcp.save(plain.state_dict(), checkpoint_id=os.path.join(out, "plain"))  # type: ignore[attr-defined]
        model = small_model()
        fully_shard(model)  # type: ignore[arg-type]
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # type: ignore[attr-defined]
        model(torch.randint(0, 50, (2, 5))).sum().backward()  # type: ignore[operator]
        opt.step()
        msd, osd = get_state_dict(model, opt)  # type: ignore[arg-type]
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=os.path.join(out, "fsdp2"))
        _hf_rank_files(model, plain, out)
        _fsdp1_rank_file(rank, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _hf_rank_files(sharded: Any, plain: Any, out: str) -> None:
    """The FSDP2 and the replicated model saved as safetensors rank files (torch 2.8 and later)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    def save(state: dict[str, Any], name: str, files: dict[str, int] | None = None) -> None:
        writer = HuggingFaceStorageWriter(path=os.path.join(out, name), save_distributed=True, fqn_to_index_mapping=files)
        dcp.save(state, storage_writer=writer)

    state = sharded.state_dict()
    save(state, "hf_fsdp2")
    save(state, "hf_split", {k: 1 + (i % 2) for i, k in enumerate(state)})
    save(plain.state_dict(), "hf_plain")


def _fsdp1_rank_file(rank: int, out: str) -> None:
    """FSDP1's SHARDED_STATE_DICT saved with torch.save on each rank, and torch's own placement of each shard."""
    import torch
    from torch.distributed.fsdp import FullyShardedDataParallel, StateDictType

    model = FullyShardedDataParallel(small_model(), device_id=torch.device("cpu"))  # type: ignore[arg-type]
    with FullyShardedDataParallel.state_dict_type(model, StateDictType.SHARDED_STATE_DICT):
        sd = model.state_dict()
    folder = os.path.join(out, "fsdp1")
    os.makedirs(folder, exist_ok=True)
    torch.save(sd, os.path.join(folder, f"rank{rank}.pt"))
    if rank == 0:
        placements = {
            name: [[list(m.shard_offsets), list(m.shard_sizes), m.placement.rank()] for m in t.metadata().shards_metadata]
            for name, t in sd.items()
        }
        with open(os.path.join(out, "fsdp1_placements.json"), "w") as f:
            json.dump(placements, f)


def write_checkpoints(out: Path, world: int = 2) -> dict[str, object]:
    """Run the job and return the oracle from the unsharded model."""
    import torch
    import torch.multiprocessing as mp

    mp.spawn(_job, args=(world, _free_port(), str(out)), nprocs=world, join=True)
    model = small_model()
    expected = {
        "n_params": sum(p.numel() for p in model.parameters()),  # type: ignore[attr-defined]
        "tensors": {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()},  # type: ignore[attr-defined]
        "torch": torch.__version__,
    }
    (out / "expected.json").write_text(json.dumps(expected))
    return expected
