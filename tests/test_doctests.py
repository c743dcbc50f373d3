"""Every example in the package's docstrings runs and prints what it says.

The readers' examples build a tiny file with the format's own library (safetensors by hand,
gguf, onnx, Keras, torch) in a temporary folder and read it back. An example that imports an
optional library skips where it is missing, and so fails in CI (see conftest.py).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re

import pytest

import paramscope

#: Libraries an example may import that a plain ``pip install paramscope`` does not bring.
OPTIONAL = ("torch", "keras", "transformers", "onnx", "gguf", "numpy", "safetensors")
_IMPORT = re.compile(r"^\s*(?:import|from)\s+([\w, ]+)")


def _modules() -> list[str]:
    return sorted(
        m.name for m in pkgutil.walk_packages(paramscope.__path__, "paramscope.") if not m.name.endswith("__main__")
    )


def _needs(test: doctest.DocTest) -> set[str]:
    found: set[str] = set()
    for example in test.examples:
        m = _IMPORT.match(example.source)
        if m:
            found |= {name.strip().split(".")[0] for name in m[1].split(",")} & set(OPTIONAL)
    return found


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, name)
    for library in sorted({lib for test in tests for lib in _needs(test)}):
        pytest.importorskip(library)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_reader_examples_are_not_skipped() -> None:
    # Every reader's example must run: "+SKIP" would let it rot unseen.
    for name in _modules():
        if name.startswith(("paramscope.readers", "paramscope.parsers")):
            for test in doctest.DocTestFinder(exclude_empty=True).find(importlib.import_module(name), name):
                skipped = [e.source for e in test.examples if e.options.get(doctest.SKIP)]
                assert not skipped, (test.name, skipped)
