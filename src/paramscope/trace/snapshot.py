"""What a forward pass may change on a module, saved before it and restored after it."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["Snapshot"]


class Snapshot:
    """Training flags and tensor attributes of every module, to restore after the pass."""

    def __init__(self, root: torch.nn.Module) -> None:
        # TorchScript modules keep their tensors in C++ (nothing Python code can reassign):
        # only their training flag is saved
        self.items = [
            (m, m.training, {}, {}, {})
            if isinstance(m, torch.jit.ScriptModule)
            else (m, m.training, dict(m._parameters), dict(m._buffers), {k: v for k, v in vars(m).items() if isinstance(v, torch.Tensor)})
            for m in root.modules()
        ]

    def restore(self) -> None:
        """Put every saved flag and tensor back; drop tensors the pass added."""
        for m, training, params, buffers, attrs in self.items:
            m.training = training
            if isinstance(m, torch.jit.ScriptModule):
                continue
            stores: tuple[tuple[dict[str, Any], dict[str, Any]], ...] = (
                (m._parameters, params),
                (m._buffers, buffers),
            )
            for store, saved in stores:
                for k in list(store):
                    if k not in saved:
                        del store[k]
                for k, v in saved.items():
                    if store.get(k) is not v:
                        store[k] = v
            d = vars(m)
            for k in [k for k, v in d.items() if isinstance(v, torch.Tensor) and attrs.get(k) is not v]:
                if k in attrs:
                    d[k] = attrs[k]
                else:
                    del d[k]
