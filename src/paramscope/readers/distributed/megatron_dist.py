"""Megatron-core ``torch_dist`` checkpoints: a DCP folder whose layers are stacked.

``megatron.core.dist_checkpointing.save`` (Megatron-LM's default ``--ckpt-format torch_dist``)
writes a Distributed Checkpoint (``.metadata``, ``__<rank>_<i>.distcp``) beside ``common.pt``
and ``metadata.json`` (``{"sharded_backend": "torch_dist", ...}``). Its transformer layers are
saved as one tensor per weight with the layer number as a leading axis
(``decoder.layers.self_attention.linear_qkv.weight`` of shape ``(num_layers, 3h, h)``: the
``prepend_axis_num`` of Megatron's ``ShardedTensor``), and a mixture-of-experts layer's experts
as a second axis (``decoder.layers.mlp.experts.experts.linear_fc1.weight``, ``(num_layers,
num_experts, ffn, h)``). This module recognises the folder and unstacks those axes, so the model
reads one layer and one expert at a time, as Megatron-core's modules name them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from paramscope.core.files import read_head
from paramscope.core.tree import FlatTensor

__all__ = ["is_torch_dist", "unstack"]

#: ``<prefix>layers.<rest>`` with no layer number: a tensor stacked over the layers.
_STACKED = re.compile(r"^((?:.+\.)?layers\.)(?!\d+(?:\.|$))(.+)$")
_EXPERTS = ".experts.experts."
_MAX_JSON = 64 * 1024


def is_torch_dist(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds Megatron-core's ``metadata.json`` naming the ``torch_dist`` backend."""
    path = Path(folder) / "metadata.json"
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    raw = read_head(path, _MAX_JSON)  # unreadable, unsafe or too long: not Megatron's marker (the DCP reader still reads the folder)
    if raw is None or len(raw) > _MAX_JSON:
        return False
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("sharded_backend") == "torch_dist"


def unstack(flat: list[FlatTensor]) -> tuple[list[FlatTensor], list[str]]:
    """The tensors with the stacked layer (and expert) axes split off; notes saying what was split.

    A group (one ``layers.`` prefix) is split only when all its stacked tensors agree on the
    number of layers; otherwise it is left as stored, with a note.

    Example:
        >>> out, _ = unstack([FlatTensor("decoder.layers.mlp.linear_fc1.weight", (2, 8, 4), "float32")])
        >>> [(t.name, t.shape) for t in out]
        [('decoder.layers.0.mlp.linear_fc1.weight', (8, 4)), ('decoder.layers.1.mlp.linear_fc1.weight', (8, 4))]
    """
    groups: dict[str, set[int]] = {}
    for t in flat:
        m = _STACKED.match(t.name)
        if m and t.shape:
            groups.setdefault(m.group(1), set()).add(t.shape[0] if t.shape[0] is not None else -1)
    layers = {prefix: next(iter(sizes)) for prefix, sizes in groups.items() if len(sizes) == 1 and next(iter(sizes)) > 0}
    notes = [f"The tensors under {prefix!r} disagree on the number of stacked layers ({sorted(sizes)}); shown as stored."
             for prefix, sizes in groups.items() if prefix not in layers]  # fmt: skip
    out: list[FlatTensor] = []
    experts: set[int] = set()
    for t in flat:
        m = _STACKED.match(t.name)
        if not m or m.group(1) not in layers or not t.shape:
            out.append(t)
            continue
        prefix, rest = m.groups()
        for i in range(layers[prefix]):
            if _EXPERTS in f".{rest}" and len(t.shape) > 1 and t.shape[1]:
                head, tail = f".{rest}".split(_EXPERTS, 1)
                experts.add(t.shape[1])
                out += [FlatTensor(f"{prefix}{i}{head}.experts.local_experts.{e}.{tail}", t.shape[2:], t.dtype, t.key, t.role, t.is_param)
                        for e in range(t.shape[1])]  # fmt: skip
            else:
                out.append(FlatTensor(f"{prefix}{i}.{rest}", t.shape[1:], t.dtype, t.key, t.role, t.is_param))
    for prefix, n in layers.items():
        also = f", and each layer's {sorted(experts)[0]} experts along a second axis" if len(experts) == 1 else ""
        notes.append(f"Megatron-core torch_dist checkpoint: the {n} layers under {prefix!r} are stored stacked along a "
                     f"leading axis{also}; shown one at a time.")  # fmt: skip
    return out, notes
