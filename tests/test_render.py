"""Renderers: the numbers shown, their formatting, layouts and escaping of untrusted names."""

from __future__ import annotations

import json

import pytest

import paramscope
from paramscope.core import Anatomy, Layer, Role, Tensor
from paramscope.render import fmt
from paramscope.analysis.view import build_view
from paramscope.render.keras_styles import render_keras2

from _seed import seed_anatomy


def test_units_are_binary_and_named_so() -> None:
    assert fmt.n_bytes(1023) == "1023 B"
    assert fmt.n_bytes(1024) == "1.00 KiB"
    assert fmt.n_bytes(2140752 * 4) == "8.17 MiB"
    assert fmt.n_bytes(None) == "?"
    assert fmt.si(4_280_000) == "4.28 M"
    assert fmt.shape((None, 512)) == "(None, 512)"
    assert fmt.shape((512,)) == "(512,)"


def test_keras2_layout_matches_the_seed_table() -> None:
    # Expected text checked by hand against the seed's Keras summary (columns at 33/55/67/100,
    # names truncated the way Keras 1/2 did, "Param #" without separators, totals with them).
    text = render_keras2(build_view(seed_anatomy(), depth=0, expand=True))
    lines = text.splitlines()
    assert lines[0] == "_" * 100
    assert lines[1] == "Layer (type)                     Output Shape          Param #     Connected to"
    assert lines[2] == "=" * 100
    assert lines[3] == "input_layer (InputLayer)         (None, 4096)          0"
    assert lines[5] == "dense (Dense)                    (None, 512)           2097664     input_layer[0][0]"
    assert lines[7] == "batch_normalization (BatchNormal (None, 512)           2048        dense[0][0]"
    assert lines[9] == "dropout (Dropout)                (None, 512)           0           batch_normalization[0][0]"
    assert lines[11] == "dense_1 (Dense)                  (None, 80)            41040       dropout[0][0]"
    assert lines[12] == "=" * 100
    assert lines[13:16] == [
        "Total params: 2,140,752",
        "Trainable params: 2,139,728",
        "Non-trainable params: 1,024",
    ]
    assert lines[16] == "_" * 100


def test_default_summary_splits_batchnorm_and_explains_non_trainable() -> None:
    text = paramscope.summary(seed_anatomy(), width=160).text
    row = next(line for line in text.splitlines() if line.startswith("batch_normalization"))
    assert "2,048" in row and "1,024" in row and "4 x 512" in row
    assert "Total params: 2,140,752 (8.17 MiB)" in text
    assert "Non-trainable params: 1,024 (4.00 KiB): 1,024 running statistics" in text
    assert "Memory: 8.17 MiB (float32 2,140,752 = 8.17 MiB)" in text


def test_explain_one_layer_gives_formula_role_and_why() -> None:
    text = paramscope.explain(seed_anatomy(), layer="batch_normalization", width=200).text
    assert text.splitlines()[0].startswith("batch_normalization (BatchNormalization): 2,048 params = 4 x 512")
    mm = next(line for line in text.splitlines() if line.lstrip().startswith("moving_mean"))
    assert "non-trainable, statistic" in mm and "not by gradient" in mm
    with pytest.raises(paramscope.TargetError, match="no layer named 'nope'"):
        paramscope.explain(seed_anatomy(), layer="nope")


def test_json_schema_fields() -> None:
    doc = json.loads(paramscope.summary(seed_anatomy(), format="json").text)
    assert doc["schema"] == "paramscope/1"
    assert doc["complete"] is True
    assert doc["totals"]["params"] == 2140752
    assert doc["totals"]["trainable"] == 2139728
    assert doc["totals"]["non_trainable"] == 1024
    assert doc["totals"]["buffers"] == 0
    assert doc["totals"]["bytes"] == 2140752 * 4
    bn = next(x for x in doc["layers"] if x["name"] == "batch_normalization")
    assert (bn["params"], bn["trainable"], bn["non_trainable"]) == (2048, 1024, 1024)
    assert bn["output_shape"] == [None, 512]
    assert [t["role"] for t in bn["tensors"]] == ["trainable", "trainable", "statistic", "statistic"]
    assert {t["count"] for t in bn["tensors"]} == {512}
    for key in ("name", "type", "path", "output_shape", "params", "trainable", "non_trainable", "tensors"):
        assert key in bn
    one = json.loads(paramscope.explain(seed_anatomy(), layer="dense", format="json").text)
    assert [x["name"] for x in one["layers"]] == ["dense"]


def test_markdown_and_html_escape_untrusted_names() -> None:
    evil = Anatomy("m|<b>", "safetensors", (Layer("a|b<script>", "", "a|b<script>", (Tensor("w\x1b[31m", (2,)),)),))
    md = paramscope.summary(evil, format="markdown").text
    assert "a\\|b&lt;script&gt;" in md and "<script>" not in md and "\x1b" not in md
    html = paramscope.summary(evil, format="html").text
    assert "b<script>" not in html and "&lt;script&gt;" in html
    text = paramscope.explain(evil).text
    assert "\x1b" not in text and "w\\x1b[31m" in text


def test_rich_markup_in_names_is_not_interpreted() -> None:
    a = Anatomy("m", "torch", (Layer("[bold]x[/bold]", "Linear", "[bold]x[/bold]", (Tensor("weight", (2, 2)),)),))
    assert "[bold]x[/bold]" in paramscope.summary(a).text


def test_incomplete_totals_are_marked() -> None:
    a = Anatomy("m", "keras", (Layer("c", "MyLayer", "c", known=False),))
    text = paramscope.summary(a).text
    assert "INCOMPLETE" in text and "[no rule]" in text
    assert json.loads(paramscope.summary(a, format="json").text)["complete"] is False


def test_repeated_blocks_collapse_and_expand() -> None:
    blocks = tuple(Layer(str(i), "Block", f"layers.{i}", (Tensor("w", (4, 4), key=f"w{i}"),)) for i in range(32))
    a = Anatomy("m", "torch", (Layer("layers", "ModuleList", "layers", children=blocks),))
    text = paramscope.summary(a).text
    row = next(line for line in text.splitlines() if "0-31" in line)
    assert "x32" in row and "512" in row  # 32 x 16
    assert "31 (Block)" in paramscope.summary(a, expand=True).text
    assert "0-31" not in paramscope.summary(a, depth=0).text


def test_model_facts_are_listed_and_bounded() -> None:
    meta = {f"key{i:02d}": "v" * (150 if i == 0 else 3) for i in range(20)}
    a = Anatomy("m", "gguf", (Layer("x", "", "x", (Tensor("w", (2,)),)),), metadata=meta)
    lines = paramscope.summary(a, width=200).text.splitlines()
    start = lines.index("Model facts:")
    assert lines[start + 1] == "  key00: " + "v" * 97 + "..."
    assert lines[start + 16] == "  key15: vvv"
    assert lines[start + 17] == "  ... and 4 more (all of them in --format json)"
    assert len(json.loads(paramscope.summary(a, format="json").text)["metadata"]) == 20


def test_flops_total_is_unknown_when_a_layer_was_not_measured() -> None:
    from paramscope.core import Compute
    from paramscope.analysis.compute import compute_total

    measured = Layer("a", "Linear", "a", compute=Compute(flops=100, attention_flops=0, elementwise_flops=4))
    both = Anatomy("m", "torch", (measured, measured.with_(name="b", path="b")))
    c = compute_total(both)
    assert c is not None and (c.flops, c.macs, c.elementwise_flops) == (200, 100, 8)
    partial = Anatomy("m", "torch", (measured, Layer("b", "Custom", "b")))
    c = compute_total(partial)
    assert c is not None and c.flops is None
    doc = json.loads(paramscope.summary(partial, format="json").text)
    assert doc["totals"]["flops"] is None and doc["layers"][0]["flops"] == 100
    assert "unknown FLOPs" in paramscope.summary(partial).text


def test_formula_column_explains_parameters_not_buffers() -> None:
    from paramscope.core import Formula
    from paramscope.analysis.view import layer_formula

    rotary = Layer("rotary_emb", "RotaryEmbedding", "rotary_emb",
                   (Tensor("inv_freq", (64,), role=Role.BUFFER, is_param=False, formula=Formula("head_dim / 2", "128 / 2")),))
    assert layer_formula(rotary) == ""
    bn = Layer("bn", "BatchNorm1d", "bn", (
        Tensor("weight", (4,), formula=Formula("num_features", "4")),
        Tensor("bias", (4,), formula=Formula("num_features", "4")),
        Tensor("running_mean", (4,), role=Role.STATISTIC, is_param=False, formula=Formula("num_features", "4")),
    ))
    assert layer_formula(bn) == "4 + 4"


def test_narrow_terminals_drop_optional_columns_and_say_so() -> None:
    wide = paramscope.summary(seed_anatomy(), width=200).text
    assert "Formula" in wide and "left out" not in wide
    narrow = paramscope.summary(seed_anatomy(), width=70).text
    header = next(line for line in narrow.splitlines() if line.startswith("Layer"))
    # Formulas are worth more than the output shape, which goes first.
    assert "Formula" in header and "Param #" in header and "Output Shape" not in header
    assert "(columns left out for this width: Output Shape" in " ".join(narrow.split())
    assert max(len(line) for line in narrow.splitlines()) <= 70
