"""Rules for Keras recurrent layers: SimpleRNN, LSTM, GRU, their cells, RNN, ConvLSTM1D/2D/3D.

A recurrent layer owns no weights itself: its cell does, so the weights are named as Keras
names the variables under the layer (``lstm_cell/kernel``). Gates sit side by side in one
kernel: LSTM has four (input, forget, cell, output), GRU three (update, reset, candidate).
Source of the shapes: ``keras/src/layers/rnn/{simple_rnn,lstm,gru,conv_lstm,rnn}.py``
(Keras 3), each cell's ``build``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from paramscope.core.anatomy import Formula, Shape
from paramscope.rules.keras.shapes import conv_length, fmt_int, ntuple
from paramscope.rules.keras.registry import RuleInput, RuleOutput, Weight, keras_rule, register_keras_rule

__all__ = ["CellSpec", "cell_spec", "prefixed_weights"]

_GATES = {"SimpleRNNCell": 1, "LSTMCell": 4, "GRUCell": 3, "ConvLSTMCell": 4}
_GATE_NAMES = {
    "SimpleRNNCell": "",
    "LSTMCell": "input, forget, cell and output gates side by side",
    "GRUCell": "update, reset and candidate gates side by side",
    "ConvLSTMCell": "input, forget, cell and output gates side by side",
}
#: The name each recurrent layer gives its cell (``LSTM.__init__``: ``name="lstm_cell"``).
_CELL_OF_LAYER = {
    "SimpleRNN": ("SimpleRNNCell", "simple_rnn_cell"),
    "LSTM": ("LSTMCell", "lstm_cell"),
    "GRU": ("GRUCell", "gru_cell"),
    "ConvLSTM1D": ("ConvLSTMCell", "conv_lstm_cell"),
    "ConvLSTM2D": ("ConvLSTMCell", "conv_lstm_cell"),
    "ConvLSTM3D": ("ConvLSTMCell", "conv_lstm_cell"),
}
_CONV_RANK = {"ConvLSTM1D": 1, "ConvLSTM2D": 2, "ConvLSTM3D": 3}


@dataclass(frozen=True, slots=True)
class CellSpec:
    """What a recurrent cell creates and emits for one time step.

    Attributes:
        weights: its weights, named relative to the cell (``kernel``).
        state_shapes: the shapes of its states, batch dimension excluded.
        output_shape: the shape of one step's output, batch dimension excluded.
        formula: how its parameter count follows from the config.
        known: ``False`` when the cell has no rule.
        note: why it is unknown.
    """

    weights: tuple[Weight, ...]
    state_shapes: tuple[Shape, ...]
    output_shape: Shape | None
    formula: Formula | None = None
    known: bool = True
    note: str = ""


def _dense_cell(class_name: str, cfg: Mapping[str, Any], step_shape: Shape) -> CellSpec:
    units = int(cfg["units"])
    gates = _GATES[class_name]
    d = step_shape[-1]
    if d is None:
        return CellSpec((), (), None, known=False, note="the feature size of the input is not known")
    use_bias = bool(cfg.get("use_bias", True))
    reset_after = class_name == "GRUCell" and bool(cfg.get("reset_after", True))
    g = "" if gates == 1 else f"{gates} x "
    gw = "units" if gates == 1 else f"({gates} x units)"
    gn = fmt_int(units) if gates == 1 else f"({gates} x {fmt_int(units)})"
    why = _GATE_NAMES[class_name]
    weights = [
        Weight("kernel", (d, gates * units), formula=Formula(f"input_dim x {gw}", f"{fmt_int(d)} x {gn}"), why=why),
        Weight(
            "recurrent_kernel",
            (units, gates * units),
            formula=Formula(f"units x {gw}", f"{fmt_int(units)} x {gn}"),
            why="maps the previous state to the gates" if gates > 1 else "maps the previous state",
        ),
    ]
    if use_bias:
        if reset_after:
            weights.append(
                Weight(
                    "bias",
                    (2, gates * units),
                    formula=Formula(f"2 x {gw}", f"2 x {gn}"),
                    why="reset_after=True keeps separate input and recurrent biases",
                )
            )
        else:
            weights.append(Weight("bias", (gates * units,), formula=Formula(gw.strip("()"), gn.strip("()"))))
    n_bias = (2 if reset_after else 1) if use_bias else 0
    bias_sym = {0: "", 1: " + units", 2: " + 2 x units"}[n_bias]
    bias_num = {0: "", 1: f" + {fmt_int(units)}", 2: f" + 2 x {fmt_int(units)}"}[n_bias]
    formula = Formula(
        f"{g}((input_dim + units) x units{bias_sym})",
        f"{g}(({fmt_int(d)} + {fmt_int(units)}) x {fmt_int(units)}{bias_num})",
    )
    states: tuple[Shape, ...] = ((units,), (units,)) if class_name == "LSTMCell" else ((units,),)
    return CellSpec(tuple(weights), states, (units,), formula)


def _conv_cell(cfg: Mapping[str, Any], step_shape: Shape, rank: int) -> CellSpec:
    filters = int(cfg["filters"])
    kernel = ntuple(cfg["kernel_size"], rank, "kernel_size")
    strides = ntuple(cfg.get("strides", 1), rank, "strides")
    dilation = ntuple(cfg.get("dilation_rate", 1), rank, "dilation_rate")
    padding = str(cfg.get("padding", "valid")).lower()
    channels_first = cfg.get("data_format") == "channels_first"
    spatial = step_shape[2:] if channels_first else step_shape[1:-1]
    c_in = step_shape[1] if channels_first else step_shape[-1]
    if c_in is None:
        return CellSpec((), (), None, known=False, note="the channel dimension of the input is not known")
    out_sp = tuple(conv_length(n, k, padding, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilation))
    out: Shape = (filters, *out_sp) if channels_first else (*out_sp, filters)
    ks = " x ".join(str(k) for k in kernel)
    kss = " x ".join(f"k{i + 1}" for i in range(rank))
    why = _GATE_NAMES["ConvLSTMCell"]
    weights = [
        Weight(
            "kernel",
            (*kernel, c_in, 4 * filters),
            formula=Formula(f"{kss} x in_channels x (4 x filters)", f"{ks} x {fmt_int(c_in)} x (4 x {fmt_int(filters)})"),
            why=why,
        ),
        Weight(
            "recurrent_kernel",
            (*kernel, filters, 4 * filters),
            formula=Formula(f"{kss} x filters x (4 x filters)", f"{ks} x {fmt_int(filters)} x (4 x {fmt_int(filters)})"),
            why="convolves the previous state into the gates",
        ),
    ]
    use_bias = bool(cfg.get("use_bias", True))
    if use_bias:
        weights.append(Weight("bias", (4 * filters,), formula=Formula("4 x filters", f"4 x {fmt_int(filters)}")))
    formula = Formula(
        f"4 x ({kss} x (in_channels + filters) x filters{' + filters' if use_bias else ''})",
        f"4 x ({ks} x ({fmt_int(c_in)} + {fmt_int(filters)}) x {fmt_int(filters)}{f' + {fmt_int(filters)}' if use_bias else ''})",
    )
    return CellSpec(tuple(weights), (out, out), out, formula)


def cell_spec(cell: Mapping[str, Any], step_shape: Shape, *, variable_dtype: str = "float32") -> CellSpec:
    """Weights, states and step output of a serialized cell (``{"class_name", "config"}``).

    Args:
        cell: the cell as Keras serializes it inside an ``RNN`` layer's config.
        step_shape: the shape of one time step of the input, batch included.
        variable_dtype: passed on to a rule for a cell outside this module.

    Returns:
        The cell's spec; ``known=False`` when no rule covers the cell.

    Example:
        >>> s = cell_spec({"class_name": "GRUCell", "config": {"units": 2}}, (None, 3))
        >>> [w.shape for w in s.weights]
        [(3, 6), (2, 6), (2, 6)]
    """
    cls = str(cell.get("class_name", ""))
    cfg: Mapping[str, Any] = cell.get("config") or {}
    if cls in ("SimpleRNNCell", "LSTMCell", "GRUCell"):
        return _dense_cell(cls, cfg, step_shape)
    if cls == "ConvLSTMCell":
        return _conv_cell(cfg, step_shape, int(cfg.get("rank", len(step_shape) - 2)))
    if cls == "StackedRNNCells":
        return _stacked(cfg, step_shape, variable_dtype)
    rule = keras_rule(cls)
    if rule is None:
        return CellSpec((), (), None, known=False, note=f"no rule for the cell class {cls!r}")
    out = rule(RuleInput(cls, cfg, (step_shape,), variable_dtype=variable_dtype))
    if not out.known or not out.output_shapes:
        return CellSpec(out.weights, (), None, out.formula, known=False, note=out.note)
    shapes = [s[1:] for s in out.output_shapes]
    return CellSpec(out.weights, tuple(shapes[1:]), shapes[0], out.formula, out.known, out.note)


def _stacked(cfg: Mapping[str, Any], step_shape: Shape, variable_dtype: str) -> CellSpec:
    weights: list[Weight] = []
    states: list[Shape] = []
    parts_sym: list[str] = []
    parts_num: list[str] = []
    shape = step_shape
    output: Shape | None = None
    for sub in cfg.get("cells") or []:
        spec = cell_spec(sub, shape, variable_dtype=variable_dtype)
        if not spec.known or spec.output_shape is None:
            return CellSpec(tuple(weights), (), None, known=False, note=spec.note)
        name = str((sub.get("config") or {}).get("name", sub.get("class_name", "cell")))
        weights.extend(prefixed_weights(spec.weights, name))
        states.extend(spec.state_shapes)
        if spec.formula is not None:
            parts_sym.append(f"[{name}] {spec.formula.symbolic}")
            parts_num.append(spec.formula.numeric)
        output = spec.output_shape
        shape = (step_shape[0], *output)
    formula = Formula(" + ".join(parts_sym), " + ".join(parts_num)) if parts_sym else None
    return CellSpec(tuple(weights), tuple(states), output, formula)


def prefixed_weights(weights: Sequence[Weight], prefix: str) -> tuple[Weight, ...]:
    """The weights of a sub-object, named under it as Keras names the variables (``lstm_cell/kernel``)."""
    return tuple(
        Weight(f"{prefix}/{w.name}", w.shape, w.role, w.formula, w.why, w.dtype, w.is_param) for w in weights
    )


def _sequence_outputs(inp: RuleInput, spec: CellSpec) -> tuple[Shape, ...]:
    shape = inp.input_shape
    batch, steps = shape[0], shape[1]
    assert spec.output_shape is not None
    if inp.config.get("return_sequences"):
        out: Shape = (batch, steps, *spec.output_shape)
    else:
        out = (batch, *spec.output_shape)
    if inp.config.get("return_state"):
        return (out, *((batch, *s) for s in spec.state_shapes))
    return (out,)


def _rnn_output(inp: RuleInput, cell: Mapping[str, Any], cell_name: str) -> RuleOutput:
    shape = inp.input_shape
    if len(shape) < 3:
        return RuleOutput((), known=False, note=f"a recurrent layer needs (batch, time, ...) input, got {shape}")
    step: Shape = (shape[0], *shape[2:])
    spec = cell_spec(cell, step, variable_dtype=inp.variable_dtype)
    if not spec.known or spec.output_shape is None:
        return RuleOutput((), prefixed_weights(spec.weights, cell_name), known=False, note=spec.note)
    return RuleOutput(_sequence_outputs(inp, spec), prefixed_weights(spec.weights, cell_name), spec.formula)


@register_keras_rule("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
def _recurrent(inp: RuleInput) -> RuleOutput:
    cell_class, cell_name = _CELL_OF_LAYER[inp.class_name]
    cfg = dict(inp.config)
    if inp.class_name in _CONV_RANK:
        cfg["rank"] = _CONV_RANK[inp.class_name]
    return _rnn_output(inp, {"class_name": cell_class, "config": cfg}, cell_name)


@register_keras_rule("RNN")
def _generic_rnn(inp: RuleInput) -> RuleOutput:
    cell = inp.config.get("cell")
    if not isinstance(cell, Mapping):
        return RuleOutput((), known=False, note="the RNN config names no cell")
    name = str((cell.get("config") or {}).get("name", cell.get("class_name", "cell")))
    return _rnn_output(inp, cell, name)


@register_keras_rule("SimpleRNNCell", "LSTMCell", "GRUCell", "ConvLSTMCell", "StackedRNNCells")
def _cell(inp: RuleInput) -> RuleOutput:
    cell = {"class_name": inp.class_name, "config": inp.config}
    spec = cell_spec(cell, inp.input_shape, variable_dtype=inp.variable_dtype)
    if not spec.known or spec.output_shape is None:
        return RuleOutput((), spec.weights, known=False, note=spec.note)
    batch = inp.input_shape[0]
    outs = [(batch, *spec.output_shape), *((batch, *s) for s in spec.state_shapes)]
    return RuleOutput(tuple(outs), spec.weights, spec.formula)
