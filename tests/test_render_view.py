"""The one-way pipeline: analyses run once per report into a frozen view; renderers format it."""

from __future__ import annotations

import json
import re

import pytest

import importlib

import paramscope
from paramscope.analysis import view as view_module
from paramscope.core import Anatomy, Layer, Tensor, TensorGroup

from _seed import seed_anatomy

# The module, not the function that paramscope.analysis re-exports under the same name.
totals_module = importlib.import_module("paramscope.analysis.totals")

FORMATS = ("text", "markdown", "json", "html")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("style", ("paramscope", "keras2", "keras3"))
def test_totals_run_once_per_summary(monkeypatch: pytest.MonkeyPatch, fmt: str, style: str) -> None:
    calls = []
    real = totals_module.totals

    def counting(anatomy: Anatomy) -> totals_module.Totals:
        calls.append(anatomy)
        return real(anatomy)

    # The view builder is the only caller; patch the name it resolves.
    monkeypatch.setattr(view_module, "totals", counting)
    monkeypatch.setattr(totals_module, "totals", counting)
    paramscope.summary(seed_anatomy(), format=fmt, style=style)
    assert len(calls) == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_totals_run_once_per_explanation(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    calls = []
    real = totals_module.totals
    monkeypatch.setattr(view_module, "totals", lambda a: calls.append(a) or real(a))
    paramscope.explain(seed_anatomy(), format=fmt)
    paramscope.explain(seed_anatomy(), layer="batch_normalization", format=fmt)
    assert len(calls) == 2


def _tied_model() -> Anatomy:
    # GPT-2's shape in miniature: an embedding (4 x 3 = 12) whose weight the head reuses,
    # and a repeated block of two children (each 2 x 2 = 4 weights, 2 blocks).
    emb = Layer("wte", "Embedding", "wte", (Tensor("weight", (4, 3), key="wte.weight"),))
    block = lambda i: Layer(str(i), "Block", f"h.{i}", children=(  # noqa: E731
        Layer("a", "Linear", f"h.{i}.a", (Tensor("weight", (2, 2), key=f"h.{i}.a"),)),
        Layer("b", "Linear", f"h.{i}.b", (Tensor("weight", (2, 2), key=f"h.{i}.b"),)),
    ))
    h = Layer("h", "ModuleList", "h", children=(block(0), block(1)))
    head = Layer("lm_head", "Linear", "lm_head", (Tensor("weight", (4, 3), key="wte.weight"),))
    return Anatomy("m", "torch", (emb, h, head))


def test_tied_rows_are_marked_and_top_level_rows_add_up() -> None:
    a = _tied_model()
    v = view_module.build_view(a)
    top = [r for r in v.rows if r.depth == 0]
    assert sum(r.totals.params for r in top) == v.totals.params == 12 + 2 * 2 * 4
    head = next(r for r in v.rows if r.label == "lm_head")
    assert head.totals.params == 0 and head.tied == (("lm_head/weight", "wte/weight"),)
    text = paramscope.summary(a).text
    assert "lm_head (Linear) [tied to wte/weight]" in text
    assert ">tied to wte/weight</span>" in paramscope.summary(a, format="html").text
    # JSON keeps each layer's own counts (the layer does hold the tensor) and names the sharing.
    doc = json.loads(paramscope.summary(a, format="json").text)
    assert next(x for x in doc["layers"] if x["path"] == "lm_head")["params"] == 12
    assert doc["shared"] == {"wte.weight": ["wte/weight", "lm_head/weight"]}


def test_children_of_repeated_blocks_say_each() -> None:
    a = _tied_model()
    lines = paramscope.summary(a).text.splitlines()
    assert any("0-1 (Block) x2" in line and " 16 " in f" {line} " for line in lines)
    assert any("a (Linear) [each]" in line for line in lines)
    html = paramscope.summary(a, format="html").text
    assert '<span class="mark">each</span>' in html and '<span class="mark">x2</span>' in html
    # Expanded, each block is its own row and nothing is "each".
    assert "[each]" not in paramscope.summary(a, expand=True).text


def test_unknown_extras_stay_unknown() -> None:
    group = TensorGroup("optimizer", (Tensor("exp_avg", (2, 2)), Tensor("step", None)))
    a = Anatomy("m", "torch", (Layer("x", "Linear", "x", (Tensor("w", (2, 2)),)),), extras=(group,))
    doc = json.loads(paramscope.summary(a, format="json").text)
    assert doc["extras"][0]["count"] is None and doc["extras"][0]["bytes"] is None
    assert "Optimizer state (not part of the model's counts): ? (?) in 2 tensors" in paramscope.summary(a).text
    known = a.with_(extras=(TensorGroup("optimizer", (Tensor("exp_avg", (2, 2)),)),))
    assert json.loads(paramscope.summary(known, format="json").text)["extras"][0]["count"] == 4


def test_unmeasured_rows_show_unknown_flops() -> None:
    from paramscope.core import Compute

    measured = Layer("a", "Linear", "a", (Tensor("w", (2, 2)),), compute=Compute(8, 0, 0))
    a = Anatomy("m", "torch", (measured, Layer("b", "Custom", "b", (Tensor("w", (2,)),))))
    row = next(line for line in paramscope.summary(a).text.splitlines() if line.startswith("b (Custom)"))
    assert row.split()[-2:] == ["?", "?"]


def test_every_report_shows_itself_in_a_notebook_with_scoped_style() -> None:
    for fmt in FORMATS:
        html = paramscope.summary(seed_anatomy(), format=fmt)._repr_html_()
        assert html.startswith('<div class="paramscope-report')
        # The report's root: its unique id when it has one (the HTML report), else its class.
        root = re.match(r'<div class="paramscope-report[^"]*"(?: id="([\w-]+)")?', html)
        assert root is not None
        scope = f"#{root.group(1)}" if root.group(1) else ".paramscope-report"
        style = html[html.index("<style>") + 7 : html.index("</style>")]
        # Every selector of every rule starts at the report's root: nothing outside it changes.
        for prelude in re.findall(r"([^{}]+)\{", style):
            if prelude.strip().startswith("@"):
                continue  # an at-rule (@media) only wraps rules, checked themselves
            for selector in prelude.split(","):
                assert selector.strip().startswith(scope), selector
    text_report = paramscope.summary(Anatomy("<b>m</b>", "keras"))._repr_html_()
    assert "<pre>" in text_report and "<b>m</b>" not in text_report and "&lt;b&gt;m&lt;/b&gt;" in text_report
    page = paramscope.summary(seed_anatomy(), format="html").text
    assert "body{" not in page and "\ntable{" not in page
    anatomy_html = seed_anatomy()._repr_html_()
    assert anatomy_html is not None and "2,140,752" in anatomy_html


def test_width_follows_the_terminal_only_when_printing_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import os
    import shutil
    import sys

    from paramscope.api import default_width

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert default_width() == 120
    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size((67, 24)))
    assert default_width() == 67
    assert max(len(x) for x in paramscope.summary(seed_anatomy()).text.splitlines()) <= 67


def test_unknown_bytes_are_not_zero() -> None:
    # A dtype whose size no table gives: the count is known, the bytes are not.
    a = Anatomy("m", "keras", (Layer("d", "Dense", "d", (Tensor("w", (2, 2), dtype="mystery8"),)),))
    text = paramscope.summary(a).text
    assert "Total params: 4 (?)" in text and "Non-trainable params: 0 (0 B)" in text
    assert "Memory: ? (mystery8 4 = ?)" in text and "0 B)" not in text.split("Non-trainable")[0]


def test_all_zero_columns_go_first_at_a_narrow_width() -> None:
    a = Anatomy("m", "torch", tuple(
        Layer(f"layer_{i}", "Linear", f"layer_{i}", (Tensor("weight", (64, 64)),)) for i in range(3)
    ))
    wide = paramscope.summary(a, width=120).text
    assert "Non-trainable" in wide and "left out" not in wide
    narrow = paramscope.summary(a, width=40).text
    assert "Non-trainable" not in narrow.splitlines()[1]
    assert "left out for this width: Non-trainable (all 0)" in " ".join(narrow.split())


def test_a_dtype_of_unknown_size_leaves_the_counts_exact() -> None:
    a = Anatomy("m", "keras", (Layer("d", "Dense", "d", (Tensor("w", (2, 2), dtype="mystery8"),)),))
    row = next(line for line in paramscope.summary(a).text.splitlines() if line.startswith("d (Dense)"))
    assert row.split()[2] == "4"  # not "4+?": the count is exact, only the bytes are unknown
    assert "INCOMPLETE: the size of some dtype is unknown" in paramscope.summary(a).text
    assert json.loads(paramscope.summary(a, format="json").text)["complete"] is False
