"""Analyses over an anatomy: totals, memory, compute, repeated blocks and differences."""

from paramscope.analysis.totals import (
    DTypeTotal as DTypeTotal,
    Totals as Totals,
    layer_totals as layer_totals,
    shared_tensors as shared_tensors,
    totals as totals,
    unique_tensors as unique_tensors,
)
