"""Text from hostile files reaches the terminal and the page escaped, in every output format.

Each file carries the same payload in every string field its format has: an OSC hyperlink and
an ANSI colour (ESC), a BiDi override and isolate, a zero-width space, U+2028 and a C1 control,
HTML that runs script once rendered, Markdown syntax, and a lone UTF-16 surrogate.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

EVIL = "\x1b]8;;http://x\x07\u202e\u2066\u200b\u2028\x85<img src=x onerror=alert(1)>|`*_[x]\udc80"
# What must never reach stdout raw: C0 (but newline) and C1 controls, DEL, BiDi controls,
# zero-width characters, line/paragraph separators, lone surrogates.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff\ud800-\udfff]")


def _safetensors(folder: Path) -> Path:
    # The header is JSON written by hand: json.dumps writes the lone surrogate as \udc80, which
    # every JSON parser (the safetensors library's included) reads back as that code point.
    header = {
        "__metadata__": {"format": "pt", "note": EVIL},
        EVIL + ".weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    }
    raw = json.dumps(header).encode()
    path = folder / "evil.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 16)
    return path


def _onnx(folder: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    printable = EVIL.replace("\udc80", "")  # protobuf strings must be valid UTF-8
    weight = numpy_helper.from_array(np.zeros((2, 2), np.float32), name=printable + "w")
    node = helper.make_node("Op" + printable, ["x", weight.name], ["y"], name="n" + printable, domain="evil.dom")
    graph = helper.make_graph(
        [node], "g" + printable,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("evil.dom", 1)])
    model.metadata_props.add(key="k" + printable, value=printable)
    path = folder / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _keras_config(folder: Path) -> Path:
    config = {"class_name": "Sequential", "config": {"name": "seq" + EVIL, "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "in" + EVIL}},
        {"class_name": "Dense", "config": {"name": "d" + EVIL, "units": 3, "dtype": "float32" + EVIL}},
    ]}}
    path = folder / "evil.json"
    path.write_text(json.dumps(config))
    return path


MAKERS = {"safetensors": _safetensors, "onnx": _onnx, "keras-config": _keras_config}
COMMANDS = [
    ["summary"],
    ["summary", "--format", "markdown"],
    ["summary", "--format", "json"],
    ["summary", "--format", "html"],
    ["summary", "--style", "keras2"],
    ["summary", "--style", "keras3"],
    ["explain"],
    ["explain", "--format", "markdown"],
    ["explain", "--format", "html"],
]


def _check(command: list[str], out: str, kind: str) -> None:
    out.encode("utf-8")  # strict: a lone surrogate could not be written to a terminal
    assert not RAW.findall(out), (command, sorted(set(RAW.findall(out))))
    if "json" in command:
        doc = json.loads(out)
        names = [x["path"] for x in doc["layers"]] + [t["name"] for x in doc["layers"] for t in x["tensors"]]
        # JSON is exact: the names come back as they were in the file (the encoder escapes them).
        assert any(EVIL.replace("\udc80", "") in n for n in names)
        if kind == "safetensors":
            assert doc["metadata"]["note"] == EVIL
    elif "html" in command:
        assert "<img" not in out
    elif "markdown" in command:
        _assert_markdown_is_inert(out)
    else:
        assert "\\x1b" in out and "\\u202e" in out  # the payload is shown, escaped


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_every_format_escapes_text_from_the_file(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from paramscope.cli import main

    monkeypatch.setenv("KERAS_BACKEND", "torch")
    path = MAKERS[kind](tmp_path)
    for command in COMMANDS:
        assert main([*command[:1], str(path), *command[1:]]) == 0, command
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        _check(command, captured.out, kind)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_the_terminal_gets_escapes_not_a_traceback(kind: str, tmp_path: Path) -> None:
    # A real process with a strict UTF-8 encoder on its stdout, as a terminal has.
    path = MAKERS[kind](tmp_path)
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONIOENCODING": "utf-8:strict"}
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", "summary", str(path)], capture_output=True, cwd=tmp_path, env=env, timeout=120
    )
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr[-500:]
    _check(["summary"], done.stdout.decode("utf-8"), kind)


def _assert_markdown_is_inert(text: str) -> None:
    markdown = pytest.importorskip("markdown")
    html = markdown.markdown(text, extensions=["tables"])
    assert "<img" not in html and "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # Emphasis, code and links from names stay text.
    assert "<em>" not in html and "<code>" not in html and "<a " not in html


def test_lone_surrogates_in_the_api_do_not_raise() -> None:
    import paramscope
    from paramscope.core import Anatomy, Layer, Tensor

    a = Anatomy("m\udc80", "safetensors", (Layer("x\ud800", "", "x\ud800", (Tensor("w\udfff", (2,)),)),),
                metadata={"k\udc80": "v\udc80"})
    for fmt in ("text", "markdown", "json", "html"):
        out = paramscope.summary(a, format=fmt).text
        out.encode("utf-8")  # would raise UnicodeEncodeError on a raw surrogate
        assert "\\udc80" in out or "\\\\udc80" in out
    assert json.loads(paramscope.summary(a, format="json").text)["metadata"] == {"k\udc80": "v\udc80"}
    paramscope.explain(a).text.encode("utf-8")
