"""The HTML report: the treemap adds up to the frameworks' own totals; it works in a real browser.

The browser tests run headless Chromium (Debian's ``chromium`` package): the page's script must
run without an error, the DOM is read after it ran, and a screenshot is taken. Set
``PARAMSCOPE_SCREENSHOT_DIR`` to keep the screenshots (README's picture is made this way).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import paramscope
from paramscope.render.html import ROOT_CLASS

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


class _Rects(HTMLParser):
    """Every <rect> of every treemap, with its attributes, by metric."""

    def __init__(self) -> None:
        super().__init__()
        self.metric = ""
        self.rects: dict[str, list[dict[str, str]]] = {}
        self.rows: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg" and "data-metric" in a:
            self.metric = a["data-metric"]
        elif tag == "rect":
            self.rects.setdefault(self.metric, []).append(a)
        elif tag == "tr" and a.get("class") == "row":
            self.rows.append(a)


def _parse(html: str) -> _Rects:
    p = _Rects()
    p.feed(html)
    return p


def _leaf_sum(p: _Rects, metric: str) -> int:
    return sum(int(r["data-value"]) for r in p.rects[metric] if "leaf" in r["class"].split())


def _gpt2() -> Any:
    with torch.device("meta"):
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=4))


def _unique(model: Any) -> tuple[int, int]:
    """The oracle: torch's own parameters and buffers, each storage once: (params, bytes)."""
    params = list(model.parameters())
    buffers = list(model.buffers())
    n_bytes = sum(t.numel() * t.element_size() for t in params + buffers)
    return sum(p.numel() for p in params), n_bytes


def test_leaves_add_up_to_torch_totals_with_tied_weights() -> None:
    model = _gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight
    report = paramscope.summary(model, format="html", inputs=["input_ids=int64[1,32]"])
    p = _parse(report.text)
    params, n_bytes = _unique(model)
    assert _leaf_sum(p, "params") == params
    assert _leaf_sum(p, "bytes") == n_bytes
    # The tied head is drawn once (under wte); its row says where it is counted.
    assert not [r for r in p.rects["params"] if r.get("data-path") == "lm_head" and "leaf" in r["class"]]
    assert re.search(r'data-path="lm_head".*?tied to transformer\.wte/weight', report.text)
    # Every module rect carries its path and value; a module's value is the sum of its leaves.
    modules = [r for r in p.rects["params"] if r["class"] == "module"]
    assert modules and all("data-path" in r and "data-value" in r for r in modules)
    h0 = next(r for r in modules if r["data-path"] == "transformer.h.0")
    assert int(h0["data-value"]) == sum(x.numel() for x in model.transformer.h[0].parameters())


def test_flops_leaves_add_up_to_the_flop_counter() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Sequential(
        torch.nn.Linear(128, 128), torch.nn.Linear(128, 10)))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(8, 64))
    report = paramscope.summary(model, format="html", input_size=(8, 64))
    p = _parse(report.text)
    assert _leaf_sum(p, "flops") == counter.get_total_flops()  # the oracle


def test_repeated_blocks_and_statistics() -> None:
    model = _gpt2()
    report = paramscope.summary(model, format="html", inputs=["input_ids=int64[1,32]"])
    rows = _parse(report.text).rows
    assert any(r["data-path"] == "transformer.h.0" for r in rows)
    assert "x4" in report.text and ">each<" in report.text
    bn = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4))
    p = _parse(paramscope.summary(bn, format="html").text)
    roles = {r.get("data-tensor"): r.get("data-role") for r in p.rects["bytes"] if "leaf" in r["class"]}
    assert roles["running_mean"] == roles["running_var"] == "statistic" and roles["weight"] == "trainable"


def test_self_contained_and_scoped() -> None:
    html = paramscope.summary(_gpt2(), format="html").text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing from the network
    assert "<link" not in html and "@import" not in html
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style is not None
    root_id = re.search(rf'class="{ROOT_CLASS} psr" id="([\w-]+)"', html)
    assert root_id is not None
    for rule in re.findall(r"([^{}]+)\{[^{}]*\}", style.group(1)):
        for selector in rule.split(","):
            selector = selector.strip()
            if selector and not selector.startswith("@"):
                assert selector.startswith(f"#{root_id.group(1)}"), selector


# ---- in a real browser -------------------------------------------------------------------------

def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    return exe


def _browser(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _check_page(page: Path, tmp_path: Path, shot_name: str) -> str:
    dom = _browser(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]
    assert 'data-ready="1"' in dom.stdout and 'data-errors="0"' in dom.stdout
    keep = os.environ.get("PARAMSCOPE_SCREENSHOT_DIR")
    shot = Path(keep) / shot_name if keep else tmp_path / shot_name
    shot.parent.mkdir(parents=True, exist_ok=True)
    done = _browser(page, "--window-size=1400,1100", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return dom.stdout


def test_gpt2_report_in_chromium(tmp_path: Path) -> None:
    model = _gpt2()
    page = tmp_path / "gpt2.html"
    page.write_text(paramscope.summary(model, format="html", inputs=["input_ids=int64[1,64]"]).text)
    _check_page(page, tmp_path, "report-gpt2.png")
    # A click's explanation, through the page's own link to a module: the DOM after scripts ran.
    dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          "--virtual-time-budget=5000", page.as_uri() + "#module=transformer.h.0.attn.c_attn"],
                         capture_output=True, text=True, timeout=120)
    panel = re.search(r'<div class="panel"[^>]*>(.*?)<div class="controls">', dom.stdout, re.S)
    assert panel is not None
    # The oracle: GPT-2's own Conv1D weight shape.
    shape = tuple(model.transformer.h[0].attn.c_attn.weight.shape)
    assert "transformer.h.0.attn.c_attn" in panel.group(1) and f"({shape[0]}, {shape[1]})" in panel.group(1)


def test_seed_report_in_chromium(tmp_path: Path) -> None:
    from paramscope import keras

    x = keras.layers.Input(batch_shape=(None, 4096))
    h = keras.layers.Dense(512, activation="relu")(x)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5)(h)
    out = keras.layers.Dense(80, activation="sigmoid")(h)
    page = tmp_path / "seed.html"
    page.write_text(paramscope.summary(keras.models.Model(x, out), format="html").text)
    dom = _check_page(page, tmp_path, "report-seed.png")
    assert "2,140,752" in dom and "1,024 running statistics" in dom


def test_hostile_names_stay_text_in_the_browser(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    evil = "</script><script>document.title='pwned'</script><img src=x onerror=alert(1)>"
    st.save_file({f"{evil}.weight": torch.zeros(4), "ok.weight": torch.zeros(2)}, str(tmp_path / "m.safetensors"))
    page = tmp_path / "evil.html"
    page.write_text(paramscope.summary(str(tmp_path / "m.safetensors"), format="html").text)
    dom = _check_page(page, tmp_path, "evil.png")
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)  # type: ignore[union-attr]
    assert "<img src=\"x\"" not in dom and "<img src=x" not in dom


def test_notebook_fragment_leaves_the_page_around_it_unchanged(tmp_path: Path) -> None:
    fragment = paramscope.summary(_gpt2(), format="html")._repr_html_()
    probe = (
        "<script>window.addEventListener('load',function(){var out={};"
        "['p','table','td','button','h1','body','ul','svg','input'].forEach(function(t){"
        "var e=document.getElementById('o-'+t)||document.body;var s=getComputedStyle(e);"
        "out[t]=[s.fontFamily,s.fontSize,s.color,s.backgroundColor,s.margin,s.padding,s.borderTopWidth,"
        "s.lineHeight,s.display].join('|');});"
        "document.getElementById('result').textContent=JSON.stringify(out);});</script>"
    )
    outside = (
        "<h1 id='o-h1'>Notebook</h1><p id='o-p'>text</p><ul id='o-ul'><li>x</li></ul>"
        "<table id='o-table'><tr><td id='o-td'>cell</td></tr></table><button id='o-button'>b</button>"
        "<input id='o-input'><svg id='o-svg' width='10' height='10'></svg><pre id='result'></pre>"
    )
    results = []
    for with_report in (False, True):
        page = tmp_path / f"nb{int(with_report)}.html"
        body = outside + (fragment if with_report else "") + probe
        page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")
        dom = _browser(page, "--dump-dom")
        assert "Uncaught" not in dom.stderr
        m = re.search(r'<pre id="result">(.*?)</pre>', dom.stdout, re.S)
        assert m is not None and m.group(1)
        results.append(json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")))
    assert results[0] == results[1]


def test_overlapping_views_are_drawn_once() -> None:
    # Two parameters viewing elements 0-59 and 40-99 of one 100-element storage: 100 elements.
    class Views(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            base = torch.zeros(100)
            self.a = torch.nn.Parameter(base[0:60])
            self.b = torch.nn.Parameter(base[40:100])

    model = Views()
    storage = model.a.untyped_storage()
    assert model.b.untyped_storage().data_ptr() == storage.data_ptr()  # the oracle: one storage
    p = _parse(paramscope.summary(model, format="html").text)
    assert _leaf_sum(p, "params") == storage.nbytes() // 4 == 100
    assert _leaf_sum(p, "bytes") == storage.nbytes()
