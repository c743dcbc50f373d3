"""The rank layout view: one row per rank, then the imbalance and other world sizes.

It formats a finished :class:`~paramscope.readers.distributed.layout.RankLayout`; nothing is
computed here beyond the percentages that are the formatting of its numbers.
"""

from __future__ import annotations

import json
from typing import Any

from paramscope.readers.distributed.layout import RankLayout, RankShare
from paramscope.render import fmt
from paramscope.render.table import Column, Table

__all__ = ["layout_table", "layout_json", "layout_slices"]


def _rank(share: RankShare) -> str:
    return "?" if share.rank is None else str(share.rank)


def layout_table(layout: RankLayout) -> Table:
    """One row per rank: its files, slices, elements and bytes (model, and with optimizer state)."""
    rows = tuple(
        (
            _rank(r), fmt.safe(", ".join(r.files)), fmt.count(len(r.slices)), fmt.count(r.count),
            fmt.n_bytes(r.model_bytes), fmt.n_bytes(r.n_bytes), fmt.n_bytes(r.stored_bytes),
        )  # fmt: skip
        for r in layout.ranks
    )
    footer = [f"{layout.world_size} ranks; every global tensor once: {fmt.n_bytes(layout.total_bytes)}"]
    if layout.imbalance is not None:
        fullest = max(layout.ranks, key=lambda r: r.n_bytes)
        footer.append(f"Imbalance: the fullest rank ({_rank(fullest)}) holds {layout.imbalance:.3f} x the mean")
    for key, value in layout.facts:
        footer.append(f"{fmt.safe(key)}: {fmt.safe(value)}")
    for p in layout.projections:
        footer.append(
            f"At world size {p.world_size} (FSDP2 dim-0 shards): {fmt.n_bytes(p.max_rank_bytes)} on the fullest rank "
            f"({fmt.n_bytes(p.max_rank_model_bytes)} of it model), {fmt.n_bytes(p.min_rank_bytes)} on the emptiest"
        )
    columns = (
        Column("Rank", "right"), Column("Files", wrap=True, min_width=16), Column("Slices", "right"), Column("Elements", "right"),
        Column("Model bytes", "right"), Column("All bytes", "right"), Column("On disk", "right", drop=1),
    )  # fmt: skip
    return Table(f"Rank layout: {fmt.safe(layout.source)} ({layout.format})", columns, rows, footer=tuple(footer))


def layout_slices(layout: RankLayout, rank: int) -> Table:
    """Every slice one rank holds: tensor, offsets, extent, bytes."""
    (share,) = [r for r in layout.ranks if r.rank == rank] or [None]  # type: ignore[list-item]
    rows = tuple(
        (fmt.safe(s.tensor), str(list(s.offsets)), str(list(s.sizes)), s.dtype, fmt.n_bytes(s.n_bytes))
        for s in (share.slices if share is not None else ())
    )
    columns = (Column("Tensor", wrap=True, min_width=16), Column("Offsets"), Column("Sizes"), Column("Dtype"), Column("Bytes", "right"))
    return Table(f"Rank {rank}: {len(rows)} slices", columns, rows)


def layout_json(layout: RankLayout) -> str:
    """The layout as JSON: ranks with their slices, totals, imbalance and projections."""
    doc: dict[str, Any] = {
        "source": layout.source,
        "format": layout.format,
        "world_size": layout.world_size,
        "total_bytes": layout.total_bytes,
        "imbalance": layout.imbalance,
        "facts": dict(layout.facts),
        "ranks": [
            {
                "rank": r.rank, "files": list(r.files), "elements": r.count, "n_bytes": r.n_bytes,
                "model_bytes": r.model_bytes, "stored_bytes": r.stored_bytes,
                "slices": [
                    {"tensor": s.tensor, "offsets": list(s.offsets), "sizes": list(s.sizes), "dtype": s.dtype,
                     "n_bytes": s.n_bytes, "optimizer": s.optimizer}
                    for s in r.slices
                ],
            }  # fmt: skip
            for r in layout.ranks
        ],
        "projections": [
            {"world_size": p.world_size, "max_rank_bytes": p.max_rank_bytes, "min_rank_bytes": p.min_rank_bytes,
             "max_rank_model_bytes": p.max_rank_model_bytes}
            for p in layout.projections
        ],  # fmt: skip
    }
    return json.dumps(doc, indent=2)
