"""Live sharded PyTorch modules counted globally from inside the job, without a collective.

Inside a sharded job each rank holds a piece of every parameter, and three wrappers hide the
global model differently:

- **DTensor** (FSDP2 ``fully_shard``, tensor parallel ``parallelize_module``): the parameter's
  ``shape`` is already global; its ``placements`` (``Shard(0)``, ``Replicate()``, ...) over its
  ``device_mesh`` say how it is split, and ``to_local()`` is this rank's piece.
- **FSDP1 ``FlatParameter``** (``use_orig_params=False``): one 1-D shard of the concatenated
  parameters of a wrapped module; ``_fqns``, ``_shapes`` and ``_numels`` name the originals.
- **DeepSpeed ZeRO-3**: each parameter is emptied to shape ``(0,)`` on every rank and carries
  its real shape in ``ds_shape`` (and ``ds_numel``).

This reader reads the module like :mod:`paramscope.readers.torch.module`, then puts the global
tensors back: DTensors keep their global shape and say their placements, each FlatParameter is
replaced by the parameters it packs, ZeRO-3 parameters get their ``ds_shape``. Everything it
uses is an attribute of the local objects: no process group is touched.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from math import prod
from types import MappingProxyType
from typing import Any

from paramscope.core.anatomy import Anatomy, Layer, Role, Tensor
from paramscope.core.dtypes import canonical_dtype
from paramscope.readers.torch import module as torch_module

__all__ = ["can_read", "read", "ShardedParameter", "sharded_parameters"]


@dataclass(frozen=True, slots=True)
class ShardedParameter:
    """How one parameter of a live model is split over ranks.

    Attributes:
        name: its dotted name in the model.
        kind: ``"dtensor"``, ``"fsdp1"`` or ``"zero3"``.
        shape: the global shape.
        local_shape: the piece this rank holds.
        placements: per mesh dimension, ``Shard(0)``/``Replicate()``/... (DTensor only).
        mesh_shape: ranks along each mesh dimension (DTensor), or ``(world_size,)``.
        mesh_dims: the mesh dimensions' names, when given.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    local_shape: tuple[int, ...]
    placements: tuple[str, ...] = ()
    mesh_shape: tuple[int, ...] = ()
    mesh_dims: tuple[str, ...] = ()


def _dtensor_cls() -> Any:
    mod = sys.modules.get("torch.distributed.tensor")
    return getattr(mod, "DTensor", None) if mod is not None else None


def _kind(p: Any, dtensor: Any) -> str:
    if dtensor is not None and isinstance(p, dtensor):
        return "dtensor"
    if hasattr(p, "_fqns") and hasattr(p, "_shapes") and hasattr(p, "_numels"):
        return "fsdp1"
    if hasattr(p, "ds_shape"):
        return "zero3"
    return ""


def can_read(source: Any) -> bool:
    """Whether ``source`` is a torch module with at least one sharded parameter (never imports torch)."""
    if not torch_module.can_read(source):
        return False
    dtensor = _dtensor_cls()
    try:
        return any(_kind(p, dtensor) for p in source.parameters())
    except Exception:  # noqa: BLE001 - a module whose parameters() fails is not ours to claim
        return False


def sharded_parameters(module: Any) -> tuple[ShardedParameter, ...]:
    """Every sharded parameter of a live module, with its global and local shapes.

    Example:
        >>> import torch
        >>> sharded_parameters(torch.nn.Linear(2, 2))  # a module that is not sharded
        ()
    """
    dtensor = _dtensor_cls()
    out: list[ShardedParameter] = []
    world: tuple[int, ...] | None = None
    for name, p in module.named_parameters(remove_duplicate=True):
        kind = _kind(p, dtensor)
        if kind == "dtensor":
            mesh = p.device_mesh
            out.append(ShardedParameter(
                name, kind, tuple(int(d) for d in p.shape), tuple(int(d) for d in p.to_local().shape),
                tuple(repr(pl) for pl in p.placements), tuple(int(d) for d in mesh.mesh.shape),
                tuple(mesh.mesh_dim_names or ()),
            ))  # fmt: skip
        elif kind == "fsdp1":
            world = _fsdp1_world(module) if world is None else world
            for fqn, shape in zip(p._fqns, p._shapes):
                full = f"{name.rsplit('.', 1)[0]}.{fqn}" if "." in name else fqn
                out.append(ShardedParameter(full, kind, tuple(int(d) for d in shape), (), (), world))
        elif kind == "zero3":
            out.append(ShardedParameter(name, kind, tuple(int(d) for d in p.ds_shape), tuple(int(d) for d in p.shape)))
    return tuple(out)


def _fsdp1_world(module: Any) -> tuple[int, ...]:
    """The FSDP1 wrappers' world size: an attribute each wrapper keeps, no collective needed."""
    for m in module.modules():
        size = getattr(m, "world_size", None)
        if type(m).__name__ == "FullyShardedDataParallel" and isinstance(size, int):
            return (size,)
    return ()


def read(source: Any, **options: Any) -> Anatomy:
    """Read a live sharded module: global names, shapes and counts, and how each parameter is split.

    Example:
        >>> import torch
        >>> can_read(torch.nn.Linear(2, 2))  # not sharded: the plain torch reader takes it
        False
    """
    anatomy = torch_module.read(source, **options)
    dtensor = _dtensor_cls()
    by_name = {s.name: s for s in sharded_parameters(source)}
    flat: dict[str, tuple[Any, str]] = {}  # layer path owning a FlatParameter -> (param, its name)
    for name, p in source.named_parameters(remove_duplicate=True):
        if _kind(p, dtensor) == "fsdp1":
            owner, _, attr = name.rpartition(".")
            flat[owner] = (p, attr)
    layers = tuple(_fix(layer, by_name, flat) for layer in anatomy.layers)
    meta = dict(anatomy.metadata)
    kinds = sorted({s.kind for s in by_name.values()})
    meta["sharded_parameters"] = str(len(by_name))
    meta["sharding"] = ", ".join(kinds)
    meshes = {s.mesh_shape for s in by_name.values() if s.mesh_shape}
    if meshes:
        meta["world_size"] = str(max(prod(m) for m in meshes))
    local = sum(prod(s.local_shape) for s in by_name.values() if s.kind != "fsdp1")
    local += sum(int(p.numel()) for p, _ in flat.values())
    notes = [*anatomy.notes, (
        f"{len(by_name)} parameters are sharded ({', '.join(kinds)}); counts are of the global tensors, read from "
        f"each parameter's own metadata without a collective. This rank holds {local:,} of their elements."
    )]  # fmt: skip
    return anatomy.with_(layers=layers, metadata=MappingProxyType(meta), notes=tuple(notes))


def _fix(layer: Layer, by_name: dict[str, ShardedParameter], flat: dict[str, tuple[Any, str]]) -> Layer:
    tensors = []
    for t in layer.tensors:
        full = f"{layer.path}.{t.name}" if layer.path else t.name
        s = by_name.get(full)
        if layer.path in flat and t.name == flat[layer.path][1]:
            continue  # replaced below by the parameters it packs
        if s is not None and s.kind == "dtensor":
            mesh = " x ".join(f"{n}={d}" if n else str(d) for n, d in zip(s.mesh_dims or ("",) * len(s.mesh_shape), s.mesh_shape))
            why = _then(t.why, f"DTensor over a {mesh} mesh, placements {', '.join(s.placements)}; this rank holds {list(s.local_shape)}.")
            t = Tensor(t.name, s.shape, t.dtype, t.role, t.is_param, t.key, t.formula, why)
        elif s is not None and s.kind == "zero3":
            why = _then(t.why, f"ZeRO-3 partitioned: shape from ds_shape; this rank holds {list(s.local_shape)}.")
            t = Tensor(t.name, s.shape, t.dtype, t.role, t.is_param, t.key, t.formula, why)
        tensors.append(t)
    children = list(layer.children)
    if layer.path in flat:
        children = _unflatten(layer, children, *flat[layer.path])
    return layer.with_(tensors=tuple(tensors), children=tuple(_fix(c, by_name, flat) for c in children))


def _then(why: str, more: str) -> str:
    return f"{why.rstrip('.')}. {more}" if why else more


def _unflatten(owner: Layer, children: list[Layer], p: Any, attr: str) -> list[Layer]:
    """Put the parameters a FlatParameter packs back on the layers they belong to."""
    role = Role.TRAINABLE if p.requires_grad else Role.FROZEN
    dtype = canonical_dtype(str(p.dtype))
    adds: dict[str, list[Tensor]] = {}
    for fqn, shape in zip(p._fqns, p._shapes):
        module, _, name = fqn.rpartition(".")
        why = f"packed in the FSDP1 FlatParameter {owner.path}.{attr}; shape from its _shapes."
        adds.setdefault(module, []).append(Tensor(name, tuple(int(d) for d in shape), dtype, role, True, f"{owner.path}.{fqn}", None, why))

    def put(layer: Layer, rel: str) -> Layer:
        extra = tuple(adds.pop(rel, ()))
        kids = tuple(put(c, f"{rel}.{c.name}" if rel else c.name) for c in layer.children)
        if not extra:
            return layer.with_(children=kids)
        # The rule saw the emptied views FSDP1 left on the module: its formula counted nothing.
        return layer.with_(tensors=layer.tensors + extra, children=kids, formula=None)

    out = [put(c, c.name) for c in children]
    if adds:  # modules the tree does not show: keep their tensors on the owner, under full names
        leftovers = tuple(Tensor(f"{m}.{t.name}" if m else t.name, t.shape, t.dtype, t.role, True, t.key, None, t.why)
                          for m, ts in adds.items() for t in ts)  # fmt: skip
        out.insert(0, Layer(name="(flat)", type="FlatParameter", path=f"{owner.path}.(flat)", tensors=leftovers))
    return out
