"""Live sharded modules on PyTorch's fake process group (world size 8, CPU): counted globally.

The oracle is the unsharded model: ``sum(p.numel())`` and its state dict's names and shapes, and
torch's own DTensor attributes (``placements``, ``to_local()``) for what each rank holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
fake_pg = pytest.importorskip("torch.testing._internal.distributed.fake_pg")

import _dcp_jobs  # noqa: E402

from paramscope.analysis.totals import totals  # noqa: E402
from paramscope.readers import reader_for  # noqa: E402
from paramscope.readers.distributed import live  # noqa: E402


@pytest.fixture(scope="module")
def fake_world() -> Iterator[None]:
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("fake", rank=0, world_size=8, store=fake_pg.FakeStore())
    try:
        yield
    finally:
        dist.destroy_process_group()


def _unsharded() -> tuple[int, dict[str, tuple[int, ...]]]:
    model: Any = _dcp_jobs.small_model()
    return sum(p.numel() for p in model.parameters()), {k: tuple(v.shape) for k, v in model.named_parameters()}


def _shapes(anatomy: Any, strip: str = "") -> dict[str, tuple[int, ...]]:
    return {f"{la.path}.{t.name}".removeprefix(strip): t.shape for la in anatomy.walk() for t in la.tensors if t.is_param}


def test_fsdp2_fully_shard_is_counted_by_global_shapes(fake_world: None) -> None:
    from torch.distributed.fsdp import fully_shard

    n_params, shapes = _unsharded()
    model: Any = _dcp_jobs.small_model()
    fully_shard(model)
    assert reader_for(model) is live
    anatomy = live.read(model)
    assert totals(anatomy).params == n_params
    assert _shapes(anatomy) == shapes
    local = sum(p.to_local().numel() for p in model.parameters())
    assert local < n_params  # the pitfall this reader exists for: the local shards are a fraction
    assert f"This rank holds {local:,} of their elements" in anatomy.notes[-1]
    assert anatomy.metadata["world_size"] == "8"
    embed = anatomy.find("embed")
    assert embed is not None and "Shard(dim=0)" in embed.tensors[0].why


def test_tensor_parallel_and_fsdp_on_a_2d_mesh_show_each_placement(fake_world: None) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    n_params, shapes = _unsharded()
    mesh = init_device_mesh("cpu", (2, 4), mesh_dim_names=("dp", "tp"))
    model: Any = _dcp_jobs.small_model()
    parallelize_module(model, mesh["tp"], {"up": ColwiseParallel(), "down": RowwiseParallel()})
    fully_shard(model, mesh=mesh["dp"])
    anatomy = live.read(model)
    assert totals(anatomy).params == n_params
    assert _shapes(anatomy) == shapes
    by_name = {s.name: s for s in live.sharded_parameters(model)}
    for name, p in model.named_parameters():
        s = by_name[name]
        assert s.placements == tuple(repr(pl) for pl in p.placements)
        assert s.local_shape == tuple(p.to_local().shape)
        assert s.mesh_shape == (2, 4) or s.mesh_shape == (2,)
    down = anatomy.find("down")
    assert down is not None and "Shard(dim=1)" in down.tensors[0].why and "dp=2 x tp=4" in down.tensors[0].why


def test_fsdp1_flat_parameters_are_unflattened(fake_world: None) -> None:
    from torch.distributed.fsdp import FullyShardedDataParallel

    n_params, shapes = _unsharded()
    model = FullyShardedDataParallel(_dcp_jobs.small_model(), device_id=torch.device("cpu"))
    flat = sum(p.numel() for p in model.parameters())
    assert flat == -(-n_params // 8)  # one padded eighth of the flattened parameters
    anatomy = live.read(model)
    assert totals(anatomy).params == n_params
    assert _shapes(anatomy, "_fsdp_wrapped_module.") == shapes
    assert anatomy.metadata["sharding"] == "fsdp1"


def test_zero3_partitioned_parameters_use_ds_shape() -> None:
    # DeepSpeed ZeRO-3 empties each parameter to shape (0,) and keeps its shape in ds_shape
    # (deepspeed/runtime/zero/partition_parameters.py); DeepSpeed needs a GPU, so this mirrors it.
    n_params, shapes = _unsharded()
    model: Any = _dcp_jobs.small_model()
    for _, module in model.named_modules():
        for pname, p in [(k, v) for k, v in module._parameters.items() if v is not None]:
            empty = torch.nn.Parameter(torch.empty(0))
            empty.ds_shape = p.shape
            empty.ds_numel = p.numel()
            module._parameters[pname] = empty
    assert sum(p.numel() for p in model.parameters()) == 0
    anatomy = live.read(model)
    assert totals(anatomy).params == n_params
    assert _shapes(anatomy) == shapes
    assert anatomy.metadata["sharding"] == "zero3"
