"""The result of a memory plan: frozen data, bytes per device; renderers format it."""

from __future__ import annotations

from dataclasses import dataclass

from paramscope.planner.setup import MemorySetup

__all__ = ["Figure", "Phase", "ModuleActivation", "Fit", "MemoryPlan", "PARTS"]

#: The parts of device memory, in the order reports show them.
PARTS = ("params", "grads", "optimizer", "activations", "kv_cache", "temporary")


@dataclass(frozen=True, slots=True)
class Figure:
    """One part of the memory of a device.

    Attributes:
        name: a name in :data:`PARTS`.
        n_bytes: bytes on one device when the part is allocated; ``None`` when unknown.
        formula: how the figure follows (``16 x 6,738,415,616 / 8``).
        host_bytes: bytes the same part keeps in host memory (offload).
    """

    name: str
    n_bytes: int | None
    formula: str
    host_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Phase:
    """One moment of a step and what is alive in it.

    Attributes:
        name: ``"forward"``, ``"backward"``, ``"optimizer step"``, ``"prefill"`` or ``"decode"``.
        n_bytes: the live total, ``None`` if any part is unknown.
        parts: bytes of each part alive at that moment (parts not alive are left out).
    """

    name: str
    n_bytes: int | None
    parts: tuple[tuple[str, int | None], ...]


@dataclass(frozen=True, slots=True)
class ModuleActivation:
    """Activation bytes kept at the end of the forward pass by the modules at one path pattern.

    Attributes:
        path: the module path, repeated blocks' indices written ``*`` (``model.layers.*.mlp``).
        n_bytes: bytes on one device, all repeats together.
        repeat: how many modules the pattern stands for.
    """

    path: str
    n_bytes: int
    repeat: int


@dataclass(frozen=True, slots=True)
class Fit:
    """Whether the plan fits a device, and the limits that do.

    Attributes:
        device: the device's name.
        device_bytes: its memory.
        fits: the peak is at most the device's memory; ``None`` when the peak is unknown.
        headroom: device bytes minus the peak (negative: over by that much).
        largest_batch: the largest per-device batch that fits (``None``: not found or unknown).
        longest_seq: the longest sequence that fits at this batch (token models), at most
            the model's ``max_position_embeddings``.
        fewest_gpus: the fewest devices for this sharding (the data-parallel size times tensor
            and pipeline sizes); ``None`` when no number up to 4,096 is enough.
    """

    device: str
    device_bytes: int
    fits: bool | None
    headroom: int | None
    largest_batch: int | None
    longest_seq: int | None
    fewest_gpus: int | None


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """Memory of one device for a planned run: parts, phases, peak, and whether it fits.

    Attributes:
        name: the model's name.
        source: where it was read from.
        mode: ``"training"`` or ``"inference"``.
        setup: the run planned.
        figures: one per part, in :data:`PARTS` order.
        peak: the largest live total of any phase; ``None`` when a part is unknown.
        phases: the moments of a step.
        by_module: where the activations come from.
        fits: the fit check, when a device is given.
        not_counted: what the plan leaves out, with how much it usually adds.
        notes: assumptions and anything unknown, in sentences.
    """

    name: str
    source: str
    mode: str
    setup: MemorySetup
    figures: tuple[Figure, ...]
    peak: int | None
    phases: tuple[Phase, ...]
    by_module: tuple[ModuleActivation, ...] = ()
    fits: Fit | None = None
    not_counted: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def figure(self, name: str) -> Figure:
        """The figure of one part (``"params"``, ``"grads"``...)."""
        for f in self.figures:
            if f.name == name:
                return f
        raise KeyError(name)
