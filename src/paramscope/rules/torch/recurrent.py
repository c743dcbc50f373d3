"""Rules for recurrent layers: RNN, LSTM, GRU and their single-step cells.

Names and shapes follow ``torch/nn/modules/rnn.py``: for layer ``k`` and direction suffix
``""`` or ``"_reverse"``, ``weight_ih_l{k}`` is ``(gates x hidden_size, layer input)``,
``weight_hh_l{k}`` is ``(gates x hidden_size, hidden_size or proj_size)``, the two biases are
``(gates x hidden_size)``, and with ``proj_size > 0`` LSTM adds ``weight_hr_l{k}``
``(proj_size, hidden_size)``. The gates are stacked along the first dimension: 1 for RNN,
4 for LSTM (input, forget, cell, output), 3 for GRU (reset, update, new).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from paramscope.core.anatomy import Formula
from paramscope.rules.torch._common import note, plus, rule, scaled
from paramscope.rules.torch.registry import ModuleNote, TensorNote

__all__: list[str] = []

_GATES = {
    "RNN_TANH": (1, "the tanh recurrence"),
    "RNN_RELU": (1, "the relu recurrence"),
    "LSTM": (4, "the input, forget, cell and output gates"),
    "GRU": (3, "the reset, update and new gates"),
}


def _bias_hh_why(mode: str) -> str:
    if mode == "GRU":
        return (
            "a second bias per gate; for the new gate it sits inside the reset product "
            "r * (W_hn h + b_hn), so unlike in LSTM it is not redundant with bias_ih"
        )
    return (
        "a second bias per gate, added to bias_ih (only their sum matters); PyTorch keeps both "
        "to match cuDNN, so it has twice the biases of Keras's single bias"
    )


def _rows(gates: int, hidden: int) -> Formula:
    if gates == 1:
        return Formula("hidden_size", str(hidden))
    return Formula(f"{gates} x hidden_size", f"{gates} x {hidden}")


def _mat(rows: Formula, cols: Formula) -> Formula:
    def wrap(s: str) -> str:
        return f"({s})" if " " in s else s

    return Formula(f"{rows.symbolic} x {wrap(cols.symbolic)}", f"{rows.numeric} x {wrap(cols.numeric)}")


def _layer(module: Any, k: int, suffix: str, gates: int, what: str) -> tuple[dict[str, TensorNote], Formula]:
    """Notes for one layer and direction, and its parameter formula."""
    hidden, proj = module.hidden_size, module.proj_size
    dirs = 2 if module.bidirectional else 1
    out_name, out_n = ("proj_size", proj) if proj > 0 else ("hidden_size", hidden)
    if k == 0:
        cols = Formula("input_size", str(module.input_size))
    elif dirs == 2:
        cols = Formula(f"2 x {out_name}", f"2 x {out_n}")
    else:
        cols = Formula(out_name, str(out_n))
    rows = _rows(gates, hidden)
    side = "the reverse direction of " if suffix else ""
    src = "the input" if k == 0 else f"layer {k - 1}'s output" + (" (both directions)" if dirs == 2 else "")
    notes = {
        f"weight_ih_l{k}{suffix}": TensorNote(
            _mat(rows, cols), f"{side}layer {k}: weights from {src} to {what}, stacked"
        ),
        f"weight_hh_l{k}{suffix}": TensorNote(
            _mat(rows, Formula(out_name, str(out_n))),
            f"{side}layer {k}: weights from the previous step's hidden state to {what}",
        ),
    }
    inner = [cols, Formula(out_name, str(out_n))]
    if module.bias:
        notes[f"bias_ih_l{k}{suffix}"] = TensorNote(rows, f"{side}layer {k}: one bias per gate unit")
        notes[f"bias_hh_l{k}{suffix}"] = TensorNote(rows, f"{side}layer {k}: {_bias_hh_why(module.mode)}")
        inner.append(Formula("2", "2"))
    terms = [_mat(rows, plus(*inner))]
    if proj > 0:
        hr = Formula("proj_size x hidden_size", f"{proj} x {hidden}")
        notes[f"weight_hr_l{k}{suffix}"] = TensorNote(
            hr, f"{side}layer {k}: projects the hidden state down to proj_size"
        )
        terms.append(hr)
    return notes, plus(*terms)


@rule(nn.RNN, nn.LSTM, nn.GRU)
def _rnn(module: Any) -> ModuleNote:
    gates, what = _GATES[module.mode]
    dirs = 2 if module.bidirectional else 1
    tensors: dict[str, TensorNote] = {}
    per_layer: list[Formula] = []
    for k in range(module.num_layers):
        for suffix in ("", "_reverse")[:dirs]:
            notes, f = _layer(module, k, suffix, gates, what)
            tensors.update(notes)
            if suffix == "":
                per_layer.append(f)
    first = per_layer[0] if dirs == 1 else scaled(("2", 2), per_layer[0])
    rest = None
    if module.num_layers > 1:
        later = per_layer[1] if dirs == 1 else scaled(("2", 2), per_layer[1])
        rest = later if module.num_layers == 2 else scaled(("(num_layers - 1)", module.num_layers - 1), later)
    text = f"{gates} gate{'s' if gates > 1 else ''} ({what}) stacked in each weight's first dimension"
    if dirs == 2:
        text += "; bidirectional: every layer has a second set of tensors (suffix _reverse)"
    return note(tensors, plus(first, rest), text)


@rule(nn.RNNCell, nn.LSTMCell, nn.GRUCell)
def _cell(module: Any) -> ModuleNote:
    mode = "RNN_TANH"
    for cls, m in ((nn.LSTMCell, "LSTM"), (nn.GRUCell, "GRU")):
        if isinstance(module, cls):
            mode = m
    gates, what = _GATES[mode]
    rows = _rows(gates, module.hidden_size)
    tensors = {
        "weight_ih": TensorNote(
            _mat(rows, Formula("input_size", str(module.input_size))),
            f"weights from the input to {what}, stacked",
        ),
        "weight_hh": TensorNote(
            _mat(rows, Formula("hidden_size", str(module.hidden_size))),
            f"weights from the previous hidden state to {what}",
        ),
    }
    inner = [Formula("input_size", str(module.input_size)), Formula("hidden_size", str(module.hidden_size))]
    if module.bias:
        tensors["bias_ih"] = TensorNote(rows, "one bias per gate unit")
        tensors["bias_hh"] = TensorNote(rows, _bias_hh_why(mode))
        inner.append(Formula("2", "2"))
    terms = [_mat(rows, plus(*inner))]
    return note(tensors, plus(*terms), "one time step of the recurrence; the caller loops over time")
