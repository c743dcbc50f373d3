"""Rules for ``torch.ao`` quantized modules: packed int8 weights, their scales and zero points.

The tensors are unpacked by :mod:`paramscope.rules.torch.packed`; these rules say how their
sizes follow from the constructor arguments, as for the float modules: a quantized ``Linear``
weight is ``out_features x in_features`` int8 values plus a float bias of ``out_features``; a
convolution's is ``out_channels x in_channels / groups x kernel``; a dynamic LSTM/GRU/RNN has
the float module's gate layout (see :mod:`paramscope.rules.torch.recurrent`). A weight
quantized per tensor has one scale and one zero point, per channel one of each per output
channel. Every formula is checked against the unpacked shape; a module changed after
construction shows its stored shape instead.

Classes are matched when first seen, by module and name and checked for identity, so reading a
float model never imports ``torch.ao``.
"""

from __future__ import annotations

from math import prod
from typing import Any

from paramscope.core.anatomy import Formula
from paramscope.rules.torch.packed import packed_tensors
from paramscope.rules.torch._common import NO_PARAMS, note, stored, times, value
from paramscope.rules.torch.registry import ModuleNote, TensorNote, TorchRule, register_torch_resolver, resolver_by_name

__all__: list[str] = []

_Q = "torch.ao.nn.quantized"
_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _checked(formula: Formula, t: Any) -> Formula:
    """The formula when it gives the tensor's element count, else its stored shape."""
    try:
        ok = value(formula.numeric) == prod(int(d) for d in t.shape)
    except ValueError:
        ok = False
    return formula if ok else stored(t)


def _linear(m: Any) -> dict[str, Formula]:
    return {
        "weight": times(("out_features", m.out_features), ("in_features", m.in_features)),
        "bias": Formula("out_features", str(m.out_features)),
    }


def _conv(m: Any) -> dict[str, Formula]:
    kernel = tuple(int(k) for k in m.kernel_size)
    k_sym = " x ".join(f"k{i}" for i in range(len(kernel)))
    k_num = " x ".join(str(k) for k in kernel)
    if m.transposed:
        first, second = ("in_channels", m.in_channels), ("out_channels", m.out_channels)
    else:
        first, second = ("out_channels", m.out_channels), ("in_channels", m.in_channels)
    return {
        "weight": Formula(f"{first[0]} x {second[0]} / groups x {k_sym}",
                          f"{first[1]} x {second[1]} / {m.groups} x {k_num}"),
        "bias": Formula("out_channels", str(m.out_channels)),
    }  # fmt: skip


def _embedding(m: Any) -> dict[str, Formula]:
    return {"weight": times(("num_embeddings", m.num_embeddings), ("embedding_dim", m.embedding_dim))}


def _rnn(m: Any) -> dict[str, Formula]:
    gates = _GATES.get(getattr(m, "mode", ""), 0)
    if not gates:
        return {}
    rows = Formula(f"{gates} x hidden_size", f"{gates} x {m.hidden_size}")
    dirs = 2 if m.bidirectional else 1
    out: dict[str, Formula] = {}
    for k in range(m.num_layers):
        if k == 0:
            cols = Formula("input_size", str(m.input_size))
        else:
            cols = Formula(f"({dirs} x hidden_size)", f"({dirs} x {m.hidden_size})") if dirs > 1 else Formula("hidden_size", str(m.hidden_size))
        for suffix in ("", "_reverse")[:dirs]:
            out[f"weight_ih_l{k}{suffix}"] = Formula(f"{rows.symbolic} x {cols.symbolic}", f"{rows.numeric} x {cols.numeric}")
            out[f"weight_hh_l{k}{suffix}"] = Formula(f"{rows.symbolic} x hidden_size", f"{rows.numeric} x {m.hidden_size}")
            out[f"bias_ih_l{k}{suffix}"] = rows
            out[f"bias_hh_l{k}{suffix}"] = rows
    return out


def _cell(m: Any) -> dict[str, Formula]:
    name = type(m).__name__
    gates = 4 if name.startswith("LSTM") else 3 if name.startswith("GRU") else 1
    rows = Formula(f"{gates} x hidden_size" if gates > 1 else "hidden_size",
                   f"{gates} x {m.hidden_size}" if gates > 1 else str(m.hidden_size))  # fmt: skip
    return {
        "weight_ih": Formula(f"{rows.symbolic} x input_size", f"{rows.numeric} x {m.input_size}"),
        "weight_hh": Formula(f"{rows.symbolic} x hidden_size", f"{rows.numeric} x {m.hidden_size}"),
        "bias_ih": rows,
        "bias_hh": rows,
    }


def _quantized_rule(shapes: Any, what: str) -> TorchRule:
    def explain(m: Any) -> ModuleNote:
        formulas = shapes(m)
        tensors: dict[str, TensorNote] = {}
        for p in packed_tensors(m):
            f = formulas.get(p.name)
            tensors[p.name] = TensorNote(formula=_checked(f, p.tensor) if f is not None else stored(p.tensor))
        return note(
            tensors,
            text=(
                f"A quantized {what}: its weights are packed for the quantized kernel, outside "
                "model.parameters(); they are unpacked and counted here (frozen: not trained), with "
                "their scales and zero points as buffers."
            ),
        )

    return explain


def _holder(m: Any) -> ModuleNote:
    return note(formula=NO_PARAMS, text="Holds the packed weights its parent lists (counted there).")


#: (defining module, class name) -> rule
_RULES: dict[tuple[str, str], TorchRule] = {}
for _mod, _names, _rule in [
    (f"{_Q}.modules.linear", ("Linear",), _quantized_rule(_linear, "Linear")),
    (f"{_Q}.dynamic.modules.linear", ("Linear",), _quantized_rule(_linear, "Linear (dynamic: activations stay float)")),
    (f"{_Q}.modules.conv", ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"),
     _quantized_rule(_conv, "convolution")),
    (f"{_Q}.dynamic.modules.conv", ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"),
     _quantized_rule(_conv, "convolution (dynamic)")),
    (f"{_Q}.modules.embedding_ops", ("Embedding", "EmbeddingBag"), _quantized_rule(_embedding, "embedding")),
    (f"{_Q}.dynamic.modules.rnn", ("LSTM", "GRU"), _quantized_rule(_rnn, "recurrent layer (dynamic)")),
    (f"{_Q}.dynamic.modules.rnn", ("LSTMCell", "GRUCell", "RNNCell"), _quantized_rule(_cell, "recurrent cell (dynamic)")),
    (f"{_Q}.modules.linear", ("LinearPackedParams",), _holder),
    (f"{_Q}.modules.embedding_ops", ("EmbeddingPackedParams",), _holder),
    (f"{_Q}.dynamic.modules.rnn", ("PackedParameter",), _holder),
]:  # fmt: skip
    for _name in _names:
        _RULES[(_mod, _name)] = _rule


register_torch_resolver(resolver_by_name(_RULES))
