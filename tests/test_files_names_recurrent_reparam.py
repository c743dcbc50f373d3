"""Recurrent weights, reparametrised weights and buffers named like biases, read from files.

The oracle is the module itself: ``named_parameters()`` against ``named_buffers()`` of the
real torch / transformers module whose state dict was saved, by safetensors and by torch.save.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import pytest

from paramscope.analysis import totals
from paramscope.core import Role
from paramscope.readers import read

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
nn = torch.nn


LABELS = ["lstm", "gru", "rnn", "cells", "encoder", "weight_norm", "spectral_norm", "parametrized", "bart", "marian"]


@functools.cache
def _module(label: str) -> Any:
    return _modules()[label]


def _modules() -> dict[str, Any]:
    from torch.nn.utils import parametrizations, spectral_norm, weight_norm

    transformers = pytest.importorskip("transformers")
    small = dict(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pre-parametrization weight_norm is deprecated
        return {
            "lstm": nn.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=4),
            "gru": nn.GRU(5, 6, num_layers=2, bidirectional=True, bias=True),
            "rnn": nn.RNN(4, 3),
            "cells": nn.ModuleDict({"lstm_cell": nn.LSTMCell(3, 5), "gru_cell": nn.GRUCell(3, 5),
                                    "rnn_cell": nn.RNNCell(3, 5)}),
            "encoder": nn.ModuleDict({"encoder_lstm": nn.LSTM(3, 4), "decoder_gru": nn.GRU(4, 2)}),
            "weight_norm": nn.Sequential(weight_norm(nn.Linear(3, 4)), weight_norm(nn.Conv1d(2, 3, 3))),
            "spectral_norm": nn.Sequential(spectral_norm(nn.Linear(3, 4))),
            "parametrized": nn.Sequential(parametrizations.weight_norm(nn.Linear(3, 4)),
                                          parametrizations.spectral_norm(nn.Linear(4, 2)),
                                          parametrizations.weight_norm(nn.LSTM(2, 3), name="weight_hh_l0")),
            "bart": transformers.BartForConditionalGeneration(transformers.BartConfig(**small)),
            "marian": transformers.MarianMTModel(transformers.MarianConfig(**small, decoder_vocab_size=64, pad_token_id=0, decoder_start_token_id=0)),
        }


def _oracle(module: Any) -> tuple[int, int]:
    saved = module.state_dict()
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for n, b in module.named_buffers() if n in saved)
    return params, buffers


def _save(module: Any, path: Path, how: str) -> None:
    if how == "safetensors":
        safetensors_torch.save_model(module, str(path))  # drops the second name of a tied tensor
    else:
        torch.save(module.state_dict(), path)


@pytest.mark.parametrize("how", ["safetensors", "torch.save"])
@pytest.mark.parametrize("label", LABELS)
def test_counts_and_roles_match_the_module(tmp_path: Path, label: str, how: str) -> None:
    module = _module(label)
    path = tmp_path / ("m.safetensors" if how == "safetensors" else "m.pt")
    _save(module, path, how)
    a = read(str(path))
    t = totals(a)
    assert (t.params, t.buffers) == _oracle(module)
    assert t.complete
    params = {n for n, _ in module.named_parameters(remove_duplicate=False)}
    for layer in a.walk():
        for x in layer.tensors:
            # A tensor stored at the top level becomes a one-tensor layer of its own name.
            full = layer.path if x.name == layer.path else f"{layer.path}.{x.name}"
            assert x.role is not Role.UNKNOWN, full
            if full in params:
                assert x.role is Role.TRAINABLE and x.is_param, full
            else:
                assert not x.is_param, full


def test_recurrent_layer_types_and_formulas(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    safetensors_torch.save_model(_module("encoder"), str(path))
    a = read(str(path))
    enc, dec = a.find("encoder_lstm"), a.find("decoder_gru")
    assert enc is not None and dec is not None
    assert (enc.type, dec.type) == ("LSTM", "GRU")
    ih = next(x for x in enc.tensors if x.name == "weight_ih_l0")
    assert ih.formula is not None and ih.formula.symbolic == "4 x hidden_size x input_size"
    assert ih.formula.numeric == "16 x 3"  # torch: 4 gates x hidden_size 4 rows, input_size 3 columns


def test_final_logits_bias_is_a_buffer_in_bart() -> None:
    bart = _module("bart")
    assert "final_logits_bias" in dict(bart.named_buffers())
    assert "final_logits_bias" not in dict(bart.named_parameters())
