"""The public surface: ``__all__`` is pinned, and importing paramscope stays light."""

from __future__ import annotations

import subprocess
import sys

import paramscope

HEAVY = ("torch", "keras", "tensorflow", "jax", "transformers", "numpy", "h5py", "onnx")


def test_all_is_pinned() -> None:
    assert sorted(paramscope.__all__) == sorted(
        [
            "Anatomy", "Compute", "CorruptFileError", "Formula", "Layer", "MissingDependencyError",
            "ModelError", "ParamscopeError", "Report", "Role", "TargetError", "Tensor", "TensorGroup",
            "Totals", "UnsafeFileError", "UnsupportedFormatError", "__version__", "check", "diff", "explain",
            "memory", "read", "render_memory", "summary", "totals",
        ]
    )
    for name in paramscope.__all__:
        assert hasattr(paramscope, name), name


def test_errors_form_one_hierarchy() -> None:
    for name in ("CorruptFileError", "UnsafeFileError", "UnsupportedFormatError", "TargetError",
                 "MissingDependencyError", "ModelError"):
        assert issubclass(getattr(paramscope, name), paramscope.ParamscopeError)
    assert issubclass(paramscope.UnsafeFileError, paramscope.CorruptFileError)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return {m.split(".")[0] for m in out}


def test_import_and_builder_do_not_import_frameworks() -> None:
    code = (
        "import paramscope\nfrom paramscope import keras\n"
        "x = keras.Input(shape=(8,))\nm = keras.Model(x, keras.layers.Dense(2)(x))\n"
        "paramscope.summary(m, format='json'); paramscope.explain(m)\n"
        "import paramscope.cli"
    )
    loaded = _modules_after(code)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
