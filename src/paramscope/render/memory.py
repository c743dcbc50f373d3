"""The memory plan view: parts, phases, peak, fit and where activations come from.

The plan is finished data (:class:`~paramscope.planner.MemoryPlan`); this module only formats
it, as a document of tables for text, Markdown and HTML, or as the versioned JSON document
``paramscope-memory/1`` described in docs/memory.md.
"""

from __future__ import annotations

import json
from typing import Any

from paramscope.planner.result import MemoryPlan
from paramscope.render import fmt
from paramscope.render.table import Column, Document, Table

__all__ = ["SCHEMA", "memory_document", "memory_dict", "render_memory_json", "size"]

#: The JSON schema name and version; a change that removes or renames a field bumps it.
SCHEMA = "paramscope-memory/1"


def size(n: int | None) -> str:
    """``1,875,000,000 B (1.88 GB, 1.75 GiB)``; ``?`` when unknown.

    Example:
        >>> size(1_875_000_000)
        '1,875,000,000 B (1.88 GB, 1.75 GiB)'
    """
    if n is None:
        return "?"
    return f"{n:,} B ({n / 1e9:.2f} GB, {n / (1 << 30):.2f} GiB)"


def _setup_line(plan: MemoryPlan) -> str:
    s = plan.setup
    bits = [f"batch {s.batch}" + (f" x seq {s.seq:,}" if s.seq else "")]
    bits.append(s.precision or ("fp32" if s.train else "stored dtype"))
    if s.train:
        bits.append(f"optimizer {s.optimizer}")
        bits.append(f"checkpointing {s.checkpointing}")
        if s.shard != "none":
            bits.append(f"{s.shard} over {s.dp} data-parallel devices")
        if s.offload != "none":
            bits.append(f"offload {s.offload}")
    if s.tp > 1:
        bits.append(f"TP {s.tp}" + (" + SP" if s.sequence_parallel else ""))
    if s.pp > 1:
        bits.append(f"PP {s.pp}")
    bits.append(f"attention {s.attention}")
    return "setup: " + ", ".join(bits)


def memory_document(plan: MemoryPlan) -> Document:
    """The plan as a document of tables."""
    parts = Table(
        "Per device",
        (Column("Part"), Column("Bytes", "right"), Column("GB", "right", drop=2), Column("GiB", "right", drop=1),
         Column("= Formula", wrap=True, min_width=24)),
        tuple(
            (
                f.name,
                fmt.count(f.n_bytes),
                "?" if f.n_bytes is None else f"{f.n_bytes / 1e9:.2f}",
                "?" if f.n_bytes is None else f"{f.n_bytes / (1 << 30):.2f}",
                fmt.safe(f.formula) + (f"  [host: {f.host_bytes:,} B]" if f.host_bytes else ""),
            )
            for f in plan.figures
        ),
    )
    phases = Table(
        "Moments of a step (what is alive together)",
        (Column("Phase"), Column("Live bytes", "right"), Column("GiB", "right", drop=1),
         Column("= Parts", wrap=True, min_width=24)),
        tuple(
            (
                ph.name,
                fmt.count(ph.n_bytes),
                "?" if ph.n_bytes is None else f"{ph.n_bytes / (1 << 30):.2f}",
                " + ".join(f"{name} {fmt.count(v)}" for name, v in ph.parts if v != 0),
            )
            for ph in plan.phases
        ),
    )
    blocks: list[Table | str] = [_setup_line(plan), parts, phases, _peak_line(plan)]
    if plan.fits is not None:
        blocks.append(_fit_line(plan))
    if plan.by_module:
        rows = sorted(plan.by_module, key=lambda m: -m.n_bytes)[:20]
        blocks.append(
            Table(
                "Activations by module",
                (Column("Module", wrap=True, min_width=16), Column("Repeat", "right"), Column("Bytes", "right"),
                 Column("GiB", "right", drop=1)),
                tuple((fmt.safe(m.path), f"x{m.repeat}" if m.repeat > 1 else "", fmt.count(m.n_bytes),
                       f"{m.n_bytes / (1 << 30):.3f}") for m in rows),
                footer=("kept at the end of the forward pass, before tensor parallelism",),
            )
        )
    blocks.append("Not counted: " + "; ".join(plan.not_counted) + ".")
    blocks.extend(f"Note: {fmt.safe(n)}" for n in plan.notes)
    return Document(f"Memory plan: {fmt.safe(plan.name)} ({plan.mode}, per device)", tuple(blocks))


def _peak_line(plan: MemoryPlan) -> str:
    if plan.peak is None:
        unknown = [f.name for f in plan.figures if f.n_bytes is None]
        return f"Peak: unknown ({', '.join(unknown)} unknown; see the notes)"
    where = next((ph.name for ph in plan.phases if ph.n_bytes == plan.peak), "")
    return f"Peak: {size(plan.peak)}, during {where}"


def _fit_line(plan: MemoryPlan) -> str:
    f = plan.fits
    assert f is not None
    if f.fits is None:
        return f"Fits {f.device} ({size(f.device_bytes)}): unknown, the peak is unknown"
    verdict = "yes" if f.fits else "no"
    head = "headroom" if (f.headroom or 0) >= 0 else "over by"
    line = f"Fits {f.device} ({size(f.device_bytes)}): {verdict}, {head} {size(abs(f.headroom or 0))}"
    line += f"; largest batch {fmt.count(f.largest_batch)}"
    if f.longest_seq is not None:
        line += f"; longest sequence {f.longest_seq:,}"
    line += f"; fewest GPUs {fmt.count(f.fewest_gpus)}"
    return line


def memory_dict(plan: MemoryPlan) -> dict[str, Any]:
    """The plan as the ``paramscope-memory/1`` JSON document (plain values)."""
    fit = None
    if plan.fits is not None:
        f = plan.fits
        fit = {
            "device": f.device, "device_bytes": f.device_bytes, "fits": f.fits, "headroom": f.headroom,
            "largest_batch": f.largest_batch, "longest_seq": f.longest_seq, "fewest_gpus": f.fewest_gpus,
        }
    per_device: dict[str, int | None] = {f.name: f.n_bytes for f in plan.figures}
    per_device["peak"] = plan.peak
    return {
        "schema": SCHEMA,
        "model": plan.name,
        "source": plan.source,
        "mode": plan.mode,
        "setup": plan.setup.to_dict(),
        "per_device": per_device,
        "formulas": {f.name: f.formula for f in plan.figures},
        "host": {f.name: f.host_bytes for f in plan.figures if f.host_bytes},
        "phases": [{"name": p.name, "bytes": p.n_bytes, "parts": dict(p.parts)} for p in plan.phases],
        "by_module": [{"path": m.path, "bytes": m.n_bytes, "repeat": m.repeat} for m in plan.by_module],
        "fits": fit,
        "not_counted": list(plan.not_counted),
        "notes": list(plan.notes),
    }


def render_memory_json(plan: MemoryPlan) -> str:
    """The JSON document, indented, with a final newline."""
    return json.dumps(memory_dict(plan), indent=2) + "\n"
